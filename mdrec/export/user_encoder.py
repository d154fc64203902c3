"""The user-encoder family's export: a pretraining run's encoder as a user-embedding SavedModel.

Signature (the item vocabulary and attribute tables are inside the graph):
  serving_default  items tf.string [B, max_length] (raw item ids, oldest first, "" padding; and
                   times int64 [B, max_length] when the run embeds time buckets)
                   -> user_embedding float32 [B, dim]
Unknown items map to the OOV row (a finite answer); a shorter request (L < max_length) gives the
same vectors as one padded to max_length, a longer one fails with a message saying to pass the
last max_length items; an empty batch returns an empty [0, dim]. Warmup requests are the run's own stored user
sequences; assets carry spec.yaml, config.json, metrics.json and vocabulary.json.
"""
from __future__ import annotations

from pathlib import Path

import mdrec  # noqa: F401
import tensorflow as tf

from mdrec.export.families import FamilyExport, warmup_batches

OUTPUT = "user_embedding"
WARMUP_USERS = 256


def build_user_encoder(run_path: Path) -> FamilyExport:
    from mdrec.pretraining.train import load_pretrained, user_vectors
    from mdrec.training.run import RunDir

    run = RunDir(run_path).require()
    run.read_metrics()  # an unfinished run has no metrics to ship: fail before any work
    pretrained = load_pretrained(run_path)
    encoder = pretrained.encoder

    @tf.function(input_signature=[encoder.input_signature()])
    def serve(inputs):
        return {OUTPUT: encoder(inputs, training=False)}

    module = tf.Module()
    module.encoder = encoder  # tracks the variables and the item lookup table the signature captures
    users = sorted(u for u, items in pretrained.sequences.items() if items)[:WARMUP_USERS]
    config = pretrained.config
    return FamilyExport(
        module=module,
        signatures={"serving_default": serve.get_concrete_function()},
        warmup={"serving_default": warmup_batches(pretrained.inputs(users))},
        references={"serving_default": lambda batch: {OUTPUT: user_vectors(encoder, batch)}},
        assets={"spec.yaml": run.spec_path, "config.json": run.config_path, "metrics.json": run.metrics_path,
                "vocabulary.json": run.path / "vocabulary.json"},
        metadata={"model": config["model"], "objective": config["objective"],
                  "architecture": config["architecture"], "pooling": config["pooling"], "dim": encoder.dim,
                  "max_length": encoder.max_length, "items": len(pretrained.item_vocabulary),
                  "warmup_source": "sequences.parquet", "warmup_rows": len(users)},
    )
