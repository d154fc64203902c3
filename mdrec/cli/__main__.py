"""``python -m mdrec.cli``: the ``mdrec`` command."""
import sys

from mdrec.cli import main

sys.exit(main())
