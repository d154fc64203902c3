"""``mdrec`` command line: a thin argparse layer over the library.

Mistakes in input (spec, data, arguments) print one ``mdrec: error: ...`` line and exit with 2;
no traceback. The flags are declared in :mod:`mdrec.cli.parser` (one function per command group),
each command's call of the workflows in :mod:`mdrec.cli.commands`, the printed tables in
:mod:`mdrec.cli.printing`.
"""
from __future__ import annotations

import os
import sys

from mdrec.cli.parser import build_parser
from mdrec.errors import MdrecError

__all__ = ["build_parser", "main"]


def main(argv: list[str] | None = None) -> int:
    # TensorFlow's C++ start-up chatter (no CUDA driver, CPU flags) is noise on a terminal;
    # MDREC_TF_LOG_LEVEL=0 brings it back.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", os.environ.get("MDREC_TF_LOG_LEVEL", "3"))
    parser = build_parser()
    args = parser.parse_args(argv)
    if os.environ["TF_CPP_MIN_LOG_LEVEL"] != "0":
        import logging

        # tf_keras warns about get_config when tfrs top-K layers are saved inside a SavedModel.
        logging.getLogger("tensorflow").setLevel(logging.ERROR)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except MdrecError as exc:
        print(f"mdrec: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # The reader went away (e.g. `mdrec request ... | head`): stop quietly, as Python's docs advise.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    except KeyboardInterrupt:
        print("mdrec: interrupted; run the same command again to resume from the last checkpoint",
              file=sys.stderr)
        return 130
