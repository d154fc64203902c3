"""Transfer's defaults, in one place and free of TensorFlow (the command line's `--help` reads
them): the layer, the transfer and profile workflows and the flags all use these."""
from __future__ import annotations

from typing import Any

# Adapter bottleneck width (mode "adapter": the only encoder weights that train besides layer norms).
ADAPTER_DIM = 16

# What a run records beside ``pretrained`` (its folder) when it transfers, with their defaults.
TRANSFER_DEFAULTS: dict[str, Any] = {"transfer_mode": "finetune", "adapter_dim": ADAPTER_DIM}
