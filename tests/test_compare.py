"""The compare table's aggregation over seeds."""
from __future__ import annotations

import pandas as pd

from mdrec.workflows.comparison import aggregate_by_model


def test_mean_and_sample_std_per_model():
    table = pd.DataFrame({"model": ["star", "star", "star", "baseline"],
                          "auc": [0.70, 0.72, 0.74, 0.65], "gauc": [0.6, 0.6, 0.6, 0.5]},
                         index=["star-seed0", "star-seed1", "star-seed2", "baseline"])
    out = aggregate_by_model(table)
    assert list(out.index) == ["star (n=3)", "baseline (n=1)"]
    assert out.loc["star (n=3)", "auc"] == "0.7200 ± 0.0200"       # sample std (ddof=1)
    assert out.loc["star (n=3)", "gauc"] == "0.6000 ± 0.0000"
    assert out.loc["baseline (n=1)", "auc"] == "0.6500"              # one run: no spread claimed
