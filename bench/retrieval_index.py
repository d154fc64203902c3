"""ScaNN against brute force over 100k and 1M candidates, measured in one run.

For each catalogue size: exact ground truth, tune() for the recall target (one JSON line per tried
setting), then recall@10 and queries/second at batch 1 and batch 256 for
  brute_force   tensorflow-recommenders' BruteForce layer (matmul + top_k, in a tf.function)
  exact_top_k   mdrec's blocked exact search (numpy in, TF matmul/top_k)
  scann_default ScaNN layer with ScannSettings.default_for(n)
  scann_tuned   ScaNN layer with the setting tune() chose
Kinds are measured in alternating rounds and the median per kind is reported, with speed-ups as
ratios to brute force at the same batch size (these machines are shared and noisy).
Target: recall@10 >= 0.95 at >= 10x brute-force throughput at 1M items, batch 256.

    nice python bench/retrieval_index.py [--sizes 100000,1000000] [--queries 1000] [--seed 0]
                                         [--recall-target 0.95] [--seconds 2] [--rounds 3]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import mdrec  # noqa: E402,F401
import tensorflow as tf  # noqa: E402
from tensorflow_recommenders.layers import factorized_top_k  # noqa: E402

from mdrec.retrieval.domain_index import build_index  # noqa: E402
from mdrec.retrieval.exact import exact_top_k  # noqa: E402
from mdrec.retrieval.scann import ScannSettings  # noqa: E402
from mdrec.retrieval.tuning import measure_qps, recall_against_exact, tune  # noqa: E402

K = 10
BATCHES = (1, 256)


def emit(**fields) -> None:
    print(json.dumps({"bench": "retrieval_index", **fields}), flush=True)


def mixture(n: int, queries: int, dim: int, centres: int, noise: float, seed: int):
    """Items and queries from one Gaussian mixture, L2-normalised: float32 [n, dim], [queries, dim].

    Clustered on purpose: learned embeddings are clustered (items of a category, a shop, a style
    sit together), and that structure is what partitioning exploits. Isotropic Gaussian noise is
    the worst case for any ANN index (no structure, all neighbours nearly equidistant), so it
    would understate what ScaNN does on real embeddings."""
    rng = np.random.default_rng(seed)
    centre = rng.normal(size=(centres, dim)).astype(np.float32)
    centre /= np.linalg.norm(centre, axis=1, keepdims=True)
    # Uneven cluster sizes, as in catalogues (a few big categories, a long tail).
    weight = rng.pareto(1.5, centres) + 1
    weight /= weight.sum()

    def draw(m: int) -> np.ndarray:
        x = centre[rng.choice(centres, m, p=weight)] + noise * rng.normal(size=(m, dim)).astype(np.float32)
        return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)

    return draw(n), draw(queries)


def run_size(n: int, args) -> None:
    items, queries = mixture(n, args.queries, args.dim, args.centres, args.noise, args.seed + n)
    candidates = tf.constant(items)
    ids = np.arange(n, dtype=np.int64)

    start = time.perf_counter()
    _, exact = exact_top_k(queries, candidates, K)
    emit(n=n, kind="ground_truth", seconds=round(time.perf_counter() - start, 2))

    start = time.perf_counter()
    tuned = tune(items, queries, k=K, recall_target=args.recall_target, exact_ids=exact, batch_size=256,
                 qps_seconds=args.tune_seconds, qps_repeats=1)
    for row in tuned.table:
        emit(n=n, kind="scann_tune", batch=256, **row)
    emit(n=n, kind="scann_tune_result", reached=tuned.reached, recall_at_10=tuned.recall,
         settings=asdict(tuned.settings), message=tuned.message, seconds=round(time.perf_counter() - start, 1))

    searchers = {}
    brute = factorized_top_k.BruteForce(k=K).index(candidates, tf.constant(ids))
    searchers["brute_force"] = (tf.function(lambda q: brute(q, k=K), reduce_retracing=True), True, None)
    searchers["exact_top_k"] = (lambda q: exact_top_k(q, candidates, K), False, None)
    for kind, settings in (("scann_default", ScannSettings.default_for(n, K)), ("scann_tuned", tuned.settings)):
        begun = time.perf_counter()
        layer = build_index("scann", items, ids, k=K, settings=settings)
        emit(n=n, kind=kind, build_seconds=round(time.perf_counter() - begun, 1), settings=asdict(settings))
        searchers[kind] = (tf.function(lambda q, layer=layer: layer(q, k=K), reduce_retracing=True), True, settings)

    recall = {}
    for kind, (fn, tensor_input, _) in searchers.items():
        found = []
        for lo in range(0, len(queries), 256):
            batch = queries[lo:lo + 256]
            found.append(np.asarray(fn(tf.constant(batch) if tensor_input else batch)[1]))
        recall[kind] = recall_against_exact(np.concatenate(found), exact)

    for batch in BATCHES:
        inputs = {True: tf.constant(queries), False: queries}
        rates = {kind: [] for kind in searchers}
        for _ in range(args.rounds):  # alternate kinds within a round; median over rounds
            for kind, (fn, tensor_input, _) in searchers.items():
                seconds = args.seconds if batch > 1 or kind.startswith("scann") else args.seconds / 2
                rates[kind].append(measure_qps(fn, inputs[tensor_input], batch, min_seconds=seconds, repeats=1))
        qps = {kind: statistics.median(r) for kind, r in rates.items()}
        for kind, (_, _, settings) in searchers.items():
            emit(n=n, batch=batch, kind=kind, recall_at_10=round(recall[kind], 4), qps=round(qps[kind], 1),
                 speedup_vs_brute_force=round(qps[kind] / qps["brute_force"], 2),
                 speedup_vs_exact_top_k=round(qps[kind] / qps["exact_top_k"], 2),
                 settings=asdict(settings) if settings else None)
        if batch == 256:
            speedup = qps["scann_tuned"] / qps["brute_force"]
            emit(n=n, batch=batch, kind="check", target="recall@10 >= 0.95 at >= 10x brute force",
                 recall_at_10=round(recall["scann_tuned"], 4), speedup_vs_brute_force=round(speedup, 2),
                 met=bool(recall["scann_tuned"] >= 0.95 and speedup >= 10))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100000,1000000", help="catalogue sizes, comma-separated")
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--recall-target", type=float, default=0.95)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--centres", type=int, default=1000)
    parser.add_argument("--noise", type=float, default=0.1, help="within-cluster noise per dimension")
    parser.add_argument("--seconds", type=float, default=2.0, help="minimum seconds per QPS measurement")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tune-seconds", type=float, default=0.5, help="QPS seconds per tuning row")
    args = parser.parse_args(argv)
    emit(kind="setup", dim=args.dim, centres=args.centres, noise=args.noise, queries=args.queries, seed=args.seed,
         threads=tf.config.threading.get_intra_op_parallelism_threads() or "default")
    for n in (int(s) for s in args.sizes.split(",")):
        run_size(n, args)


if __name__ == "__main__":
    main()
