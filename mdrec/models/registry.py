"""Model names (as on the command line) -> factories taking (spec, transform, **hyperparameters)."""
from __future__ import annotations

from typing import Any, Callable

from mdrec.errors import MdrecError

CTR_MODELS = ("shared_bottom",)


def build_model(name: str, spec, transform, **hyperparameters: Any):
    factories: dict[str, Callable] = {}
    if name == "shared_bottom":
        from mdrec.models.shared_bottom import SharedBottom

        factories[name] = SharedBottom
    if name not in factories:
        raise MdrecError(f"unknown model '{name}'; available: {', '.join(CTR_MODELS)}")
    return factories[name](spec, transform, **hyperparameters)
