"""Model names (as on the command line) -> classes, and the family each belongs to.

CTR models take (spec, transform, **hyperparameters) and score (user, item, context) rows;
retrieval models also take the run's catalogue and embed queries and candidates.
"""
from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from mdrec.errors import MdrecError

if TYPE_CHECKING:  # (TensorFlow is imported only when a model is built)
    import tf_keras

    from mdrec.data.catalogue import Catalogue
    from mdrec.data.transform import Transform
    from mdrec.spec import Spec

CTR_MODELS = ("star", "shared_bottom", "separate", "mmoe")
RETRIEVAL_MODELS = ("two_tower",)
ALL_MODELS = CTR_MODELS + RETRIEVAL_MODELS


def model_family(name: str) -> str:
    """"ctr" or "retrieval"."""
    if name in CTR_MODELS:
        return "ctr"
    if name in RETRIEVAL_MODELS:
        return "retrieval"
    raise MdrecError(f"unknown model '{name}'; available: {', '.join(ALL_MODELS)}")


def leave_one_out_profiles(name: str, hyperparameters: dict[str, Any]) -> bool:
    """Whether a model's training rows may read every other item of the user's profile (not only
    the other fold): true for a model that reads no user id (two_tower with towers=shared or
    sequence), which cannot learn the row's item as "the one missing from the user's set"."""
    return model_family(name) == "retrieval" and hyperparameters.get("towers") in ("shared", "sequence")


def _classes(name: str) -> list[type[tf_keras.Model]]:
    """The model's class and the bases whose constructor parameters it also accepts."""
    if model_family(name) == "retrieval":
        from mdrec.models.two_tower import TwoTower

        return [TwoTower]
    from mdrec.models.ctr import CTRModel, MODELS

    return [MODELS[name], CTRModel]


def build_model(name: str, spec: Spec, transform: Transform, *, catalogue: Catalogue | None = None,
                user_feature: tf_keras.layers.Layer | None = None, **hyperparameters: Any) -> tf_keras.Model:
    """Model ``name`` over ``spec`` and a fitted ``transform``, with ``hyperparameters`` (checked by
    name). ``catalogue``: the training items (retrieval; content item encoders). ``user_feature``:
    a layer read as one more user feature (a pretrained user encoder, mdrec.transfer); the caller
    builds it, a model never opens a run folder."""
    classes = _classes(name)
    parameters = [inspect.signature(c.__init__).parameters for c in classes]
    accepted = set().union(*parameters)
    accepted -= {"self", "spec", "transform", "catalogue", "user_feature", "kwargs"}
    unknown = set(hyperparameters) - accepted
    if unknown:
        raise MdrecError(f"model '{name}' does not take {', '.join(sorted(unknown))}; "
                         f"it takes {', '.join(sorted(accepted))}")
    hyperparameters = _sequences_as_declared(parameters, hyperparameters)
    # Retrieval models always take the catalogue; CTR models when their item encoder reads content.
    extra = {"catalogue": catalogue} if model_family(name) == "retrieval" or catalogue is not None else {}
    if user_feature is not None:
        extra["user_feature"] = user_feature
    try:
        return classes[0](spec, transform, **extra, **hyperparameters)
    except (ValueError, TypeError) as exc:
        raise MdrecError(f"model '{name}': {exc}") from None


def _sequences_as_declared(parameters: Sequence[Mapping[str, inspect.Parameter]],
                           hyperparameters: dict[str, Any]) -> dict[str, Any]:
    """``--param hidden=128`` parses as a number: a parameter whose default is a sequence takes a
    single number as a sequence of one."""
    out = dict(hyperparameters)
    for params in parameters:
        for key, param in params.items():
            if key in out and isinstance(param.default, (tuple, list)) and isinstance(out[key], (int, float)):
                out[key] = [out[key]]
    return out


def resolved_hyperparameters(name: str, hyperparameters: dict[str, Any]) -> dict[str, Any]:
    """The hyperparameters with every default written out, so a run records its whole model and a
    later change of a default cannot silently change what its checkpoint means."""
    out: dict[str, Any] = {}
    for cls in _classes(name):
        for key, param in inspect.signature(cls.__init__).parameters.items():
            if key in ("self", "spec", "transform", "catalogue", "user_feature") or param.kind in (param.VAR_KEYWORD,
                                                                                   param.VAR_POSITIONAL):
                continue
            if param.default is not param.empty and key not in out:
                value = param.default
                out[key] = list(value) if isinstance(value, tuple) else value
    out.update({k: list(v) if isinstance(v, tuple) else v for k, v in hyperparameters.items()})
    return out
