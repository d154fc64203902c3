"""Model families: what an export of each kind of run holds.

A family turns a finished run into a :class:`FamilyExport` (the object to save, its serving
signatures, warmup batches, in-process reference outputs and the run files that go into assets/).
Everything else (versioning, atomic publish, export.json, the warmup file, verification) is common
and lives in :mod:`mdrec.workflows.export.saved_model`. Adding a family (e.g. retrieval: query features ->
top-K ids and scores, query/item embeddings) is one builder and one entry in ``FAMILIES``.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import mdrec  # noqa: F401
import tensorflow as tf

from mdrec.errors import MdrecError
from mdrec.workflows.export.family import FamilyExport, first_existing, warmup_batches


@dataclass(frozen=True)
class Family:
    """A family: the ``config.model`` names it covers, its builder (run folder, options -> export)
    and the export options it takes (e.g. the retrieval index kind)."""

    models: tuple[str, ...]
    build: Callable[..., FamilyExport]
    options: tuple[str, ...] = ()


def build_ctr(run_path: Path) -> FamilyExport:
    """CTR models (star, shared_bottom, separate, mmoe): ``serving_default`` = raw features ->
    probability and logit; warmup rows from the run's validation split (else test, else train)."""
    from mdrec.export.signatures import ctr_signature
    from mdrec.training.inference import predict
    from mdrec.training.run import RunDir
    from mdrec.workflows.restore import restore_for

    run = RunDir(run_path).require()
    run.read_metrics()  # an unfinished run has no metrics to ship: fail before any work
    config, _ = run.read_config()
    source = first_existing([config.valid, config.test, config.train], run.path)
    r = restore_for(run_path, source)  # restoring also refreshes STAR's fused serving weights
    spec, model, log, inputs = r.spec, r.model, r.log, r.inputs
    module = tf.Module()
    module.model = model  # tracks the variables and lookup tables the signature captures
    return FamilyExport(
        module=module,
        signatures={"serving_default": ctr_signature(model, spec, r.transform)},
        warmup={"serving_default": warmup_batches(inputs)},
        references={"serving_default": lambda batch: {"probability": predict(model, batch)}},
        assets={"spec.yaml": run.spec_path, "transform.json": run.transform_path,
                "config.json": run.config_path, "metrics.json": run.metrics_path},
        metadata={"model": config.model, "warmup_source": source, "warmup_rows": len(log)},
    )


def _build_retrieval(run_path: Path, **options) -> FamilyExport:
    from mdrec.workflows.export.retrieval import build_retrieval

    return build_retrieval(run_path, **options)


FAMILIES: dict[str, Family] = {
    "ctr": Family(models=("star", "shared_bottom", "separate", "mmoe"), build=build_ctr),
    "retrieval": Family(models=("two_tower",), build=_build_retrieval, options=("index", "top_k")),
    "user_encoder": Family(models=("user_encoder",), build=lambda run_path, **options: _build_user_encoder(
        run_path, **options), options=("top_k",)),
    "lifelong": Family(models=("lifelong",), build=lambda run_path: __import__(
        "mdrec.workflows.export.lifelong", fromlist=["build_lifelong"]).build_lifelong(run_path)),
}


def _build_user_encoder(run_path: Path, **options) -> FamilyExport:
    from mdrec.workflows.export.user_encoder import build_user_encoder

    return build_user_encoder(run_path, **options)


def family_of(model: str, *, path: str | None = None) -> str:
    """The family whose builder exports runs of ``model`` (``config.model``)."""
    for name, family in FAMILIES.items():
        if model in family.models:
            return name
    known = sorted(m for family in FAMILIES.values() for m in family.models)
    raise MdrecError(f"runs of model '{model}' cannot be exported yet; exportable models: "
                     f"{', '.join(known)}", path=path)
