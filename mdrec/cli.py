"""``mdrec`` command line: a thin argparse layer over the library.

Mistakes in input (spec, data, arguments) print one ``mdrec: error: ...`` line and exit with 2;
no traceback.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

from mdrec.errors import MdrecError


def main(argv: list[str] | None = None) -> int:
    # TensorFlow's C++ start-up chatter (no CUDA driver, CPU flags) is noise on a terminal;
    # MDREC_TF_LOG_LEVEL=0 brings it back.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", os.environ.get("MDREC_TF_LOG_LEVEL", "3"))
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except MdrecError as exc:
        print(f"mdrec: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("mdrec: interrupted; run the same command again to resume from the last checkpoint",
              file=sys.stderr)
        return 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mdrec", description="Multi-domain CTR prediction and "
                                     "ID-based transfer between business lines.")
    sub = parser.add_subparsers(title="commands", metavar="COMMAND")

    p = sub.add_parser("demo", help="generate the synthetic log, train, print per-domain metrics")
    p.add_argument("--out", default="runs/demo", help="demo folder (default: runs/demo)")
    p.add_argument("--quick", action="store_true", help="a smaller log and one epoch (for smoke tests)")
    p.set_defaults(func=_demo)

    data = sub.add_parser("data", help="synthesise, prepare or split logs").add_subparsers(
        title="data commands", metavar="COMMAND")
    p = data.add_parser("synth", help="write the seeded synthetic multi-domain log and its splits")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--impressions", type=int, default=None, help="number of impressions (default 200000)")
    p.add_argument("--users", type=int, default=None)
    p.add_argument("--items", type=int, default=None)
    p.add_argument("--format", choices=("parquet", "csv"), default="parquet")
    p.set_defaults(func=_data_synth)

    p = data.add_parser("prepare", help="turn a raw public dataset folder into a log a shipped spec describes")
    p.add_argument("name", help="dataset: douban-book-music, movielens-1m, amazon-cloth-sport, ...")
    p.add_argument("--source", required=True, help="raw folder, e.g. ../shared/data/douban-book-music")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--negatives", type=int, default=4, help="sampled negatives per positive (implicit data)")
    p.add_argument("--format", choices=("parquet", "csv"), default="parquet")
    p.set_defaults(func=_data_prepare)

    p = data.add_parser("split", help="split a log into train/valid/test files")
    p.add_argument("--spec", required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--by", choices=("time", "leave_last_out", "random"), default="time")
    p.add_argument("--valid-fraction", type=float, default=0.1)
    p.add_argument("--test-fraction", type=float, default=0.1)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_data_split)

    spec = sub.add_parser("spec", help="feature spec tools").add_subparsers(title="spec commands", metavar="COMMAND")
    p = spec.add_parser("check", help="validate a spec, and a log against it")
    p.add_argument("spec", help="spec YAML")
    p.add_argument("--data", help="a log file or folder to check against the spec")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=_spec_check)

    p = sub.add_parser("train", help="train a CTR model into a run folder (resumes if interrupted)")
    p.add_argument("--spec", required=True)
    p.add_argument("--train", required=True)
    p.add_argument("--valid", help="validation log (early stopping on its AUC)")
    p.add_argument("--test", help="test log (metrics written to metrics.json)")
    p.add_argument("--model", default="star", choices=("star", "shared_bottom", "separate", "mmoe"))
    p.add_argument("--domain-batches", action="store_true",
                   help="draw every batch from one domain (as the STAR paper trains)")
    p.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                   help="a model hyperparameter, e.g. normalization=input (star), num_experts=8 (mmoe), "
                        "interaction=none; repeatable")
    p.add_argument("--out", required=True, help="run folder, e.g. runs/NAME")
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=1024)
    p.add_argument("--learning-rate", type=float, default=1e-3)
    p.add_argument("--patience", type=int, default=2, help="epochs without validation AUC gain before stopping")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--checkpoint-every", type=int, default=100, help="steps between checkpoints")
    p.add_argument("--hidden", default="256,128,64", help="hidden widths, comma separated")
    p.add_argument("--dropout", type=float, default=0.1)
    p.add_argument("--embeddings-l2", type=float, default=0.0)
    p.add_argument("--stream", action="store_true",
                   help="read the training log from disk chunk by chunk each epoch (bounded memory; "
                        "specs without a behaviour sequence)")
    p.add_argument("--overwrite", action="store_true", help="discard an existing run with a different config")
    p.set_defaults(func=_train)

    p = sub.add_parser("compare", help="one row per trained run on one log, with the sanity baseline")
    p.add_argument("--runs", nargs="+", required=True, help="run folders")
    p.add_argument("--data", required=True, help="the log to evaluate on (e.g. a test split)")
    p.add_argument("--out", help="also write the table as CSV here")
    p.set_defaults(func=_compare)

    p = sub.add_parser("evaluate", help="per-domain metrics of a trained run on a log")
    p.add_argument("--run", required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--out", help="write the result as JSON here")
    p.set_defaults(func=_evaluate)
    return parser


# ---- commands ------------------------------------------------------------------------------------

def _demo(args) -> int:
    from mdrec.demo import run_demo

    run_demo(args.out, quick=args.quick)
    return 0


def _data_synth(args) -> int:
    from mdrec.data import synthetic

    overrides = {k: v for k, v in (("seed", args.seed), ("num_impressions", args.impressions),
                                   ("num_users", args.users), ("num_items", args.items)) if v is not None}
    log = synthetic.generate(synthetic.SyntheticConfig(**overrides))
    paths = synthetic.write(log, args.out, fmt=args.format)
    for name, path in paths.items():
        print(f"wrote {path}")
    print(json.dumps({"bayes_auc": log.meta.get("bayes_auc")}, indent=2))
    return 0


def _data_prepare(args) -> int:
    from mdrec.data.prepare import prepare

    summary = prepare(args.name, args.source, args.out, seed=args.seed, fmt=args.format,
                      negatives=args.negatives)
    print(json.dumps(summary, indent=2, default=str))
    return 0


def _data_split(args) -> int:
    from mdrec.data.splits import split_files

    for name, (rows, path) in split_files(args.spec, args.data, args.out, by=args.by,
                                          valid_fraction=args.valid_fraction,
                                          test_fraction=args.test_fraction, seed=args.seed).items():
        print(f"{name}: {rows:,} rows -> {path}")
    return 0


def _spec_check(args) -> int:
    from mdrec.data.log import load_log
    from mdrec.data.summary import format_summary, summarize
    from mdrec.spec import load_spec

    spec = load_spec(args.spec)
    print(f"spec '{spec.name}' is valid: {len(spec.features)} features "
          f"({', '.join(f'{f.name}:{f.role}/{f.type}' for f in spec.features)})"
          + (f", sequence {spec.sequence.name} (max {spec.sequence.max_length})" if spec.sequence else ""))
    if args.data:
        summary = summarize(load_log(args.data, spec), spec)
        print(json.dumps(summary, indent=2) if args.json else format_summary(summary))
    return 0


def _train(args) -> int:
    from mdrec.evaluation.metrics import format_table
    from mdrec.training.run import TrainConfig
    from mdrec.training.workflow import table_from_records, train_run, versus_baseline

    try:
        hidden = [int(h) for h in args.hidden.split(",") if h.strip()]
    except ValueError:
        raise MdrecError(f"--hidden '{args.hidden}' must be comma-separated integers, e.g. 256,128,64") from None
    config = TrainConfig(model=args.model, train=args.train, valid=args.valid, test=args.test,
                         epochs=args.epochs, batch_size=args.batch_size, learning_rate=args.learning_rate,
                         patience=args.patience, seed=args.seed, checkpoint_every=args.checkpoint_every,
                         stream=args.stream, domain_batches=args.domain_batches,
                         hyperparameters={"hidden": hidden, "dropout": args.dropout,
                                          "embeddings_l2": args.embeddings_l2, **_params(args.param)})
    metrics = train_run(args.spec, config, args.out, overwrite=args.overwrite)
    for name, records in metrics["tables"].items():
        print(f"\n{name} ({args.model}, best epoch {metrics['best_epoch'] + 1}):")
        print(format_table(table_from_records(records)))
        print(f"\n{name}: {args.model} against the sanity baseline")
        print(format_table(versus_baseline(metrics, name)))
    _print_oov(metrics.get("oov", {}))
    print(f"\nrun folder: {args.out}")
    return 0


def _compare(args) -> int:
    from mdrec.evaluation.compare import aggregate_by_model, compare_runs
    from mdrec.evaluation.metrics import format_table
    from mdrec.fileio import atomic_write_text

    table = compare_runs(args.runs, args.data)
    print(format_table(table))
    if table["model"].duplicated().any():
        print("\nmean ± std over the runs of each model:")
        print(format_table(aggregate_by_model(table)))
    if args.out:
        atomic_write_text(args.out, table.to_csv())
    return 0


def _params(pairs: list[str]) -> dict:
    """--param KEY=VALUE pairs; values are read as YAML scalars (numbers, true/false, strings)."""
    import yaml

    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise MdrecError(f"--param '{pair}' must look like KEY=VALUE, e.g. normalization=input")
        out[key.strip()] = yaml.safe_load(value)
    return out


def _evaluate(args) -> int:
    from mdrec.evaluation.metrics import format_table
    from mdrec.training.workflow import evaluate_run

    result = evaluate_run(args.run, args.data, out=args.out)
    print(format_table(result["_table"]))
    _print_oov({"data": result["oov"]})
    return 0


def _print_oov(oov: dict) -> None:
    for split, counts in oov.items():
        parts = [f"{name} {c['oov']:,}/{c['values']:,}" for name, c in counts.items() if c["oov"]]
        if parts:
            print(f"OOV in {split} (mapped to the OOV bucket): " + ", ".join(parts))


if __name__ == "__main__":
    sys.exit(main())
