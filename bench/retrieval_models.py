"""One joint cross-domain two-tower model against one model per domain, on a prepared log.

    python bench/retrieval_models.py --data /tmp/real/amazon-cloth-sport \
        --spec feature_specs/amazon-cloth-sport.yaml --out /tmp/bench-retrieval [--seeds 0,1]

The joint model sees every line's clicks (users are shared: the transfer channel); the per-domain
models see one line each. Both are evaluated on the test clicks of each line with the full
catalogue protocol and the sampled one (1 + 999 negatives, labelled as sampled), beside the
popularity row. Prints one JSON line per (variant, seed, protocol, line) and a markdown table.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pandas as pd  # noqa: E402

from mdrec.data.io import read_file  # noqa: E402
from mdrec.fileio import atomic_write_table  # noqa: E402
from mdrec.spec import load_spec  # noqa: E402
from mdrec.training.run import TrainConfig  # noqa: E402
from mdrec.training.workflow import evaluate_retrieval_run, train_run  # noqa: E402

METRICS = ("recall@10", "ndcg@10", "recall@50", "hr@10")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="prepared folder with train/valid/test.parquet")
    parser.add_argument("--spec", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--learning-rate", type=float, default=2e-3)
    parser.add_argument("--patience", type=int, default=2)
    parser.add_argument("--param", action="append", default=[], help="KEY=VALUE model hyperparameter")
    args = parser.parse_args()

    data, out = Path(args.data), Path(args.out)
    spec = load_spec(args.spec)
    domain_column = spec.domain.column
    splits = {name: data / f"{name}.parquet" for name in ("train", "valid", "test")}
    frames = {name: read_file(path) for name, path in splits.items()}
    domains = sorted(frames["train"][domain_column].astype(str).unique())
    hyperparameters = {k: _value(v) for k, v in (p.split("=", 1) for p in args.param)}

    variants = {"joint": splits}
    for domain in domains:  # one model per line: the same files restricted to that line
        folder = out / "data" / domain
        variants[f"only-{domain}"] = {}
        for name, frame in frames.items():
            path = folder / f"{name}.parquet"
            if not path.exists():
                atomic_write_table(frame[frame[domain_column].astype(str) == domain], path)
            variants[f"only-{domain}"][name] = path

    rows = []
    for seed in (int(s) for s in args.seeds.split(",")):
        for variant, paths in variants.items():
            config = TrainConfig(model="two_tower", train=str(paths["train"]), valid=str(paths["valid"]),
                                 test=str(paths["test"]), epochs=args.epochs, batch_size=args.batch_size,
                                 learning_rate=args.learning_rate, patience=args.patience, seed=seed,
                                 checkpoint_every=10_000, hyperparameters=dict(hyperparameters))
            run = out / f"{variant}-seed{seed}"
            train_run(args.spec, config, run, log=lambda *_: None)
            result = evaluate_retrieval_run(run, splits["test"] if variant == "joint" else paths["test"],
                                            sampled=True)
            for protocol in ("full", "sampled"):
                for name, table in result["_tables"][protocol].items():
                    label = variant if name == "model" else f"{name} ({variant} catalogue)"
                    for line, values in table.iterrows():
                        record = {"bench": "retrieval_models", "variant": label, "seed": seed,
                                  "protocol": protocol, "domain": line,
                                  **{k: round(float(v), 5) for k, v in values.items()}}
                        print(json.dumps(record), flush=True)
                        rows.append(record)
    frame = pd.DataFrame(rows)
    frame = frame[frame["domain"] != "ALL"]
    for protocol, metrics in (("full", METRICS), ("sampled", ("hr@10", "ndcg@10"))):
        part = frame[frame["protocol"] == protocol]
        table = part.groupby(["variant", "domain"])[list(metrics)].agg(["mean", "std"]).round(4)
        print(f"\n{protocol} protocol (test split; mean and std over seeds):")
        try:
            print(table.to_markdown())
        except ImportError:  # tabulate is optional
            print(table.to_string())


def _value(text: str):
    import yaml

    return yaml.safe_load(text)


if __name__ == "__main__":
    main()
