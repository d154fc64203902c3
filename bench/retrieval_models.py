"""Two-tower retrieval against the sanity rows (popularity, ItemKNN, EASE), on every line.

    python bench/retrieval_models.py --data ../shared/data/amazon-cdr-disencdr \
        --spec feature_specs/amazon-cloth-sport.yaml [--out /tmp/bench-retrieval] [--seeds 0,1,2]

``--data`` is a prepared folder (train/valid/test.parquet) or the raw shared folder, prepared once
into OUT/data by ``mdrec data prepare SPEC-NAME``. Variants: the joint two-tower over every line
(users are shared: the transfer channel) and one two-tower per line, each with the kit's default
settings plus ``--param`` overrides. The sanity rows come from the joint run's evaluation: fitted on
its training clicks, settings chosen on validation (ItemKNN and EASE over every line's clicks, and
per line). Everything is scored on the test clicks of each line by the full-catalogue protocol
(training and validation clicks removed) and, for two-tower and popularity, the sampled one
(1 + 999 negatives, labelled as sampled).

One JSON line per (model, line, seed, protocol): bench, model, line, seed, protocol, recall@10,
ndcg@10, recall@50, hr@10 ...; then a markdown table of mean ± std over seeds, and each two-tower
row's recall@10 and NDCG@10 as a ratio to the best sanity row of its line. A finished run folder is
reused (delete OUT/NAME to retrain it).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pandas as pd  # noqa: E402

from mdrec.data.io import read_file  # noqa: E402
from mdrec.data.prepare import prepare  # noqa: E402
from mdrec.evaluation.tables import mean_std, spread  # noqa: E402
from mdrec.fileio import atomic_write_table  # noqa: E402
from mdrec.spec import load_spec  # noqa: E402
from mdrec.training.run import RunDir, TrainConfig  # noqa: E402
from mdrec.workflows.evaluate import evaluate_retrieval_run  # noqa: E402
from mdrec.workflows.train import train_run  # noqa: E402

METRICS = ("recall@10", "ndcg@10", "recall@50", "hr@10")
JOINT = "two_tower (joint)"
ONE_LINE = "two_tower (one line)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="prepared folder, or the raw shared folder of the spec's dataset")
    parser.add_argument("--spec", required=True)
    parser.add_argument("--out", default="/tmp/bench-retrieval")
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--learning-rate", type=float, default=2e-3)
    parser.add_argument("--patience", type=int, default=2)
    parser.add_argument("--param", action="append", default=[], help="KEY=VALUE model hyperparameter")
    parser.add_argument("--joint-only", action="store_true", help="skip the one-model-per-line variant")
    args = parser.parse_args()

    out = Path(args.out)
    spec = load_spec(args.spec)
    data = _prepared(Path(args.data), spec.name, out / "data")
    domain_column = spec.domain.column
    splits = {name: data / f"{name}.parquet" for name in ("train", "valid", "test")}
    frames = {name: read_file(path) for name, path in splits.items()}
    domains = sorted(frames["train"][domain_column].astype(str).unique())
    hyperparameters = {k: _value(v) for k, v in (p.split("=", 1) for p in args.param)}

    variants = {JOINT: splits}
    if not args.joint_only:
        for domain in domains:  # one model per line: the same files restricted to that line
            folder = out / "lines" / domain
            variants[f"{ONE_LINE}/{domain}"] = {}
            for name, frame in frames.items():
                path = folder / f"{name}.parquet"
                if not path.exists():
                    atomic_write_table(frame[frame[domain_column].astype(str) == domain], path)
                variants[f"{ONE_LINE}/{domain}"][name] = path

    rows = []
    for seed in (int(s) for s in args.seeds.split(",")):
        for variant, paths in variants.items():
            config = TrainConfig(model="two_tower", train=str(paths["train"]), valid=str(paths["valid"]),
                                 test=str(paths["test"]), epochs=args.epochs, batch_size=args.batch_size,
                                 learning_rate=args.learning_rate, patience=args.patience, seed=seed,
                                 checkpoint_every=10_000, hyperparameters=dict(hyperparameters))
            run = out / f"{variant.replace(' ', '_').replace('/', '-').replace('(', '').replace(')', '')}-seed{seed}"
            if not (RunDir(run).metrics_path.is_file()):
                train_run(args.spec, config, run, log=lambda *_: None)
            joint = variant == JOINT
            result = evaluate_retrieval_run(run, paths["test"], sampled=True, baselines=joint)
            for protocol in ("full", "sampled"):
                for name, table in result.tables[protocol].items():
                    if name != "model" and not joint:
                        continue                   # sanity rows: the joint run's, over the whole log
                    model = variant.split("/")[0] if name == "model" else name.removeprefix("baseline: ")
                    for line, values in table.iterrows():
                        if line == "ALL" or (not joint and line != variant.split("/")[1]):
                            continue
                        record = {"bench": "retrieval_models", "model": model, "line": line, "seed": seed,
                                  "protocol": protocol, **{k: round(float(v), 5) for k, v in values.items()}}
                        print(json.dumps(record), flush=True)
                        rows.append(record)
            if joint:
                for name, b in result.record["baselines"].items():
                    print(json.dumps({"bench": "retrieval_models", "baseline": name, "seed": seed,
                                      "settings": b["settings"], "skipped": b.get("skipped")}), flush=True)
    _tables(pd.DataFrame(rows))


def _tables(frame: pd.DataFrame) -> None:
    for protocol, metrics in (("full", METRICS), ("sampled", ("hr@10", "ndcg@10"))):
        part = frame[frame["protocol"] == protocol]
        grouped = part.groupby(["model", "line"], sort=False)[list(metrics)]
        mean = grouped.mean()
        print(f"\n{protocol} protocol (test split; mean ± std over seeds):\n")
        print("| model | line | " + " | ".join(metrics) + " |\n|---|---|" + "---|" * len(metrics))
        for (model, line), values in mean.iterrows():
            cells = [mean_std(spread(grouped.get_group((model, line))[m])) for m in metrics]
            print(f"| {model} | {line} | " + " | ".join(cells) + " |")
        if protocol == "full":
            sanity = mean[~mean.index.get_level_values("model").str.startswith("two_tower")]
            if len(sanity):
                print("\ntwo-tower over the best sanity row of its line (mean over seeds):")
                for (model, line), values in mean.iterrows():
                    if not model.startswith("two_tower"):
                        continue
                    mine = sanity.xs(line, level="line")
                    ratios = [f"{m} {values[m] / mine[m].max():.2f}x of {mine[m].idxmax()}" for m in ("recall@10", "ndcg@10")]
                    print(f"- {model}, {line}: " + "; ".join(ratios))


def _prepared(data: Path, name: str, target: Path) -> Path:
    """``data`` if it holds the prepared splits, else the raw folder prepared into ``target``."""
    if (data / "train.parquet").is_file():
        return data
    if not (target / "prepare.json").is_file():
        prepare(name, data, target)
    return target


def _value(text: str):
    import yaml

    return yaml.safe_load(text)


if __name__ == "__main__":
    main()
