"""The lifelong family's export: one SavedModel, one signature per task, each applying that task's
masks (kernels multiplied by [1 <= owner <= t] in the graph; the owner arrays are saved variables).

Signatures (items tf.string [B, max_length]: the user's source-line item ids, oldest first, ""
padding; shorter requests are padded the same way as in training):
  task_<name>   -> user_embedding float32 [B, dim] (the task's masked encoder)
                   next_item / line_items: scores float32 [B, items], top_items tf.string [B, 10]
                   profile: probabilities float32 [B, classes], label tf.string [B]
  serving_default = the last task's signature.
Assets: spec.yaml, config.json, metrics.json, vocabulary.json.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

import mdrec  # noqa: F401
import tensorflow as tf

from mdrec.models.user_encoder import ITEMS
from mdrec.workflows.export.family import FamilyExport, warmup_batches

TOP = 10


def build_lifelong(run_path: Path) -> FamilyExport:
    from mdrec.lifelong.task_data import build_task_data
    from mdrec.lifelong.tasks import parse_tasks
    from mdrec.training.run import RunDir
    from mdrec.workflows.lifelong import World
    from mdrec.workflows.lifelong_eval import task_scores

    run = RunDir(run_path).require()
    metrics = run.read_metrics()  # an unfinished run has no metrics to ship: fail before any work
    config, _ = run.read_config()
    tasks = parse_tasks(config.hyperparameters["tasks_file"])
    spec = run.load_spec()
    vocabulary, task_data = build_task_data(tasks, spec, config.train, log=lambda _: None)
    world = World(tasks, vocabulary, task_data)
    done = len(task_data)
    tf.train.Checkpoint(world=world).read(str(run.path / "state" / f"after_{done}" / "ckpt")).expect_partial()
    model = world.conure
    length = model.encoder.max_length
    signatures, warmup, references = {}, {}, {}
    for data in task_data:
        t, kind = data.task.index, data.task.kind
        names = tf.constant(np.asarray(data.classes, dtype=object))

        serve = _serving_function(model, t, kind, names)
        fn = tf.function(serve, input_signature=[{ITEMS: tf.TensorSpec([None, length], tf.string, name=ITEMS)}])
        sig = f"task_{data.task.name}"
        signatures[sig] = fn.get_concrete_function()
        batch = {ITEMS: data.eval_x[:64]}
        warmup[sig] = warmup_batches(batch)
        out_name = "probabilities" if kind == "profile" else "scores"

        def reference(b, t=t, kind=kind, out_name=out_name):
            scores = task_scores(model, t, np.asarray(b[ITEMS], dtype=object), model.predict_masks(t))
            if kind == "profile":
                scores = tf.nn.softmax(scores).numpy()
            return {out_name: scores}

        references[sig] = reference
    last = f"task_{task_data[-1].task.name}"
    signatures["serving_default"] = signatures[last]
    warmup["serving_default"] = warmup[last]
    references["serving_default"] = references[last]
    module = tf.Module()
    module.conure = model  # tracks its variables (owners included) and lookup tables; baselines left out
    return FamilyExport(
        module=module, signatures=signatures, warmup=warmup, references=references,
        assets={"spec.yaml": run.spec_path, "config.json": run.config_path, "metrics.json": run.metrics_path,
                "vocabulary.json": run.path / "vocabulary.json"},
        metadata={"model": "lifelong", "tasks": [d.task.name for d in task_data],
                  "signatures": {f"task_{d.task.name}": d.task.kind for d in task_data},
                  "max_length": length, "dim": model.encoder.dim,
                  "parameters": json.loads(json.dumps(metrics.get("parameters", {})))},
    )


def _serving_function(model, t: int, kind: str, names: tf.Tensor):
    from mdrec.lifelong.masks import masked_kernels

    def serve(inputs):
        masks = model.predict_masks(t)  # read from the saved owner variables
        with masked_kernels(model.kernels(), masks):
            vectors = model.user_vectors(inputs[ITEMS], t, training=False)
            scores = model.head(t).scores(vectors, model.encoder)
        out = {"user_embedding": vectors}
        if kind == "profile":
            probabilities = tf.nn.softmax(scores)
            out.update(probabilities=probabilities, label=tf.gather(names, tf.argmax(probabilities, axis=1)))
        else:
            k = min(TOP, int(scores.shape[-1]))
            out.update(scores=scores, top_items=tf.gather(names, tf.math.top_k(scores, k).indices))
        return out

    return serve
