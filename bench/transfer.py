"""Transfer from a big line to a small one: target-line CTR of every transfer variant, by history.

For each seed: pretrain a user encoder on the source line (``mdrec pretrain``), then train the
target model as  no transfer | ID warm start | scratch | frozen | finetune | adapter  (the ID warm
start's donor: one CTR run on the source line) and score the target test split by the user's
target-line history (0, 1-3, 4+ events) and by whether the source line knew the user. Prints one
JSON line per (variant, seed) and a markdown table of mean ± std over seeds with the sanity row.

  mdrec data synth --preset transfer-long --out /tmp/synth-long
  python bench/transfer.py --data /tmp/synth-long --spec feature_specs/synthetic.yaml \
      --source-line main --target-line grocery --target-fraction 0.2 --objective mlm \
      --pretrain-args '--repeats 5 --epochs 3 --pooling mean' --epochs 6 --seeds 0 1 2 --out /tmp/transfer-synth

DIR holds train/valid/test files of every line (`mdrec data synth --preset transfer-long`, or a
`mdrec data prepare` folder). ``--target-fraction`` keeps a seeded share of the target's training
rows (a small line made from a big one). Real data stays outside the repository: --out must be
a scratch folder.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

import mdrec  # noqa: F401
from mdrec.evaluation.metrics import table_to_markdown
from mdrec.workflows.transfer_report import summary, write_variants_report
from mdrec.workflows.transfer_variants import VARIANTS, run_variant


def _line_files(data: Path, line: str, out: Path, fraction: float = 1.0) -> dict[str, str]:
    out.mkdir(parents=True, exist_ok=True)
    paths = {}
    for split in ("train", "valid", "test"):
        source = next(p for p in (data / f"{split}.parquet", data / f"{split}.csv") if p.exists())
        frame = pd.read_parquet(source) if source.suffix == ".parquet" else pd.read_csv(source)
        part = frame[frame["domain"] == line]
        if split == "train" and fraction < 1.0:
            part = part[np.random.default_rng(0).random(len(part)) < fraction]
        if part.empty:
            sys.exit(f"bench/transfer.py: no rows of line '{line}' in {source}")
        paths[split] = str(out / f"{split}.parquet")
        part.to_parquet(paths[split], index=False)
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, type=Path)
    parser.add_argument("--spec", required=True)
    parser.add_argument("--source-line", required=True)
    parser.add_argument("--target-line", required=True)
    parser.add_argument("--target-fraction", type=float, default=1.0)
    parser.add_argument("--objective", default="mlm")
    parser.add_argument("--pretrain-args", default="", help="extra `mdrec pretrain` arguments")
    parser.add_argument("--model", default="shared_bottom")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS))
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--source-epochs", type=int, default=3)
    parser.add_argument("--out", required=True, type=Path)
    args = parser.parse_args()

    from mdrec.training.run import TrainConfig
    from mdrec.workflows.train import train_run

    target = _line_files(args.data, args.target_line, args.out / "target", args.target_fraction)
    source = _line_files(args.data, args.source_line, args.out / "source")
    head = {"hidden": [64], "dropout": 0.1, "embeddings_l2": 3e-4}
    donor = args.out / "donor"
    if "ID warm start" in args.variants:
        train_run(args.spec, TrainConfig(model=args.model, train=source["train"], valid=source["valid"],
                                         epochs=args.source_epochs, batch_size=1024, learning_rate=2e-3,
                                         hyperparameters=head), donor, log=lambda *_: None)
    rows = []
    for seed in args.seeds:
        pretrained = args.out / f"pretrained-{seed}"
        started = time.time()
        subprocess.run([sys.executable, "-m", "mdrec.cli", "pretrain", "--spec", args.spec, "--data",
                        source["train"], "--valid", source["valid"], "--objective", args.objective,
                        "--seed", str(seed), "--out", str(pretrained), *args.pretrain_args.split()],
                       check=True, stdout=subprocess.DEVNULL)
        print(json.dumps({"pretrain": args.objective, "seed": seed, "seconds": round(time.time() - started, 1)}),
              flush=True)
        for variant in args.variants:
            started = time.time()
            for row in run_variant(variant, spec_path=args.spec, target=target, pretrained=pretrained, donor=donor,
                                   out=args.out / f"{variant.replace(' ', '_')}-{seed}", model=args.model,
                                   seed=seed, hyperparameters=head, epochs=args.epochs,
                                   batch_size=args.batch_size):
                row["seconds"] = round(time.time() - started, 1)
                rows.append(row)
                print(json.dumps(row), flush=True)
    print(f"\ntarget line {args.target_line}: test AUC, mean ± std over seeds {args.seeds}\n")
    print(table_to_markdown(summary(rows)))
    print("\nrows per slice: " + json.dumps(rows[0]["rows"]))
    report = write_variants_report(rows, args.out / "report", title=f"target line {args.target_line}: test AUC "
                                   f"by the user's history, seeds {args.seeds}")
    print(f"report: {report['report.html']}")


if __name__ == "__main__":
    main()
