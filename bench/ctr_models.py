"""The multi-domain CTR models side by side with default settings: every model x every seed, the
sanity rows (fitted on the training split, settings chosen on validation), and each model's gain
over the strongest sanity row with a 95% interval over the seeds.

    python bench/ctr_models.py --data ../shared/data/douban-book-music
    python bench/ctr_models.py --data ../shared/data/movielens-1m --dataset movielens-1m

--data is a raw shared folder (prepared into --work first, with the shipped spec of --dataset) or a
folder already written by `mdrec data prepare` (train/valid/test.parquet). Prints JSON lines:

  {"model", "seed", "split", "auc", "gauc", "logloss", "auc[LINE]", "calibration[LINE]",
   "calibration_before[LINE]", "best_epoch", "epochs_run", "seconds"}  one per model and seed
  {"model": "baseline: ...", "seed": null, ...}                       one per sanity row
  {"summary": MODEL, "auc_mean", "auc_std", "logloss_mean", "gain_over", "auc_gain", "auc_gain_ci95",
   "logloss_gain", "lines_won_vs_shared_bottom", "auc_vs_shared_bottom_ci95"}   one per model

``--statistics`` first runs `mdrec data statistics` on the split (its defaults: each key's smoothed
click rate and graded-label mean and its rows, a training row's from the other folds or earlier rows)
and trains every model on its spec; the sanity rows then include ``baseline: logistic over the
statistics`` (the statistics columns alone, standardised, C chosen on validation from 0.01-100):
what the columns give without a model.

When the spec cuts the click from a graded column (the models then train on every grade,
mdrec.layers.grades), the sanity rows include ``baseline: first-order logistic on every grade``:
the kit's logistic row fitted on every grade threshold (its C chosen on validation AUC; every run
carries it, mdrec.evaluation.baselines.ctr), the same signal without a model.

Real data stays outside the repository: --work defaults to a temporary folder.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mdrec.data.prepare import prepare  # noqa: E402
from mdrec.data.statistics import PREFIX, StatisticsSettings, write_statistics  # noqa: E402
from mdrec.progress import quiet_progress  # noqa: E402
from mdrec.spec import SHIPPED_SPECS  # noqa: E402
from mdrec.training.run import TrainConfig  # noqa: E402
from mdrec.workflows.train import train_run  # noqa: E402

MODELS = ("star", "shared_bottom", "separate", "mmoe")


def prepared(data: Path, dataset: str, work: Path) -> Path:
    """A folder with train/valid/test.parquet: ``data`` itself, or ``data`` prepared into ``work``."""
    if (data / "train.parquet").is_file():
        return data
    out = work / "data"
    if not (out / "prepare.json").is_file():
        prepare(dataset, data, out)
    return out


def with_statistics(spec: Path, data: Path, out: Path) -> tuple[Path, Path]:
    """The split with `mdrec data statistics` columns (default settings) in ``out``, and its spec."""
    if not (out / "statistics.json").is_file():
        write_statistics(spec, data, out, StatisticsSettings())
    return out, out / "spec.yaml"


def statistics_logistic(spec_path: Path, data: Path, split: str) -> list[dict]:
    """A logistic regression over the statistics columns alone (standardised on training), its C
    chosen on validation AUC: the table of ``split`` as metrics.json records."""
    import pandas as pd
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.preprocessing import StandardScaler

    from mdrec.data.columns import DOMAIN, LABEL
    from mdrec.data.log import canonicalize
    from mdrec.evaluation.metrics import ctr_report
    from mdrec.spec import load_spec

    spec = load_spec(spec_path)
    columns = [f.name for f in spec.features if f.name.startswith(PREFIX)]
    frames = {name: canonicalize(pd.read_parquet(data / f"{name}.parquet"), spec).frame
              for name in ("train", "valid", split)}
    scaler = StandardScaler().fit(frames["train"][columns])
    x = {name: scaler.transform(frame[columns]) for name, frame in frames.items()}
    y = {name: frame[LABEL].to_numpy() for name, frame in frames.items()}
    fitted = [LogisticRegression(C=c, max_iter=2000).fit(x["train"], y["train"]) for c in (0.01, 0.1, 1.0, 10.0, 100.0)]
    best = max(fitted, key=lambda m: roc_auc_score(y["valid"], m.predict_proba(x["valid"])[:, 1]))
    frame = frames[split].assign(score=best.predict_proba(x[split])[:, 1])
    table = ctr_report(frame, label=LABEL, score="score", domain=DOMAIN, user=spec.user_id.name)
    return table.reset_index().to_dict("records")


def row(model: str, seed: int | None, split: str, table: list[dict], before: list[dict] | None = None) -> dict:
    """One JSON line from a metrics.json table (records with a "domain" column, "ALL" overall)."""
    by_line = {r["domain"]: r for r in table}
    out = {"model": model, "seed": seed, "split": split,
           **{k: round(by_line["ALL"][k], 5) for k in ("auc", "gauc", "logloss")}}
    lines = [d for d in by_line if d != "ALL"]
    out.update({f"auc[{d}]": round(by_line[d]["auc"], 5) for d in lines})
    out.update({f"calibration[{d}]": round(by_line[d]["calibration"], 4) for d in lines})
    if before:
        out.update({f"calibration_before[{r['domain']}]": round(r["calibration"], 4) for r in before
                    if r["domain"] != "ALL"})
    return out


def interval(values: list[float]) -> list[float]:
    """95% t interval of the mean of ``values`` (one per seed)."""
    values = np.asarray(values, dtype=float)
    if len(values) < 2:
        return [float(values.mean())] * 2
    half = stats.t.ppf(0.975, len(values) - 1) * values.std(ddof=1) / np.sqrt(len(values))
    return [round(float(values.mean() - half), 5), round(float(values.mean() + half), 5)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="raw shared folder, or a prepared folder")
    parser.add_argument("--dataset", default="douban-book-music",
                        help="the shipped dataset and spec name (douban-book-music, movielens-1m)")
    parser.add_argument("--spec", help="default: the shipped spec of --dataset")
    parser.add_argument("--work", help="where prepared data and runs go (default: a temporary folder)")
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--split", default="test", choices=("valid", "test"))
    parser.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                        help="a model hyperparameter for every model (an ablation; the table is of defaults)")
    parser.add_argument("--domain-batches", action="store_true",
                        help="draw every batch from one line, as STAR's paper trains (an ablation)")
    parser.add_argument("--statistics", action="store_true",
                        help="train on the split with `mdrec data statistics` columns (and add their sanity row)")
    args = parser.parse_args()
    import yaml

    work = Path(args.work or tempfile.mkdtemp(prefix="mdrec-ctr-bench-"))
    data = prepared(Path(args.data), args.dataset, work)
    spec = Path(args.spec) if args.spec else SHIPPED_SPECS / f"{args.dataset}.yaml"
    statistics_row = None
    if args.statistics:
        data, spec = with_statistics(spec, data, work / "statistics")
        statistics_row = row("baseline: logistic over the statistics", None, args.split,
                             statistics_logistic(spec, data, args.split))
    params = {k: yaml.safe_load(v) for k, _, v in (p.partition("=") for p in args.param)}
    results: dict[str, list[dict]] = {}
    baselines: dict[str, dict] = {}
    for model in args.models:
        for seed in args.seeds:
            started = time.time()
            config = TrainConfig(model=model, train=str(data / "train.parquet"), valid=str(data / "valid.parquet"),
                                 test=str(data / "test.parquet"), seed=seed, hyperparameters=dict(params),
                                 domain_batches=args.domain_batches)
            with quiet_progress():  # stdout carries the JSON lines only
                metrics = train_run(spec, config, work / "runs" / f"{model}-seed{seed}", overwrite=True,
                                    log=lambda *_: None)
            before = metrics.get("calibration", {}).get("before", {}).get(args.split)
            line = {**row(model, seed, args.split, metrics["tables"][args.split], before),
                    "best_epoch": metrics["best_epoch"] + 1, "epochs_run": metrics["epochs_run"],
                    "seconds": round(time.time() - started, 1)}
            print(json.dumps(line), flush=True)
            results.setdefault(model, []).append(line)
            if not baselines:  # fitted on the training split: the same for every model and seed
                named = {f"baseline: {metrics['baseline']['name']}": metrics["baseline"], **metrics["baselines"]}
                for name, fitted in named.items():
                    if args.split in fitted.get("tables", {}):
                        baselines[name] = row(name, None, args.split, fitted["tables"][args.split])
                        print(json.dumps(baselines[name]), flush=True)
    if statistics_row:
        baselines[statistics_row["model"]] = statistics_row
        print(json.dumps(statistics_row), flush=True)
    strongest = max(baselines, key=lambda n: baselines[n]["auc"]) if baselines else None
    for model, lines in results.items():
        auc = [r["auc"] for r in lines]
        summary = {"summary": model, "split": args.split, "seeds": len(lines),
                   "auc_mean": round(float(np.mean(auc)), 5), "auc_std": round(float(np.std(auc, ddof=1)), 5)
                   if len(auc) > 1 else 0.0, "logloss_mean": round(float(np.mean([r["logloss"] for r in lines])), 5)}
        if strongest:
            summary.update({"gain_over": strongest,
                            "auc_gain": round(summary["auc_mean"] - baselines[strongest]["auc"], 5),
                            "auc_gain_ci95": interval([a - baselines[strongest]["auc"] for a in auc]),
                            "logloss_gain": round(baselines[strongest]["logloss"] - summary["logloss_mean"], 5)})
        if model != "shared_bottom" and "shared_bottom" in results:
            keys = [k for k in lines[0] if k.startswith("auc[")]
            summary["lines_won_vs_shared_bottom"] = int(sum(
                np.mean([r[k] for r in lines]) > np.mean([r[k] for r in results["shared_bottom"]]) for k in keys))
            summary["auc_vs_shared_bottom_ci95"] = interval(
                [a - b["auc"] for a, b in zip(auc, results["shared_bottom"])])
        print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
