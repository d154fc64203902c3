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
    from mdrec.evaluation.compare import compare_runs
    from mdrec.training.workflow import table_from_records, train_run

    out = Path(out)
    started = time.time()
    config = synthetic.SyntheticConfig(num_impressions=30_000, num_users=1500, num_items=800) if quick \
        else synthetic.SyntheticConfig()
    log(f"[1/3] generating the synthetic log ({config.num_impressions:,} impressions, "
        f"{len(config.domains)} business lines, seed {config.seed})")
    data_dir = out / "data"
    generated = synthetic.generate(config)
    paths = synthetic.write(generated, data_dir)
    spec_path = data_dir / "spec.yaml"
    atomic_write_text(spec_path, default_spec_path().read_text(encoding="utf-8"))
    bayes = bayes_auc_on_test(generated)

    runs = {}
    for step, (model, what) in enumerate((("star", "STAR: shared + per-line towers, partitioned norm, aux net"),
                                          ("shared_bottom", "shared-bottom: one MLP for every line")), start=2):
        log(f"\n[{step}/3] training {what}")
        train_config = TrainConfig(model=model, train=str(paths["train"]), valid=str(paths["valid"]),
                                   test=str(paths["test"]), epochs=1 if quick else 8, batch_size=1024,
                                   learning_rate=2e-3, patience=2, seed=0,
                                   hyperparameters={"hidden": [256, 128, 64], "dropout": 0.1,
                                                    "embeddings_l2": 3e-4})
        runs[model] = out / model
        metrics = train_run(spec_path, train_config, runs[model], overwrite=True, log=log)
        if model == "star":
            table = table_from_records(metrics["tables"]["test"])
            table["bayes_auc"] = pd.Series(bayes)
            log("\nSTAR on the test split (the newest 10% of time), per business line:")
            log(format_table(table[["rows", "ctr", "pred_ctr", "calibration", "auc", "bayes_auc", "gauc",
                                    "logloss"]]))

    log("\ncompare on the test split (mdrec compare):")
    comparison = compare_runs(list(runs.values()), paths["test"])
    ceiling = {"model": "bayes", "auc": bayes["ALL"], **{f"auc[{d}]": v for d, v in bayes.items() if d != "ALL"}}
    comparison = pd.concat([comparison, pd.DataFrame([ceiling], index=["bayes ceiling (true probabilities)"])])
    comparison.index.name = "run"
    log(format_table(comparison))
    log("bayes ceiling: AUC of the generator's true click probabilities, the best any model can reach;\n"
        "calib[d]: mean predicted / observed click rate.")
    log(f"\nrun folders: {', '.join(map(str, runs.values()))}   data: {data_dir}   "
        f"({time.time() - started:.0f} s)")
    return {"test_table": table, "comparison": comparison}


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
