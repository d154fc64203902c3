"""Model names (as on the command line) -> classes taking (spec, transform, **hyperparameters)."""
from __future__ import annotations

import inspect
from typing import Any

from mdrec.errors import MdrecError

CTR_MODELS = ("star", "shared_bottom", "separate", "mmoe")


def build_model(name: str, spec, transform, **hyperparameters: Any):
    from mdrec.models.ctr import MODELS

    if name not in MODELS:
        raise MdrecError(f"unknown model '{name}'; available: {', '.join(CTR_MODELS)}")
    cls = MODELS[name]
    accepted = set(inspect.signature(cls.__init__).parameters) | {"embeddings_l2", "interaction",
                                                                   "interaction_dim"}
    unknown = set(hyperparameters) - accepted
    if unknown:
        raise MdrecError(f"model '{name}' does not take {', '.join(sorted(unknown))}")
    try:
        return cls(spec, transform, **hyperparameters)
    except (ValueError, TypeError) as exc:
        raise MdrecError(f"model '{name}': {exc}") from None


def resolved_hyperparameters(name: str, hyperparameters: dict[str, Any]) -> dict[str, Any]:
    """The hyperparameters with every default written out, so a run records its whole model and a
    later change of a default cannot silently change what its checkpoint means."""
    from mdrec.models.ctr import CTRModel, MODELS

    if name not in MODELS:
        raise MdrecError(f"unknown model '{name}'; available: {', '.join(CTR_MODELS)}")
    out: dict[str, Any] = {}
    for cls in (MODELS[name], CTRModel):
        for key, param in inspect.signature(cls.__init__).parameters.items():
            if key in ("self", "spec", "transform") or param.kind in (param.VAR_KEYWORD, param.VAR_POSITIONAL):
                continue
            if param.default is not param.empty and key not in out:
                value = param.default
                out[key] = list(value) if isinstance(value, tuple) else value
    out.update({k: list(v) if isinstance(v, tuple) else v for k, v in hyperparameters.items()})
    return out
