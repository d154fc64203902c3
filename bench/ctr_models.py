"""Multi-domain CTR models side by side on a prepared dataset: every model x every seed, then the
compare table (one row per run, mean ± std per model, sanity baseline last).

    python bench/ctr_models.py --spec feature_specs/douban-book-music.yaml --data data/douban \
        --out runs/bench-douban --seeds 0 1 2

--data is a folder written by `mdrec data prepare` (train/valid/test.parquet). Prints one JSON line
per run (test metrics) and the tables; real data stays outside the repository.
"""
from __future__ import annotations

import argparse
import json
import sys
import time

import yaml
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mdrec.evaluation.compare import aggregate_by_model, compare_runs  # noqa: E402
from mdrec.evaluation.metrics import format_table  # noqa: E402
from mdrec.training.run import TrainConfig  # noqa: E402
from mdrec.training.workflow import train_run  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--spec", required=True)
    parser.add_argument("--data", required=True, help="folder with train/valid/test.parquet")
    parser.add_argument("--out", required=True)
    parser.add_argument("--models", nargs="+", default=["star", "shared_bottom", "separate", "mmoe"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--learning-rate", type=float, default=2e-3)
    parser.add_argument("--embeddings-l2", type=float, default=3e-4)
    parser.add_argument("--domain-batches", action="store_true")
    parser.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                        help="model hyperparameter for every model, e.g. normalization=none")
    args = parser.parse_args()
    data = Path(args.data)
    params = {k: yaml.safe_load(v) for k, _, v in (p.partition("=") for p in args.param)}
    runs = []
    for model in args.models:
        for seed in args.seeds:
            out = Path(args.out) / f"{model}-seed{seed}"
            started = time.time()
            config = TrainConfig(model=model, train=str(data / "train.parquet"), valid=str(data / "valid.parquet"),
                                 test=str(data / "test.parquet"), epochs=args.epochs, batch_size=args.batch_size,
                                 learning_rate=args.learning_rate, patience=2, seed=seed,
                                 domain_batches=args.domain_batches,
                                 hyperparameters={"embeddings_l2": args.embeddings_l2, **params})
            metrics = train_run(args.spec, config, out, log=lambda *_: None)
            test = {row["domain"]: row for row in metrics["tables"]["test"]}
            print(json.dumps({"model": model, "seed": seed, "seconds": round(time.time() - started, 1),
                              "best_epoch": metrics["best_epoch"], "auc": test["ALL"]["auc"],
                              "gauc": test["ALL"]["gauc"], "logloss": test["ALL"]["logloss"],
                              "auc_by_domain": {d: r["auc"] for d, r in test.items() if d != "ALL"}}), flush=True)
            runs.append(out)
    table = compare_runs(runs, data / "test.parquet")
    print(format_table(table))
    print(format_table(aggregate_by_model(table)))


if __name__ == "__main__":
    main()
