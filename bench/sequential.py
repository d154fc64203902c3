"""The user encoder against the published sequential-recommendation table (MovieLens-1M).

    python bench/sequential.py --data ../shared/data/movielens-1m [--out /tmp/bench-sequential] \
        [--variants sasrec,sasrec_batch,nextitnet,bert4rec,cl4srec,clue,...] [--seeds 0]

Prepares the raw folder with ``mdrec data prepare movielens-1m-sequential`` (every rating an
interaction, 5-core, leave-last-out; once, into OUT/data), then pretrains every variant with the
kit's default settings (only the objective and architecture differ) and reports the published
protocol: each user's last rating ranked against all items, the user's earlier items removed
(filtered full ranking), HR@K and NDCG@K over all users, on the test split. One JSON line per
trained variant and seed (keys: variant, objective, architecture, split, hr@10, ndcg@10, hr@50,
ndcg@50, seconds, events_per_s, best_epoch, epochs_run, ratio_hr@10 to most popular), one line for
``objective: most_popular`` and one for the user kNN on item sets, then a markdown table beside the
published figures. A finished run is reused (delete OUT/NAME to retrain it).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mdrec.data.prepare import prepare  # noqa: E402
from mdrec.pretraining import evaluation  # noqa: E402
from mdrec.workflows.pretrain import pretrain_run  # noqa: E402

SPEC = Path(__file__).resolve().parents[1] / "feature_specs" / "movielens-1m-sequential.yaml"
VARIANTS = {  # name -> (objective, architecture, extra hyperparameters)
    "sasrec": ("autoregressive", "transformer", {}),
    "sasrec_keep_seen": ("autoregressive", "transformer", {"exclude_seen": False}),  # the default before 2026-12-05
    "sasrec_cosine": ("autoregressive", "transformer", {"schedule": "cosine"}),  # the rate decays to 0 by the cap
    "sasrec_batch": ("autoregressive", "transformer", {"loss_weighting": "batch"}),  # the default before
    "bert4rec_batch": ("mlm", "transformer", {"loss_weighting": "batch"}),
    "bert4rec_exclude_seen": ("mlm", "transformer", {"exclude_seen": True}),  # the softmax the ranking filters
    "bert4rec_mask_last": ("mlm", "transformer", {"mask_last": 0.2}),  # BERT4Rec's last-item samples
    # A transformer's usual recipe against the slow start: a linear warm-up to twice the rate, cosine to 0.
    "bert4rec_warmup": ("mlm", "transformer", {"warmup_epochs": 3, "schedule": "cosine", "learning_rate": 2e-3}),
    # mlm's default schedule is 100 epochs, patience 20; this is the one before 2026-12-06's evening.
    "bert4rec_60": ("mlm", "transformer", {"epochs": 60, "patience": 10}),
    "nextitnet": ("autoregressive", "nextitnet", {}),
    "bert4rec": ("mlm", "transformer", {}),
    "cl4srec": ("contrastive", "transformer", {}),
    "clue": ("contrastive", "transformer", {"next_item_weight": 0.0}),
}
# Published on exactly this protocol (ML-1M, 5-core, leave-last-out, filtered full ranking).
PUBLISHED = [
    ("SASRec+ (full softmax cross-entropy)", 0.3152, 0.1821, "Klenitskiy & Vasilev, RecSys 2023"),
    ("gSASRec (256 negatives, gBCE)", 0.3003, 0.1726, "Petrov & Macdonald, RecSys 2023"),
    ("BERT4Rec", 0.2843, 0.1537, "Klenitskiy & Vasilev 2023"),
    ("SASRec (BCE, one negative)", 0.2500, 0.1341, "Klenitskiy & Vasilev 2023"),
]
KEYS = ("hr@10", "ndcg@10", "hr@50", "ndcg@50")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="the raw MovieLens-1M folder (ml-1m.inter.gz)")
    parser.add_argument("--out", default="/tmp/bench-sequential", help="prepared data and run folders")
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"comma separated: {', '.join(VARIANTS)}")
    parser.add_argument("--seeds", default="0", help="comma separated")
    args = parser.parse_args()

    out = Path(args.out)
    prepared = out / "data"
    if not (prepared / "prepare.json").is_file():
        prepare("movielens-1m-sequential", args.data, prepared)
    splits = {name: prepared / f"{name}.parquet" for name in ("train", "valid", "test")}
    rows, baselines = [], {}
    for name in [v for v in args.variants.split(",") if v]:
        if name not in VARIANTS:
            raise SystemExit(f"unknown variant {name!r}; use {', '.join(VARIANTS)}")
        objective, architecture, extra = VARIANTS[name]
        for seed in [int(s) for s in args.seeds.split(",") if s]:
            started = time.time()
            with contextlib.redirect_stdout(sys.stderr):   # stdout: JSON lines only; the bars go to stderr
                metrics = pretrain_run(SPEC, splits["train"], out / f"{name}-seed{seed}", valid=splits["valid"],
                                       test=splits["test"], seed=seed, objective=objective,
                                       architecture=architecture, log=lambda *_: None, **extra)
            table = {row["model"]: row for row in metrics["tables"]["test"]}
            popular = table[evaluation.MOST_POPULAR]
            baselines[evaluation.MOST_POPULAR] = popular
            baselines[evaluation.ITEM_SET_KNN] = table[evaluation.ITEM_SET_KNN]
            head = table.get(evaluation.head_name(objective), table[evaluation.KNN])
            row = {"variant": name, "objective": objective, "architecture": architecture, "seed": seed,
                   "split": "test", "scored_by": "head" if evaluation.head_name(objective) in table else "kNN",
                   **{k: round(head[k], 4) for k in KEYS},
                   "valid_ndcg@10": round(metrics[f"best_valid_{evaluation.EARLY_STOPPING}"], 4),
                   "seconds": round(metrics["seconds"], 1), "training_seconds": metrics["training_seconds"],
                   "events_per_s": metrics["training_events_per_s"], "best_epoch": metrics["best_epoch"] + 1,
                   "epochs_run": metrics["epochs_run"], "ratio_hr@10": round(head["hr@10"] / popular["hr@10"], 2),
                   "wall_seconds_this_call": round(time.time() - started, 1)}
            rows.append(row)
            print(json.dumps(row), flush=True)
    for label, objective in ((evaluation.MOST_POPULAR, "most_popular"), (evaluation.ITEM_SET_KNN, "user_knn_item_sets")):
        if label in baselines:
            print(json.dumps({"objective": objective, "split": "test",
                              **{k: round(baselines[label][k], 4) for k in KEYS}}), flush=True)
    print("\n| model | HR@10 | NDCG@10 | HR@50 | NDCG@50 | time | source |\n|---|---|---|---|---|---|---|")
    for row in rows:
        print(f"| mdrec {row['variant']} ({row['objective']}, {row['architecture']}, seed {row['seed']}) | "
              f"{row['hr@10']:.4f} | {row['ndcg@10']:.4f} | {row['hr@50']:.4f} | {row['ndcg@50']:.4f} | "
              f"{row['seconds'] / 60:.0f} min | this run |")
    for label, hr, ndcg, source in PUBLISHED:
        print(f"| {label} | {hr:.4f} | {ndcg:.4f} | | | | {source} |")
    for label in (evaluation.ITEM_SET_KNN, evaluation.MOST_POPULAR):
        if label in baselines:
            b = baselines[label]
            print(f"| {label} | {b['hr@10']:.4f} | {b['ndcg@10']:.4f} | {b['hr@50']:.4f} | {b['ndcg@50']:.4f} | | "
                  "this run |")


if __name__ == "__main__":
    main()
