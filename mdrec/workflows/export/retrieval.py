"""The retrieval family's export: raw query features in, the top-K items of the query's line out.

Signatures (all preprocessing in the graph):
  serving_default  query features (user, context, line, history) -> item_ids string [B, K], scores [B, K]
  query_embedding  query features -> embedding float32 [B, d]
  item_embedding   item features (and the line, for scoped ids) -> embedding float32 [B, d]

Two kinds of top-K:
  brute_force  exact search over each line's catalogue with stock TensorFlow ops (matmul, top_k):
               runs on stock TensorFlow Serving.
  scann        tfrs ScaNN layers (one per line), saved with the "Scann" op namespace allowed: it
               needs the ScaNN ops registered (a Python server that imports scann, or a TF Serving
               build linked with them); stock TF Serving answers "Op type not registered". The
               export also carries each line's standalone ScaNN searcher (assets/scann/<line>/,
               relative paths) for a Python retrieval service without TensorFlow Serving.
"""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

import mdrec  # noqa: F401
import tensorflow as tf

from mdrec.errors import MdrecError
from mdrec.export.signatures import check_request
from mdrec.workflows.export.family import FamilyExport, warmup_batches

if TYPE_CHECKING:
    from mdrec.data.catalogue import Catalogue
    from mdrec.data.transform import Transform
    from mdrec.models.two_tower import TwoTower
    from mdrec.retrieval.domain_index import DomainIndex
    from mdrec.spec import Spec

INDEX_KINDS = ("brute_force", "scann")


def build_retrieval(run_path: Path, *, index: str = "brute_force", top_k: int = 100) -> FamilyExport:
    """A finished two_tower run as a :class:`FamilyExport` with the three signatures above, the
    top-K of each query's line found by an ``index`` kind of :data:`INDEX_KINDS` (K = ``top_k``,
    at most the smallest line's catalogue)."""
    from mdrec.models.two_tower import query_signature
    from mdrec.retrieval.domain_index import DomainIndex, save_options
    from mdrec.training.retrieval import candidate_embeddings
    from mdrec.training.run import RunDir
    from mdrec.workflows.export.family import first_existing
    from mdrec.workflows.restore import restore_for

    if index not in INDEX_KINDS:
        raise MdrecError(f"unknown index kind '{index}'", hint=f"use one of {', '.join(INDEX_KINDS)}")
    run = RunDir(run_path).require()
    run.read_metrics()  # an unfinished run has no metrics to ship: fail before any work
    config, _ = run.read_config()
    source = first_existing([config.valid, config.test, config.train], run.path)
    r = restore_for(run_path, source)
    spec, model, catalogue = r.spec, r.model, r.model.catalogue
    sizes = catalogue.membership.sum(1)
    k = int(min(top_k, sizes.min()))
    items = candidate_embeddings(model, catalogue)
    top = DomainIndex(index, items, catalogue.ids.astype(str), catalogue.membership, catalogue.domains, k=k)

    module = tf.Module()
    module.model, module.index = model, top  # tracks the variables and tables the signatures capture
    query_inputs = {name: values for name, values in r.inputs.items() if name in query_signature(spec)}
    item_inputs = catalogue.inputs(spec)
    assets = {"spec.yaml": run.spec_path, "transform.json": run.transform_path, "config.json": run.config_path,
              "metrics.json": run.metrics_path, "catalogue.parquet": run.catalogue_path}
    if index == "scann":
        assets.update(_scann_searchers(items, catalogue, top, k))
    return FamilyExport(
        module=module,
        signatures=_retrieval_signatures(model, spec, r.transform, top),
        warmup={"serving_default": warmup_batches(query_inputs),
                "query_embedding": warmup_batches(query_inputs, per_size=1),
                "item_embedding": warmup_batches(item_inputs, per_size=1)},
        references=_retrieval_references(model, spec, top),
        assets=assets,
        metadata={"model": config.model, "index": index, "top_k": k, "catalogue_items": len(catalogue),
                  "items_per_line": dict(zip(catalogue.domains, sizes.tolist())),
                  "needs_scann_ops": index == "scann", "warmup_source": source, "warmup_rows": len(r.log)},
        save_options=save_options(index),
    )


def _retrieval_signatures(model: TwoTower, spec: Spec, transform: Transform,
                          top: DomainIndex) -> dict[str, tf.types.experimental.ConcreteFunction]:
    """The concrete functions serving_default (query features -> item_ids string [B, K], scores
    [B, K]), query_embedding and item_embedding (features -> embedding float32 [B, d]); every
    request is checked against the run's spec and transform before the towers run."""
    from mdrec.models.two_tower import candidate_signature, query_signature

    query_spec, item_spec = query_signature(spec), candidate_signature(spec)

    @tf.function(input_signature=[query_spec])
    def serve(features):
        with tf.control_dependencies(check_request(features, spec, transform)):
            query = tf.identity(model.query_embedding(features, training=False))
        scores, ids = top(query, model.encoder.domain_index(features))
        return {"item_ids": ids, "scores": scores}

    @tf.function(input_signature=[query_spec])
    def query_embedding(features):
        with tf.control_dependencies(check_request(features, spec, transform)):
            return {"embedding": tf.identity(model.query_embedding(features, training=False))}

    @tf.function(input_signature=[item_spec])
    def item_embedding(features):
        with tf.control_dependencies(check_request(features, spec, transform)):
            return {"embedding": tf.identity(model.candidate_embedding(features, training=False))}

    return {"serving_default": serve.get_concrete_function(),
            "query_embedding": query_embedding.get_concrete_function(),
            "item_embedding": item_embedding.get_concrete_function()}


def _retrieval_references(model: TwoTower, spec: Spec, top: DomainIndex) -> dict:
    """In-process outputs the export must reproduce, by signature: serving_default's scores
    float32 [B, K] (its ids are not compared), and the embeddings float32 [B, d] of both towers."""
    from mdrec.training.retrieval import query_embeddings

    def top_scores(batch):
        query = query_embeddings(model, batch)
        domain = model.encoder.domain_index({spec.domain.column: tf.constant(batch[spec.domain.column])}) \
            if spec.domain.column else tf.zeros(len(query), tf.int32)
        return {"scores": top.search(tf.constant(query), domain)[0].numpy()}

    return {"serving_default": top_scores,
            "query_embedding": lambda batch: {"embedding": query_embeddings(model, batch)},
            "item_embedding": lambda batch: {"embedding": _candidates(model, batch)}}


def _scann_searchers(items: np.ndarray, catalogue: Catalogue, top: DomainIndex, k: int) -> dict[str, Path]:
    """Each line's standalone ScaNN searcher over its items (``items``: float32 [N, d], one row per
    catalogue item), built with the line's index settings and written to a scratch folder.
    Returns assets/ name ("scann/<line>") -> folder."""
    from mdrec.retrieval.searcher import write_scann_searcher

    scratch = Path(tempfile.mkdtemp(prefix="mdrec-scann-"))
    identifiers = catalogue.ids.astype(str)
    searchers = {}
    for d, line in enumerate(catalogue.domains):
        members = np.flatnonzero(catalogue.membership[d])
        searchers[f"scann/{line}"] = write_scann_searcher(items[members], identifiers[members],
                                                         scratch / line, top.indexes[d].settings, k=k)
    return searchers


def _candidates(model, batch: dict) -> np.ndarray:
    """The item tower on a batch of raw item features: float32 [B, d]."""
    return model.candidate_embedding({k: tf.constant(v) for k, v in batch.items()}).numpy()
