"""The demo: the embedded synthetic multi-business-line log, a first model, its per-domain table.

Later parts of mdrec add their steps here, so a newcomer sees all of it working on one command.
"""
from __future__ import annotations

import time
from pathlib import Path

import pandas as pd

from mdrec.fileio import atomic_write_text


def default_spec_path() -> Path:
    """feature_specs/synthetic.yaml from the checkout, or the copy written beside the data."""
    return Path(__file__).resolve().parent.parent / "feature_specs" / "synthetic.yaml"


def run_demo(out: str | Path = "runs/demo", *, quick: bool = False, log=print) -> dict:
    from mdrec.data import synthetic
    from mdrec.evaluation.metrics import format_table
    from mdrec.training.run import TrainConfig
    from mdrec.training.workflow import table_from_records, train_run, versus_baseline

    out = Path(out)
    started = time.time()
    config = synthetic.SyntheticConfig(num_impressions=30_000, num_users=1500, num_items=800) if quick \
        else synthetic.SyntheticConfig()
    log(f"[1/2] generating the synthetic log ({config.num_impressions:,} impressions, "
        f"{len(config.domains)} business lines, seed {config.seed})")
    data_dir = out / "data"
    generated = synthetic.generate(config)
    paths = synthetic.write(generated, data_dir)
    spec_path = data_dir / "spec.yaml"
    atomic_write_text(spec_path, default_spec_path().read_text(encoding="utf-8"))
    bayes = bayes_auc_on_test(generated)

    log("[2/2] training the shared-bottom CTR model (all domains, one MLP)")
    train_config = TrainConfig(model="shared_bottom", train=str(paths["train"]), valid=str(paths["valid"]),
                               test=str(paths["test"]), epochs=1 if quick else 6, batch_size=1024,
                               learning_rate=2e-3, patience=2, seed=0,
                               hyperparameters={"hidden": [256, 128, 64], "dropout": 0.1,
                                                "embeddings_l2": 3e-4})
    metrics = train_run(spec_path, train_config, out / "shared_bottom", overwrite=True, log=log)
    table = table_from_records(metrics["tables"]["test"])
    if bayes:
        table["bayes_auc"] = pd.Series(bayes)
    log("\nshared_bottom on the test split (the newest 10% of time), per business line:")
    log(format_table(table[[c for c in ("rows", "ctr", "pred_ctr", "calibration", "auc", "bayes_auc",
                                        "gauc", "logloss") if c in table]]))
    log("bayes_auc: AUC of the generator's true click probabilities, the best any model can reach.")
    log("\nagainst the sanity baseline (smoothed user-mean + item-mean click rate), test split:")
    log(format_table(versus_baseline(metrics, "test")))
    log(f"\nrun folder: {out / 'shared_bottom'}   data: {data_dir}   ({time.time() - started:.0f} s)")
    return {"test_table": table, "metrics": metrics}


def bayes_auc_on_test(generated) -> dict[str, float]:
    """Per-domain (and ALL) AUC of the true click probabilities on the test split."""
    from mdrec.data.synthetic import bayes_auc

    _, _, test = generated.split()
    truth = generated.true_probability[test.index.to_numpy()]
    labels = test["click"].to_numpy()
    out = {"ALL": bayes_auc(truth, labels)}
    for domain in sorted(test["domain"].unique()):
        mask = (test["domain"] == domain).to_numpy()
        out[domain] = bayes_auc(truth[mask], labels[mask])
    return out
