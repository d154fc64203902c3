"""Where transfer helps: a target run's metrics by the user's target-line history length and by
whether the source line knew the user.

A transferred model should help most where the target line knows little: users with 0 or 1-3
training events in the target line. Users the source line never saw fall back to the empty
sequence and are reported apart, so the fallback is visible rather than averaged away.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from mdrec.data.log import LABEL
from mdrec.evaluation.baselines.ctr import ctr_ids
from mdrec.evaluation.metrics import ctr_report

HISTORY_BUCKETS = ((0, 0, "0"), (1, 3, "1-3"), (4, None, "4+"))


def history_bucket(counts: np.ndarray) -> np.ndarray:
    """"target history 0", "... 1-3", "... 4+" per row from per-row training event counts."""
    out = np.empty(len(counts), dtype=object)
    for low, high, name in HISTORY_BUCKETS:
        mask = (counts >= low) & ((counts <= high) if high is not None else True)
        out[mask] = f"target history {name}"
    return out


def slice_columns(log_frame: pd.DataFrame, train_frame: pd.DataFrame, user: str,
                  source_users: set | None) -> dict[str, np.ndarray]:
    """Slice labels per row: target-history bucket, and source-history presence if known."""
    events = train_frame.groupby(user).size()
    counts = log_frame[user].map(events).fillna(0).to_numpy(dtype=np.int64)
    out = {"history": history_bucket(counts)}
    if source_users is not None:
        known = log_frame[user].isin(source_users).to_numpy()
        out["source"] = np.where(known, "with source history", "no source history")
    return out


def ctr_slices(run_path: str | Path, data: str | Path, source_users: set | frozenset | None = None) -> pd.DataFrame:
    """AUC, logloss (and more) of a CTR run and of its sanity rows (user+item mean, first-order
    logistic; fitted on the run's training file) on ``data``, per slice. Rows: slice; column
    ``model`` says which scorer ("model" or the sanity row's name). The source-history slices use the
    run's pretrained users, or ``source_users`` (to slice a run without transfer the same way)."""
    from mdrec.training.inference import predict
    from mdrec.workflows.evaluate import ctr_baselines_of
    from mdrec.workflows.restore import restore_for

    r = restore_for(run_path, data, need_context=True)
    train = r.context["train"].frame
    user = r.spec.user_id.name
    user_feature = getattr(r.model.encoder, "user_feature", None)
    if user_feature is not None:
        source_users = user_feature.users
    frame = r.log.frame
    columns = slice_columns(frame, train, user, source_users)
    scores = {"model": predict(r.model, r.inputs)}
    fitted, _ = ctr_baselines_of(r.run, r.config, r.spec)   # the run's own training file exists here
    ids = ctr_ids(r.log, r.spec)
    scores.update({b.name: b.predict(*ids[:3]) for b in fitted if not b.skipped})
    tables = []
    for scorer, score in scores.items():
        parts = []
        for name, labels in columns.items():
            table = ctr_report(pd.DataFrame({"y": frame[LABEL].to_numpy(), "p": score, "s": labels,
                                             "u": frame[user].to_numpy(dtype=object)}),
                               label="y", score="p", domain="s", user="u")
            parts.append(table if name == "history" else table.drop(index="ALL"))
        table = pd.concat(parts)
        table.insert(0, "model", scorer)
        tables.append(table)
    out = pd.concat(tables)
    out.index.name = "slice"
    return out
