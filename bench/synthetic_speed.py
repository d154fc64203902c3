"""How long the synthetic generator and the Bayes-AUC ceiling take, against reference operations run
in the same process (the tests used to assert wall-clock limits; timing belongs here).

    python bench/synthetic_speed.py [--rounds 3] [--rows 1000000]

Prints one JSON line per round and step:

  {"step": "generate_default", "round": r, "seconds": s, "rows": 200000,
   "ratio_to_sort": s / seconds of np.sort over the same number of floats}
  {"step": "expected_bayes_auc", "round": r, "seconds": s, "rows": N, "ratio_to_sort": ...}

and a last line with the median of each step. ``expected_bayes_auc`` is O(n log n): its ratio to a
sort of the same n stays a small constant as --rows grows (an O(n^2) version would grow with n).
``generate`` is vectorised: about 1-2 s for the default 200,000 impressions on one core.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mdrec.data.synthetic import expected_bayes_auc, generate  # noqa: E402


def seconds(fn, *args) -> float:
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds (default 3)")
    parser.add_argument("--rows", type=int, default=1_000_000, help="probabilities for the Bayes AUC (default 1M)")
    args = parser.parse_args()

    probabilities = np.random.default_rng(0).random(args.rows)
    results: dict[str, list[float]] = {"generate_default": [], "expected_bayes_auc": []}
    for r in range(args.rounds):
        log_seconds = seconds(generate)
        rows = 200_000
        sort_rows = seconds(np.sort, np.random.default_rng(r).random(rows))
        line = {"step": "generate_default", "round": r, "seconds": round(log_seconds, 3), "rows": rows,
                "ratio_to_sort": round(log_seconds / sort_rows, 1)}
        results["generate_default"].append(log_seconds)
        print(json.dumps(line), flush=True)
        auc_seconds = seconds(expected_bayes_auc, probabilities)
        sort_seconds = seconds(np.sort, probabilities)
        results["expected_bayes_auc"].append(auc_seconds)
        print(json.dumps({"step": "expected_bayes_auc", "round": r, "seconds": round(auc_seconds, 3),
                          "rows": args.rows, "ratio_to_sort": round(auc_seconds / sort_seconds, 1)}), flush=True)
    print(json.dumps({"summary": {step: round(statistics.median(v), 3) for step, v in results.items()}}))


if __name__ == "__main__":
    main()
