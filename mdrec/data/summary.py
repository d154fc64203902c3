"""What a log holds, per domain: the numbers `mdrec spec check --data` prints."""
from __future__ import annotations

import pandas as pd

from mdrec.data.log import DOMAIN, LABEL, TIME, Log
from mdrec.spec import Spec


def summarize(log: Log, spec: Spec) -> dict:
    """rows, users, items, per-domain rows/users/items/label rate, and users shared by domain pairs."""
    frame = log.frame
    users = frame[spec.user_id.name]
    items = frame[spec.item_id.name]
    out: dict = {"rows": len(frame), "users": int(users.nunique()), "items": int(items.nunique()),
                 "label_rate": float(frame[LABEL].mean()), "missing_values": dict(log.missing)}
    if TIME in frame:
        out["time_range"] = [int(frame[TIME].min()), int(frame[TIME].max())]
    per_domain = []
    user_sets = {}
    for domain, part in frame.groupby(DOMAIN, sort=True):
        user_sets[domain] = set(part[spec.user_id.name])
        per_domain.append({"domain": domain, "rows": len(part), "share": len(part) / len(frame),
                           "users": len(user_sets[domain]), "items": int(part[spec.item_id.name].nunique()),
                           "label_rate": float(part[LABEL].mean())})
    out["domains"] = per_domain
    names = sorted(user_sets)
    out["user_overlap"] = {a: {b: len(user_sets[a] & user_sets[b]) for b in names} for a in names}
    domains_per_user = frame.groupby(spec.user_id.name)[DOMAIN].nunique()
    out["users_in_several_domains"] = int((domains_per_user > 1).sum())
    return out


def format_summary(summary: dict) -> str:
    lines = [f"rows {summary['rows']:,}   users {summary['users']:,}   items {summary['items']:,}   "
             f"label rate {summary['label_rate']:.4f}   users in >1 domain {summary['users_in_several_domains']:,}"]
    table = pd.DataFrame(summary["domains"]).set_index("domain")
    lines.append(table.to_string(formatters={"share": "{:.3f}".format, "label_rate": "{:.4f}".format}))
    overlap = pd.DataFrame(summary["user_overlap"])
    lines.append("users shared between domains (diagonal: users of the domain):")
    lines.append(overlap.to_string())
    if summary["rows"] and summary["label_rate"] == 1.0:
        lines.append("every row is a click (label rate 1): the input of a retrieval model (two_tower learns from "
                     "clicks, the batch's other items are its negatives); a CTR model needs the non-clicks too")
    elif summary["rows"] and summary["label_rate"] == 0.0:
        lines.append("no row is a click (label rate 0): check the spec's label (column, positive_if)")
    if summary["missing_values"]:
        lines.append("missing values (kept; mapped to the missing token or the training mean): "
                     + ", ".join(f"{k} {v:,}" for k, v in summary["missing_values"].items()))
    return "\n".join(lines)
