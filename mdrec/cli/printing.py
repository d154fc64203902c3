"""The tables and notes the commands print after a run (metrics.json read back)."""
from __future__ import annotations


def print_pretrain_metrics(metrics: dict) -> None:
    from mdrec.evaluation.metrics import format_table
    from mdrec.workflows.pretrained import results_table

    for split in ("valid", "test"):
        if split not in metrics["protocols"]:
            continue
        v = metrics["protocols"][split]
        print(f"\n{'validation' if split == 'valid' else 'test'} ({v['protocol']}: {v['queries']:,} held-out items "
              f"ranked against {v['ranked_against']}, {v['removed_from_ranking']} removed; best epoch "
              f"{metrics['best_epoch'] + 1} of {metrics['epochs_run']}):")
        print(format_table(results_table(metrics, split)))
        print(f"{v['skipped_repeat_targets']:,} repeat targets skipped; {v['targets_outside_vocabulary']:,} targets "
              "outside the vocabulary (count as misses)")
    print(f"user vector: {metrics['user_vector']}")
    print(f"{metrics['softmax']} softmax; {metrics['training_seconds']:.0f} s training "
          f"({metrics['training_events_per_s'] or 0:,.0f} events/s), {metrics['seconds']:.0f} s in all")


def print_ctr_metrics(metrics: dict, model: str) -> None:
    from mdrec.evaluation.metrics import format_table
    from mdrec.workflows.run_tables import table_from_records, versus_baseline

    for name, records in metrics["tables"].items():
        print(f"\n{name} ({model}, best epoch {metrics['best_epoch'] + 1}):")
        print(format_table(table_from_records(records)))
        print(f"\n{name}: {model} against the sanity baseline")
        print(format_table(versus_baseline(metrics, name)))


def print_retrieval_metrics(metrics: dict, model: str) -> None:
    from mdrec.evaluation.metrics import format_table
    from mdrec.training.retrieval import comparison
    from mdrec.workflows.run_tables import retrieval_rows, table_from_records

    for name, records in metrics["tables"].items():
        print(f"\n{name} ({model}, best epoch {metrics['best_epoch'] + 1}; full catalogue of each line, "
              "users' earlier clicks removed):")
        print(format_table(table_from_records(records)))
        print(f"\n{name}: {model} against the sanity baselines (fitted on the training clicks)")
        print(format_table(comparison(retrieval_rows(metrics, name), model)))
        print(ranking_counts(metrics["counts"][name]))
    print_baseline_settings(metrics.get("baselines", {}))


def print_baseline_settings(baselines: dict) -> None:
    """One line per ItemKNN / EASE row: the settings chosen on validation, or why it is missing."""
    for name, b in baselines.items():
        if b.get("skipped"):
            print(f"{name}: not fitted: {b['skipped']}")
            continue
        grid = b.get("validation_grid") or []
        how = f"best validation ndcg@10 of {len(grid)} settings" if grid else "the default (no validation split)"
        print(f"{name}: {', '.join(f'{k} {v:g}' for k, v in b['settings'].items())} ({how})")


def ranking_counts(counts: dict) -> str:
    return (f"{counts['queries']:,} queries (user, line) from {counts['clicks']:,} clicks; "
            f"{counts['targets_outside_catalogue']:,} clicked items not in the catalogue (count as misses); "
            f"{counts['repeat_targets_removed']:,} re-clicks of earlier items not counted; "
            f"{counts['queries_without_targets']:,} users with only re-clicks skipped")


def print_oov(oov: dict) -> None:
    for split, counts in oov.items():
        parts = [f"{name} {c['oov']:,}/{c['values']:,}" for name, c in counts.items() if c["oov"]]
        if parts:
            print(f"OOV in {split} (mapped to the OOV bucket): " + ", ".join(parts))
