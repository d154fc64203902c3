"""What each ``mdrec`` command does with its parsed flags: call the workflow, print its tables."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from mdrec.cli.printing import (print_baseline_settings, print_ctr_metrics, print_oov, print_pretrain_metrics,
                                print_retrieval_metrics, ranking_counts)
from mdrec.errors import MdrecError





def run_demo(args) -> int:
    from mdrec.demo import run_demo

    run_demo(args.out, quick=args.quick)
    return 0


def run_data_synth(args) -> int:
    from mdrec.data import synthetic

    overrides = {k: v for k, v in (("seed", args.seed), ("num_impressions", args.impressions),
                                   ("num_users", args.users), ("num_items", args.items)) if v is not None}
    log = synthetic.generate(synthetic.preset(args.preset, **overrides))
    paths = synthetic.write(log, args.out, fmt=args.format, line_files=args.line_files)
    for name, path in paths.items():
        print(f"wrote {path}")
    print(json.dumps({"bayes_auc": log.meta.get("bayes_auc")}, indent=2))
    return 0


def run_data_prepare(args) -> int:
    from mdrec.data.prepare import prepare

    summary = prepare(args.name, args.source, args.out, seed=args.seed, fmt=args.format,
                      negatives=args.negatives)
    print(json.dumps(summary, indent=2, default=str))
    return 0


def run_data_split(args) -> int:
    from mdrec.data.splits import split_files

    for name, (rows, path) in split_files(args.spec, args.data, args.out, by=args.by,
                                          valid_fraction=args.valid_fraction,
                                          test_fraction=args.test_fraction, seed=args.seed,
                                          source_line=args.source_line, target_line=args.target_line,
                                          cold_fraction=args.cold_fraction).items():
        print(f"{name}: {rows:,} rows -> {path}")
    return 0


def run_data_statistics(args) -> int:
    from mdrec.data.statistics import StatisticsSettings, write_statistics

    summary = write_statistics(args.spec, args.data, args.out,
                               StatisticsSettings(folds=args.folds, prior=args.prior, seed=args.seed,
                                                  cold_share=args.cold_share))
    rows = ", ".join(f"{name} {entry['rows']:,}" for name, entry in summary["inputs"].items())
    print(f"wrote {len(summary['columns'])} statistics columns ({summary['mode']}) for {rows} rows to {args.out}; "
          f"{100 * summary['cold_share']:.1f}% of the training rows read as an unseen user's "
          f"({summary['cold_share_from']})")
    out = Path(args.out)
    print(f"train with --spec {out / 'spec.yaml'} --train {out / 'train.parquet'} --valid {out / 'valid.parquet'} "
          f"--test {out / 'test.parquet'}")
    return 0


def run_data_convert(args) -> int:
    from mdrec.data.shard_convert import convert
    from mdrec.spec import load_spec

    manifest = convert(load_spec(args.spec), args.data, args.out, fmt=args.format, shards=args.shards,
                       compression=args.compression, chunk_rows=args.chunk_rows, overwrite=args.overwrite,
                       log=lambda message: print(message, end="\r", file=sys.stderr, flush=True))
    sizes = ", ".join(f"{shard['rows']:,}" for shard in manifest["shards"][:8])
    more = ", ..." if len(manifest["shards"]) > 8 else ""
    print(f"\nwrote {manifest['rows']:,} rows in {len(manifest['shards'])} {manifest['format']} shards to "
          f"{args.out} ({sizes}{more} rows)")
    return 0


def run_spec_check(args) -> int:
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


def run_train(args) -> int:
    from mdrec.training.run import TrainConfig
    from mdrec.workflows.train import train_run

    hyperparameters = {}
    if args.hidden is not None:
        try:
            hyperparameters["hidden"] = [int(h) for h in args.hidden.split(",") if h.strip()]
        except ValueError:
            raise MdrecError(f"--hidden '{args.hidden}' must be comma-separated integers, e.g. 256,128,64") from None
    if args.dropout is not None:
        hyperparameters["dropout"] = args.dropout
    if args.embeddings_l2 is not None:
        hyperparameters["embeddings_l2"] = args.embeddings_l2
    config = TrainConfig(model=args.model, train=args.train, valid=args.valid, test=args.test,
                         epochs=args.epochs, batch_size=args.batch_size, learning_rate=args.learning_rate,
                         patience=args.patience, seed=args.seed, checkpoint_every=args.checkpoint_every,
                         stream=args.stream, domain_batches=args.domain_batches, warm_start=args.warm_start,
                         strategy=args.strategy, cross_line_share=args.cross_line_share,
                         hyperparameters={**hyperparameters, **parse_params(args.param)})
    metrics = train_run(args.spec, config, args.out, overwrite=args.overwrite)
    if metrics.get("family") == "retrieval":
        print_retrieval_metrics(metrics, args.model)
    else:
        print_ctr_metrics(metrics, args.model)
    print_oov(metrics.get("oov", {}))
    print(f"\nrun folder: {args.out}")
    return 0


def run_pretrain(args) -> int:
    from mdrec.workflows.pretrain import pretrain_run

    metrics = pretrain_run(args.spec, args.data, args.out, valid=args.valid, test=args.test, epochs=args.epochs,
                           batch_size=args.batch_size, learning_rate=args.learning_rate, patience=args.patience,
                           seed=args.seed, checkpoint_every=args.checkpoint_every, overwrite=args.overwrite,
                           objective=args.objective, architecture=args.architecture, block=args.block,
                           pooling=args.pooling,
                           attributes=args.attributes, domains=args.domains, dim=args.dim, layers=args.layers,
                           heads=args.heads, max_length=args.max_length, dropout=args.dropout,
                           time_buckets=args.time_buckets, mask_rate=args.mask_rate, mask_last=args.mask_last,
                           temperature=args.temperature,
                           next_item_weight=args.next_item_weight, negatives=args.negatives,
                           exclude_seen=args.exclude_seen, repeats=args.repeats,
                           schedule=args.schedule, warmup_epochs=args.warmup_epochs,
                           loss_weighting=args.loss_weighting)
    print_pretrain_metrics(metrics)
    print(f"\nrun folder: {args.out}")
    return 0


def run_transfer(args) -> int:
    from mdrec.evaluation.metrics import format_table
    from mdrec.records import resolve_recorded
    from mdrec.training.run import RunDir
    from mdrec.workflows.transfer import transfer_run

    result = transfer_run(args.pretrained, args.spec, args.out, task=args.task, mode=args.mode, train=args.train,
                           valid=args.valid, test=args.test, model=args.model, target=args.target,
                           adapter_dim=args.adapter_dim, epochs=args.epochs, batch_size=args.batch_size,
                           learning_rate=args.learning_rate, patience=args.patience, seed=args.seed,
                           hyperparameters=parse_params(args.param), warm_start=args.warm_start,
                           overwrite=args.overwrite)
    metrics = result.metrics
    if args.task == "profile":
        print(f"\n{args.target} on held-out users ({args.mode}):")
        print(format_table(result.table))
    elif metrics.get("family") == "retrieval":
        print_retrieval_metrics(metrics, f"two_tower + pretrained ({args.mode})")
    else:
        print_ctr_metrics(metrics, f"{metrics['model']} + pretrained ({args.mode})")
        if result.table is not None:
            print("\ntest, by the user's target-line history and by source history:")
            print(format_table(result.table))
            record = RunDir(args.out).metrics_path
            print(f"report: {', '.join(str(resolve_recorded(p, record)) for p in metrics['report'].values())}")
    share = metrics.get("transfer", {})
    if share:
        print(f"\ntrainable encoder parameters: {share['encoder_trainable']:,} of {share['encoder_parameters']:,} "
              f"({100 * share['encoder_trainable_share']:.1f}%); source-line users known: {share['source_users']:,}")
    print(f"\nrun folder: {args.out}")
    return 0


def run_compare(args) -> int:
    from mdrec.evaluation.metrics import format_table
    from mdrec.fileio import atomic_write_text
    from mdrec.workflows.compare import run_comparison
    from mdrec.workflows.comparison import aggregate_by_model, model_groups

    comparison = run_comparison(args.runs, args.data, report=args.report)
    table = comparison.table
    print(format_table(table))
    if model_groups(table).duplicated().any():
        print("\nmean ± std over the runs of each model:")
        print(format_table(aggregate_by_model(table)))
    if args.out:
        atomic_write_text(args.out, table.to_csv())
    if comparison.files:
        print(f"\nreport: {', '.join(comparison.files.values())}")
    return 0


def run_cold_start(args) -> int:
    from mdrec.evaluation.metrics import format_table
    from mdrec.fileio import atomic_write_text
    from mdrec.workflows.cold_start import cold_start_evaluation, readable

    runs = {}
    for item in args.run:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise MdrecError(f"--run {item!r} is not NAME=PATH", hint="e.g. --run joint=runs/tt or "
                             "--run alone=runs/tt-target:alone")
        path, alone = (path[:-len(":alone")], True) if path.endswith(":alone") else (path, False)
        runs[name] = (path, not alone)
    result = cold_start_evaluation(args.spec, args.train, args.valid, args.test, target=args.target_line,
                                   runs=runs, seed=args.seed, log=lambda m: print(m, file=sys.stderr))
    table, gains = result.table(), result.intervals()
    print(format_table(readable(table)))
    print("\ngain over the reference, the best row without transfer for those users (by NDCG@10), with its "
          "user-bootstrap 95% interval:")
    print(format_table(readable(gains)))
    if args.out:
        atomic_write_text(Path(args.out) / "cold_start.csv", table.to_csv())
        atomic_write_text(Path(args.out) / "gains.csv", gains.to_csv())
    return 0


def run_compare_branches(args) -> int:
    from mdrec.evaluation.metrics import format_table
    from mdrec.workflows.branches import compare_branches
    from mdrec.workflows.branches_report import SUBSETS, bucket_table, findings, summary_table

    try:
        seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    except ValueError:
        raise MdrecError(f"--seeds '{args.seeds}' must be comma-separated integers, e.g. 0,1,2") from None
    report = compare_branches(args.spec, args.out, model=args.model, data=args.data, train=args.train,
                              valid=args.valid, test=args.test, cold_items=args.cold_items, split=args.split,
                              split_seed=args.split_seed, encoders=args.encoders, seeds=seeds, epochs=args.epochs,
                              batch_size=args.batch_size, learning_rate=args.learning_rate, patience=args.patience,
                              hyperparameters=parse_params(args.param), buckets=args.buckets, overwrite=args.overwrite,
                              log=lambda message: print(message, file=sys.stderr))
    for subset, title in SUBSETS.items():
        if subset in report["summary"]:
            print(f"\ntest, {title}:")
            print(format_table(summary_table(report, subset)))
    print(f"\n{report['main_metric']} by item popularity (training clicks):")
    print(format_table(bucket_table(report)))
    for line in findings(report):
        print(line)
    files = [Path(args.out) / report["files"][name] for name in ("report.md", "report.json", "plot")]
    print("\nreport: " + ", ".join(map(str, files)))  # report.json names them relative to itself
    return 0


def parse_params(pairs: list[str]) -> dict:
    """--param KEY=VALUE pairs; values are read as YAML scalars (numbers, true/false, strings)."""
    import yaml

    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise MdrecError(f"--param '{pair}' must look like KEY=VALUE, e.g. normalization=input")
        parsed = yaml.safe_load(value)
        if isinstance(parsed, str):  # YAML 1.1 reads "1e-4" as a string; a number is meant
            try:
                parsed = float(parsed)
            except ValueError:
                pass
        out[key.strip()] = parsed
    return out


def run_evaluate(args) -> int:
    import pandas as pd

    from mdrec.evaluation.metrics import format_table
    from mdrec.models.registry import model_family
    from mdrec.training.run import RunDir
    from mdrec.workflows.evaluate import evaluate_retrieval_run, evaluate_run

    model = RunDir(args.run).read_config()[0].model
    if model == "user_encoder":
        return run_evaluate_pretrained(args)
    if model_family(model) != "retrieval":
        if args.sampled:
            raise MdrecError("--sampled is for retrieval runs (two_tower)", path=args.run)
        result = evaluate_run(args.run, args.data, out=args.out)
        print(format_table(result.table))
        if result.baselines:
            from mdrec.workflows.comparison import summary_row

            rows = {model: summary_row(result.table),
                    **{name: summary_row(t) for name, t in result.baselines.items()}}
            print("\nagainst the sanity baselines (fitted on the run's training file, settings chosen on validation):")
            print(format_table(pd.DataFrame.from_dict(rows, orient="index").rename_axis("model")))
        elif result.record.get("baselines_note"):
            print(result.record["baselines_note"])
        print_oov({"data": result.record["oov"]})
        return 0
    from mdrec.training.retrieval import comparison

    result = evaluate_retrieval_run(args.run, args.data, out=args.out, sampled=args.sampled,
                                    negatives=args.negatives, seed=args.seed)
    tables, record = result.tables, result.record
    print(f"full catalogue of each line (exact search; removed from the ranking: the users' "
          f"{' and '.join(record['removed_from_ranking'])} clicks):")
    print(format_table(tables["full"]["model"]))
    print("\nagainst the sanity baselines (fitted on the run's training clicks):")
    print(format_table(comparison(tables["full"], "model")))
    print(ranking_counts(record["counts"]))
    print_baseline_settings(record["baselines"])
    if args.sampled:
        print(f"\nSAMPLED protocol: each clicked item ranked against {args.negatives} sampled negatives of "
              "its line (not comparable with the full-catalogue numbers):")
        print(format_table(tables["sampled"]["model"]))
        print(format_table(comparison(tables["sampled"], "model", metrics=("hr@10", "ndcg@10", "hr@50", "ndcg@50"))))
    print_oov({"data": record["oov"]})
    return 0


def run_evaluate_pretrained(args) -> int:
    import pandas as pd

    from mdrec.evaluation.metrics import format_table
    from mdrec.workflows.pretrained import evaluate_pretrained

    if args.sampled:
        raise MdrecError("--sampled is for retrieval runs (two_tower); a pretraining run ranks the full vocabulary",
                         path=args.run)
    result = evaluate_pretrained(args.run, args.data, out=args.out)
    v = result["protocol"]
    print(f"next item ({v['queries']:,} users' first click in {args.data} ranked against {v['ranked_against']}, "
          f"{v['removed_from_ranking']} removed; history: the run's --data and --valid clicks):")
    print(format_table(pd.DataFrame(result["table"]).set_index("model") if result["table"] else pd.DataFrame()))
    print(f"{v['skipped_repeat_targets']:,} repeat targets skipped; {v['users_without_history']:,} users without "
          f"history skipped; {v['targets_outside_vocabulary']:,} targets outside the vocabulary (count as misses)")
    return 0


def run_index(args) -> int:
    from mdrec.workflows.index import format_report, index_run

    report = index_run(args.run, kind=args.kind, k=args.k, recall_target=args.recall_target, data=args.data,
                       max_queries=args.queries)
    print(format_report(report))
    saved = Path(args.run) / "index" / args.kind
    print(f"\nsaved the {args.kind} index: {saved} (report: {saved}.json)")
    return 0


def run_lifelong(args) -> int:
    from mdrec.workflows.lifelong import lifelong_run

    lifelong_run(args.spec, args.tasks, args.out, data=args.data, overwrite=args.overwrite,
                 stop_after=args.stop_after)
    print(f"\nrun folder: {args.out} (metrics.json, report.txt)")
    return 0


def run_export(args) -> int:
    from mdrec.export import format_tree
    from mdrec.workflows.export import export_run

    path = export_run(args.run, args.name, export_dir=args.export_dir, version=args.version, keep=args.keep,
                      index=args.index, top_k=args.top_k)
    print(format_tree(path.parent))
    print(f"\nexported {args.run} as model '{args.name}' version {path.name}: {path}")
    return 0


def run_serving_config(args) -> int:
    from mdrec.export import Batching, parse_labels, write_serving_config

    batching = Batching(max_batch_size=args.max_batch_size, batch_timeout_micros=args.batch_timeout_micros,
                        max_enqueued_batches=args.max_enqueued_batches, num_batch_threads=args.num_batch_threads)
    models, batching_file = write_serving_config(args.export_dir, parse_labels(args.labels), batching)
    print(f"wrote {models}\nwrote {batching_file}")
    # TF Serving refuses at start-up to label a version it has not loaded yet unless told to.
    labels = " --allow_version_labels_for_unavailable_models=true" if args.labels else ""
    print(f"\nserve with:\n  tensorflow_model_server --rest_api_port=8501 --model_config_file={models.resolve()} "
          f"--enable_batching --batching_parameters_file={batching_file.resolve()}{labels}")
    return 0


def run_request(args) -> int:
    from mdrec.export import rest_request

    request = rest_request(args.export, args.rows, version=args.version, signature=args.signature)
    for note in request.notes:
        print(f"mdrec: note: {note}", file=sys.stderr)
    print(request.json())
    print(f"# save the body above as request.json, then:\n{request.curl()}", file=sys.stderr)
    return 0


def run_ab(args) -> int:
    from mdrec.evaluation.metrics import format_table
    from mdrec.evaluation.ab_statistics import legend
    from mdrec.workflows.ab import ab_test

    result = ab_test(args.control, args.treatment, args.data, out=args.out, slices=args.slice,
                     n_bootstrap=args.bootstrap, seed=args.seed, alpha=args.alpha,
                     propensity_column=args.propensity, spec=args.spec,
                     score_column=(args.control_score_column or args.score_column, args.score_column),
                     history=args.history, log=lambda message: print(message, file=sys.stderr))
    print(format_table(result.verdict))
    print(legend(args.alpha, result.family))
    if result.ips is not None:
        print("\nclick rate under each policy (IPS / SNIPS estimates):")
        print(format_table(result.ips))
    for note in result.notes:
        print(f"note: {note}")
    print(f"\nreport: {result.files['report.md']}, {result.files['report.html']}, {result.files['summary.json']}")
    return 0
