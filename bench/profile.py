"""How general is a pretrained user representation? Predict user attributes from it (PeterRec).

For each seed: pretrain a user encoder on the log's clicks (``mdrec pretrain``), then train the
profile task for every --targets column in every transfer mode (frozen, finetune, adapter,
scratch) on held-out users, beside the majority-class sanity row. Prints one JSON line per
(target, mode, seed) and a markdown table of accuracy and macro-F1, mean ± std over seeds.

  python bench/profile.py --data /tmp/real/movielens-1m --spec feature_specs/movielens-1m.yaml \
      --targets gender age occupation --seeds 0 1 2 --out /tmp/profile-ml1m
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
from mdrec.evaluation.tables import mean_std, spread
from mdrec.transfer.user_feature import MODES


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, type=Path, help="a folder with train.parquet and valid.parquet")
    parser.add_argument("--spec", required=True)
    parser.add_argument("--targets", nargs="+", required=True)
    parser.add_argument("--objective", default="mlm")
    parser.add_argument("--pretrain-args", default="")
    parser.add_argument("--pretrained", type=Path, help="reuse this pretraining run for every seed (seeds then "
                        "vary the user split and the head, not the encoder)")
    parser.add_argument("--modes", nargs="+", default=["frozen", "finetune", "adapter", "scratch"], choices=MODES)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--out", required=True, type=Path)
    args = parser.parse_args()

    from mdrec.workflows.profile import train_profile

    rows = []
    for seed in args.seeds:
        pretrained = args.pretrained or args.out / f"pretrained-{seed}"
        started = time.time()
        if not args.pretrained:
            subprocess.run([sys.executable, "-m", "mdrec.cli", "pretrain", "--spec", args.spec, "--data",
                            str(args.data / "train.parquet"), "--valid", str(args.data / "valid.parquet"),
                            "--objective", args.objective, "--seed", str(seed), "--out", str(pretrained),
                            *args.pretrain_args.split()], check=True, stdout=subprocess.DEVNULL)
        print(json.dumps({"pretrain": args.objective, "seed": seed, "seconds": round(time.time() - started, 1)}),
              flush=True)
        for target in args.targets:
            for mode in args.modes:
                started = time.time()
                metrics = train_profile(str(pretrained), args.spec, str(args.data / "train.parquet"), target,
                                        args.out / f"{target}-{mode}-{seed}", mode=mode, epochs=args.epochs,
                                        seed=seed, overwrite=True, log=lambda *_: None)
                table = metrics.table.loc["ALL"]
                for scorer in ("model", "majority class"):
                    part = table[table["model"] == scorer].iloc[0]
                    row = {"target": target, "variant": mode if scorer == "model" else scorer, "seed": seed,
                           "accuracy": float(part["accuracy"]), "macro_f1": float(part["macro_f1"]),
                           "users": int(part["users"]), "seconds": round(time.time() - started, 1),
                           "trainable_share": metrics["transfer"]["encoder_trainable_share"]}
                    if scorer == "model" or mode == args.modes[0]:
                        rows.append(row)
                        print(json.dumps(row), flush=True)
    frame = pd.DataFrame(rows)
    print(f"\nprofile prediction on held-out users (mean ± std over seeds {args.seeds})\n")
    print("| target | variant | accuracy | macro-F1 | trainable share of encoder |")
    print("|---|---|---:|---:|---:|")
    for (target, variant), group in frame.groupby(["target", "variant"], sort=False):
        def cell(column):
            return mean_std(spread(group[column]))  # the kit's rule: one seed claims no spread
        share = group["trainable_share"].iloc[0] if variant != "majority class" else float("nan")
        print(f"| {target} | {variant} | {cell('accuracy')} | {cell('macro_f1')} | "
              f"{'' if np.isnan(share) else f'{100 * share:.1f}%'} |")


if __name__ == "__main__":
    main()
