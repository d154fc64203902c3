"""``mdrec lifelong``'s report: the forgetting table, the parameter table and report.txt, built from
the run's metrics record alone (what metrics.json holds).

The forgetting table has one row per task and metric: each method's value right after the task
was learned and after all tasks, and their difference (Δ, after all - after it: negative is
forgetting); one model per task and the adapters are never changed by later tasks, so they show
one value.
"""
from __future__ import annotations

from typing import Any, Mapping

import pandas as pd

SECONDARY = {"profile": "macro_f1"}  # shown beside accuracy: the majority class scores low on it


def forgetting_table(metrics: Mapping[str, Any]) -> pd.DataFrame:
    """One row per task and metric (profile tasks: accuracy, then macro-F1): each method's value
    right after the task was learned and after all tasks, the baselines, and the sanity row
    (popularity or the majority class) last."""
    last = str(len(metrics["tasks"]))
    rows = []
    for r in metrics["tasks"]:
        t = str(r["task"])
        for metric in (r["metric"], SECONDARY.get(r["kind"])):
            if metric is None or metric not in metrics["sanity"][t][1]:
                continue
            row = {"task": f"{t} {r['name']}", "metric": metric, "p": r["prune"]}
            for method, label in (("conure", "Conure"), ("sequential", "seq-FT")):
                if t not in metrics["right_after"].get(method, {}):
                    continue
                after, final = metrics["right_after"][method][t][metric], metrics["matrix"][method][last][t][metric]
                row.update({f"{label} after it": after, f"{label} after all": final, f"{label} Δ": final - after})
            for method, label in (("per_task", "one model/task"), ("adapters", "adapters")):
                if t in metrics["right_after"].get(method, {}):
                    row[label] = metrics["right_after"][method][t][metric]
            row[metrics["sanity"][t][0]] = metrics["sanity"][t][1][metric]
            rows.append(row)
    table = pd.DataFrame(rows).set_index("task")
    sanity_cols = [c for c in table.columns if c in ("popularity", "majority class")]
    return table[[c for c in table.columns if c not in sanity_cols] + sanity_cols]


def parameter_table(counts: dict) -> pd.DataFrame:
    prow = [{"method": "Conure (one encoder, masks)", "parameters": counts["conure"]}]
    if "per_task" in counts:
        prow += [{"method": "one model per task", "parameters": counts["per_task"]},
                 {"method": "sequential fine-tuning", "parameters": counts["sequential"]},
                 {"method": "PeterRec adapters", "parameters": counts["adapters"]}]
    ptable = pd.DataFrame(prow).set_index("method")
    if "per_task" in counts:
        ptable["vs one model per task"] = ptable["parameters"] / counts["per_task"]
    return ptable


def report_text(metrics: Mapping[str, Any]) -> str:
    table = forgetting_table(metrics)
    counts = metrics["parameters"]
    lines = ["Forgetting: each task's test metric right after it was learned and after all tasks",
             table.to_string(float_format=lambda v: f"{v:.4f}", na_rep="-"), ""]
    ptable = parameter_table(counts)
    lines += ["Parameters (encoder + heads; Conure's prunable kernels are shared by owner)",
              ptable.to_string(float_format=lambda v: f"{v:.2f}"), ""]
    own = metrics["ownership"]
    lines.append("Prunable kernel weights by owner: " + ", ".join(
        f"{'free' if k == '0' else 'task ' + k} {v} ({own['share'][k]:.0%})" for k, v in own["per_owner"].items()))
    secs = metrics["seconds"]
    lines.append("Wall seconds per task: " + "; ".join(
        f"task {t}: " + ", ".join(f"{m} {s:.1f}" for m, s in v.items()) for t, v in secs.items()))
    return "\n".join(lines) + "\n"
