"""The demo: the embedded synthetic multi-business-line log, end to end on one command.

1. generate the log; 2-3. train STAR and shared-bottom CTR models and compare them (with the
sanity baseline and the Bayes ceiling); 4. train a cross-line two-tower retrieval model (against
popularity); 5. index its catalogue with ScaNN and brute force; 6. export the CTR and retrieval
models for TF Serving and write the serving config; 7. an offline A/B of STAR against
shared-bottom with intervals and a verdict; 8. pretrain a user encoder on the big line of a
second synthetic log (next-click test table beside most popular) and transfer it to the smallest
line (no transfer, frozen, adapter, finetune; bench/transfer.py adds scratch), by the users' history length there, and
rank that line's items for its cold-start users (known only from the big line); 9. the two-tower model with the item
ID, the item's content, and both, on a split holding 10% of the items out of training (warm and
cold items); 10. TFRecord shards and STAR trained by a local parameter-server cluster;
11. three Conure tasks on one encoder (the step-8 log) and the forgetting table.
"""
from __future__ import annotations

import time
from pathlib import Path

import pandas as pd

from mdrec.fileio import atomic_write_text
from mdrec.spec import SHIPPED_SPECS


def default_spec_path() -> Path:
    """feature_specs/synthetic.yaml from the checkout, or the copy written beside the data."""
    return SHIPPED_SPECS / "synthetic.yaml"


def run_demo(out: str | Path = "runs/demo", *, quick: bool = False, log=print) -> dict:
    from mdrec.workflows.ab import ab_step
    from mdrec.workflows.lifelong_demo import lifelong_step

    out = Path(out)
    started = time.time()
    seconds: dict[str, float] = {}  # per step, for the closing line: the budget is 10 minutes in all

    def timed(steps: str, fn, *args, **kwargs):
        begun = time.time()
        result = fn(*args, **kwargs)
        seconds[steps] = time.time() - begun
        return result

    data_dir, paths, bayes = timed("1", _data_step, out, quick=quick, log=log)
    spec_path = data_dir / "spec.yaml"
    runs, table = timed("2-3", _ctr_steps, spec_path, paths, out, bayes, quick=quick, log=log)
    comparison = timed("3 table", _compare_step, list(runs.values()), paths["test"], out / "compare", bayes, log=log)
    retrieval = timed("4-5", _retrieval_steps, spec_path, paths, out, quick=quick, log=log)
    exports = timed("6", _export_step, runs["star"], out / "two_tower", out / "export", log=log)
    log(f"\n[7/{STEPS}] mdrec ab --control runs/demo/shared_bottom --treatment runs/demo/star "
        "--data runs/demo/data/test.parquet --out runs/demo/ab")
    ab = timed("7", ab_step, runs["star"], runs["shared_bottom"], paths["test"], out / "ab", log=log,
               n_bootstrap=200 if quick else 500)
    pretraining, transfer, cold_start = timed("8", _transfer_step, spec_path, out, quick=quick, log=log)
    branches = timed("9", _branches_step, spec_path, paths, out, quick=quick, log=log)
    scale_out = timed("10", _scale_out_step, spec_path, paths, out, star_metrics=runs["star"] / "metrics.json",
                      quick=quick, log=log)
    lifelong = timed("11", lifelong_step, spec_path, out / "transfer_data", out, quick=quick, log=log,
                     header=f"\n[11/{STEPS}] lifelong user representation (mdrec lifelong, Conure): three "
                            "tasks learned one after another on one encoder")
    log(f"\nrun folders: {', '.join(map(str, list(runs.values()) + [out / 'two_tower']))}   data: {data_dir}   "
        f"({time.time() - started:.0f} s; by step: " + ", ".join(f"{k} {v:.0f} s" for k, v in seconds.items()) + ")")
    log(f"curves of every run (loss, AUC / recall per line, score histograms, embedding projector): "
        f"tensorboard --logdir {out}")
    return {"test_table": table, "comparison": comparison, **retrieval, "exports": exports, "ab": ab,
            "pretraining": pretraining, "transfer": transfer, "cold_start": cold_start,
            "branches": branches, "scale_out": scale_out, "lifelong": lifelong}


def _data_step(out: Path, *, quick: bool, log) -> tuple[Path, dict, dict[str, float]]:
    """Step 1: the synthetic log's splits with a copy of the shipped spec, and the test split's Bayes AUC."""
    from mdrec.data import synthetic

    config = synthetic.SyntheticConfig(num_impressions=30_000, num_users=1500, num_items=800) if quick \
        else synthetic.SyntheticConfig()
    log(f"[1/{STEPS}] generating the synthetic log ({config.num_impressions:,} impressions, "
        f"{len(config.domains)} business lines, seed {config.seed})")
    data_dir = out / "data"
    generated = synthetic.generate(config)
    paths = synthetic.write(generated, data_dir)
    atomic_write_text(data_dir / "spec.yaml", default_spec_path().read_text(encoding="utf-8"))
    return data_dir, paths, bayes_auc_on_test(generated)


def _ctr_steps(spec_path: Path, paths: dict, out: Path, bayes: dict[str, float], *, quick: bool,
               log) -> tuple[dict[str, Path], pd.DataFrame]:
    """Steps 2-3: STAR and shared-bottom (default settings); STAR's test table beside the Bayes ceiling."""
    from mdrec.evaluation.metrics import format_table
    from mdrec.training.run import TrainConfig
    from mdrec.workflows.run_tables import table_from_records
    from mdrec.workflows.train import train_run

    runs = {}
    for step, (model, what) in enumerate((("star", "STAR: shared + per-line towers, partitioned norm, aux net"),
                                          ("shared_bottom", "shared-bottom: one MLP for every line")), start=2):
        log(f"\n[{step}/{STEPS}] training {what}")
        train_config = TrainConfig(model=model, train=str(paths["train"]), valid=str(paths["valid"]),
                                   test=str(paths["test"]), epochs=1 if quick else 8, seed=0)  # default settings
        runs[model] = out / model
        metrics = train_run(spec_path, train_config, runs[model], overwrite=True, log=log)
        if model == "star":
            table = table_from_records(metrics["tables"]["test"])
            table["bayes_auc"] = pd.Series(bayes)
            log("\nSTAR on the test split (the newest 10% of time), per business line:")
            log(format_table(table[["rows", "ctr", "pred_ctr", "calibration", "auc", "bayes_auc", "gauc",
                                    "logloss"]]))
    return runs, table


def _compare_step(runs: list[Path], test: Path, report: Path, bayes: dict[str, float], *, log) -> pd.DataFrame:
    """The CTR runs and the sanity baselines on the test split, with the Bayes ceiling as a last row."""
    from mdrec.evaluation.metrics import format_table
    from mdrec.workflows.compare import run_comparison

    log("\ncompare on the test split (mdrec compare --report runs/demo/compare):")
    compared = run_comparison(runs, test, report=report)
    comparison = compared.table
    ceiling = {"model": "bayes", "auc": bayes["ALL"], **{f"auc[{d}]": v for d, v in bayes.items() if d != "ALL"}}
    comparison = pd.concat([comparison, pd.DataFrame([ceiling], index=["bayes ceiling (true probabilities)"])])
    comparison.index.name = "run"
    log(format_table(comparison))
    log("bayes ceiling: AUC of the generator's true click probabilities, the best any model can reach;\n"
        "calib[d]: mean predicted / observed click rate.")
    log(f"report with plots (AUC per line, reliability diagram per line): {compared.files['report.html']}")
    return comparison


def _transfer_step(spec_path: Path, out: Path, *, quick: bool, log) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Pretrain a user encoder on the big line (its next-click test table), transfer it to the
    smallest line (the transfer table, by history length), and rank that line's items for its
    cold-start users (the cold-start table)."""
    from mdrec.data import synthetic
    from mdrec.evaluation.metrics import format_table
    from mdrec.progress import quiet_progress
    from mdrec.workflows.pretrain import pretrain_run
    from mdrec.workflows.pretrained import results_table
    from mdrec.workflows.transfer_report import summary
    from mdrec.workflows.transfer_variants import run_variant

    config = synthetic.preset("transfer", num_impressions=60_000, num_users=1000) if quick \
        else synthetic.preset("transfer")
    log(f"\n[8/{STEPS}] pretraining a user encoder on the big line and transferring it to the smallest "
        f"(mdrec data synth --preset transfer --line-files; mdrec pretrain; mdrec transfer)")
    data = out / "transfer_data"
    generated = synthetic.generate(config)
    synthetic.write(generated, data, line_files=True)
    source, target_line = config.domains[0], config.domains[-1]
    lines = data / "lines"
    with quiet_progress():
        metrics = pretrain_run(spec_path, lines / source / "train.parquet", out / "pretrained",
                               valid=lines / source / "valid.parquet", test=lines / source / "test.parquet",
                               objective="autoregressive", epochs=1 if quick else PRETRAIN_EPOCHS, patience=3,
                               overwrite=True, log=lambda *_: None)
    test = metrics["protocols"]["test"]
    log(f"next-click pretraining on '{source}' (autoregressive transformer, SASRec's recipe; test: "
        f"{test['queries']:,} users' first '{source}' click of the test period ranked against all "
        f"{metrics['data']['items']:,} items, their earlier clicks removed):")
    pretraining = results_table(metrics, "test")
    log(format_table(pretraining))
    if len(pretraining) and pretraining.loc["most popular", "hr@10"] > 0:
        head = pretraining.loc[pretraining.index.str.endswith("head (next item)"), "hr@10"].iloc[0]
        log(f"the head's HR@10 is {head / pretraining.loc['most popular', 'hr@10']:.1f}x most popular's; the "
            "generator's shelf makes a user's next click follow their recent ones (meta.json: click_model.exposure)")
    target = {split: str(lines / target_line / f"{split}.parquet") for split in ("train", "valid", "test")}
    rows = []
    # "scratch" (the same network, its encoder untrained) is bench/transfer.py's control; the demo
    # leaves it out for time (a fifth of this step), and the quick run (the test) the adapter too:
    # tests/test_transfer.py covers each mode.
    variants = ("no transfer", "frozen", "finetune") if quick else ("no transfer", "frozen", "adapter", "finetune")
    for variant in variants:
        with quiet_progress():
            rows += run_variant(variant, spec_path=spec_path, target=target, pretrained=out / "pretrained",
                                out=out / f"transfer_{variant.replace(' ', '_')}", epochs=1 if quick else 4,
                                hyperparameters={"hidden": [64], "dropout": 0.1, "embeddings_l2": 3e-4})
    table = summary(rows)
    log(f"\nshared-bottom on '{target_line}' (test AUC) by each user's '{target_line}' training events; "
        "the pretrained encoder reads the user's '" + source + "' clicks:")
    log(format_table(table))
    share = next((r["trainable_share"] for r in rows if r["variant"] == "adapter"), None)
    if share is not None:
        log(f"adapter: {100 * share:.1f}% of the encoder's weights train; frozen: none; finetune: all.")
    from mdrec.workflows.transfer_report import write_variants_report

    report = write_variants_report(rows, out / "transfer_report",
                                   title=f"shared-bottom on '{target_line}': test AUC by the user's history")
    log(f"report: {report['report.md']}, {report['report.html']}")
    cold_start = _cold_start_table(spec_path, data, out, source, target_line, generated.truth, log=log)
    return pretraining, table, cold_start


def _cold_start_table(spec_path: Path, data: Path, out: Path, source: str, target: str, truth, *,
                      log) -> pd.DataFrame:
    """The target line's cold-start users (known only from the source line) against its warm ones:
    popularity, ItemKNN and EASE within the line and across lines, EMCDR, sequel kNN, and the
    generator's own ranking (``truth``: its expected clicks), the ceiling transfer is measured against."""
    from mdrec.data.splits import split_files
    from mdrec.evaluation.metrics import format_table
    from mdrec.workflows.cold_start import EMCDR_GRID, ColdStartTask, readable

    split = out / "cold_start_data"
    log(f"\ncold-start users of '{target}' (mdrec data split --by cold_users --source-line {source} --target-line "
        f"{target} --cold-fraction 0.2; mdrec cold-start): a fifth of the users with clicks in both lines lose "
        f"their '{target}' training rows; their '{target}' clicks are ranked against the line's whole catalogue "
        "(full) and against 999 sampled items (sampled, or every other item of a smaller line):")
    split_files(spec_path, data / "log.parquet", split, by="cold_users", source_line=source, target_line=target,
                cold_fraction=0.2)
    task = ColdStartTask(spec_path, split / "train.parquet", split / "valid.parquet", split / "test.parquet",
                         target=target)
    # The demo fits EMCDR's linear maps only (the MLP maps cost most of the step): bench/cold_start.py
    # and `mdrec cold-start` search both.
    result = task.result(task.baselines() + [task.emcdr(0, grid=[g for g in EMCDR_GRID if g["mapping"] == "linear"]),
                                             task.sequel(0),
                                             task.ceiling(truth.expected_clicks)])
    table = result.table()
    log(format_table(readable(table[["count", "recall@10", "recall@50", "ndcg@10", "sampled_hr@10", "sampled_mrr"]])))
    transfer = {m.name for m in result.methods if m.transfer}
    gains = result.intervals().xs("cold", level="users")
    log(f"cold users, NDCG@10 over {result.best_without_transfer()} (user-bootstrap 95% interval): " + "; ".join(
        f"{name} {row['gain ndcg@10']:+.4f} [{row['low ndcg@10']:+.4f}, {row['high ndcg@10']:+.4f}]"
        for name, row in gains.iterrows() if name in transfer))
    shares = {metric: result.share_of_gap("cold", metric) for metric in ("ndcg@10", "recall@10")}
    log("cold users, share of the gap from popularity to the click-model ceiling (the generator's expected clicks; "
        "the kit's target for transfer: at least half): " + "; ".join(
            f"{name} {shares['ndcg@10'][name]:.2f} (NDCG@10), {shares['recall@10'].get(name, float('nan')):.2f} (recall@10)"
            for name in shares["ndcg@10"]))
    return table


def _branches_step(spec_path: Path, paths: dict, out: Path, *, quick: bool, log) -> dict:
    """ID vs content vs hybrid item encoders in the two-tower model, on a split with cold items."""
    from mdrec.evaluation.metrics import format_table
    from mdrec.progress import quiet_progress
    from mdrec.workflows.branches import compare_branches
    from mdrec.workflows.branches_report import SUBSETS, bucket_table, findings, summary_table

    log(f"\n[9/{STEPS}] ID vs content item encoders (mdrec compare-branches --model two_tower --data "
        "runs/demo/data/log.parquet --cold-items 0.1): the same two-tower model with the item ID, the item's "
        "content only\n(title, category, tags, price, vector; no ID) and both, on a split that holds 10% of "
        "the items out of training")
    with quiet_progress():
        report = compare_branches(spec_path, out / "branches", model="two_tower", data=paths["log"],
                                  cold_items=0.1, seeds=(0,), epochs=1 if quick else 6, batch_size=512,
                                  learning_rate=3e-3, patience=2, hyperparameters=dict(TWO_TOWER),
                                  overwrite=True, log=lambda *_: None)
    tables: dict[str, pd.DataFrame] = {}
    for subset in ("warm", "cold"):
        if subset in report["summary"]:
            tables[subset] = summary_table(report, subset)
            log(f"\ntest, {SUBSETS[subset]}:")
            log(format_table(tables[subset][[c for c in tables[subset].columns if "[" not in c]]))
    tables["popularity"] = bucket_table(report)
    log(f"\n{report['main_metric']} by item popularity (training clicks):")
    log(format_table(tables["popularity"]))
    for line in findings(report):
        log(line)
    folder = out / "branches"  # report.json names its files relative to itself
    log(f"report: {folder / report['files']['report.md']} (plot: {folder / report['files']['plot']})")
    return tables


def _scale_out_step(spec_path: Path, paths: dict, out: Path, *, star_metrics: Path, quick: bool, log) -> dict:
    """TFRecord shards, then STAR on a local parameter-server cluster, beside the one-process STAR."""
    import json

    from mdrec.data.shard_convert import convert
    from mdrec.evaluation.metrics import format_table
    from mdrec.spec import load_spec

    log(f"\n[10/{STEPS}] scaling out: mdrec data convert (TFRecord shards), then mdrec train --strategy "
        "parameter_server on a local cluster\n(chief + 2 workers + 2 parameter servers on loopback ports, "
        "TF_CONFIG as on a real cluster)")
    flat = _flat_spec(spec_path, out / "scale_out" / "spec.yaml")
    shards = out / "scale_out" / "train_shards"
    manifest = convert(load_spec(flat), paths["train"], shards, fmt="tfrecord", shards=4, overwrite=True,
                       log=lambda *_: None)
    log(f"{manifest.get('rows', 0):,} training rows -> {len(list(shards.glob('part-*')))} TFRecord shards in {shards}")
    run, logs = out / "scale_out" / "star_ps", out / "scale_out" / "logs"
    started = time.time()
    _train_on_cluster(flat, shards, paths, run, logs, quick=quick)
    metrics = json.loads((run / "metrics.json").read_text(encoding="utf-8"))
    table = _scale_out_table(json.loads(star_metrics.read_text(encoding="utf-8")), metrics)
    log(format_table(table))
    sharded = metrics["strategy"].get("sharded_tables", {})
    log("embedding tables split over the parameter servers (rows per server): " +
        (", ".join(f"{k} {v['rows']}" for k, v in sharded.items()) or "none"))
    hashing = metrics.get("hashing", {}).get("user_id")
    if hashing:
        log(f"user_id hashed into {hashing['buckets']:,} buckets: {hashing['distinct_ids']:,} training ids, "
            f"{hashing['collisions']:,} collisions ({100 * hashing['collision_rate']:.2f}%)")
    log("the cluster's spec has no behaviour history (sharded input cannot carry each user's past), so it "
        "scores below step 2's STAR, which reads it")
    log(f"cluster run: {run}  ({time.time() - started:.0f} s; worker and server logs in {logs})")
    return {"table": table, "metrics": metrics}


def _flat_spec(spec_path: Path, flat: Path) -> Path:
    """The demo's spec rewritten for sharded input, at ``flat``."""
    import yaml

    # Sharded input carries no behaviour histories (they need each user's past), and user_id is
    # hashed as a 10^7-id vocabulary would be: the spec is the demo's without the sequence.
    raw = yaml.safe_load(spec_path.read_text(encoding="utf-8"))
    raw.pop("sequence", None)
    for feature in raw["features"]:
        if feature["name"] == "user_id":
            feature["hash_buckets"] = 200_000
    flat.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(flat, yaml.safe_dump(raw, sort_keys=False))
    return flat


def _train_on_cluster(spec: Path, shards: Path, paths: dict, run: Path, logs: Path, *, quick: bool) -> None:
    """`mdrec train` as the chief of a local parameter-server cluster; a failed or stalled chief raises."""
    import subprocess
    import sys

    from mdrec.training.cluster import LocalCluster

    argv = [sys.executable, "-m", "mdrec.cli", "train", "--spec", str(spec), "--train", str(shards),
            "--valid", str(paths["valid"]), "--test", str(paths["test"]), "--model", "star", "--out", str(run),
            "--epochs", "1", "--batch-size", "4096", "--learning-rate", "4e-3",
            "--hidden", "256,128,64", "--dropout", "0.1", "--embeddings-l2", "3e-4",
            "--strategy", "parameter_server", "--overwrite"]
    with LocalCluster(workers=2, ps=2, log_dir=logs) as cluster:
        # Tables above 64 KiB are split by rows over both servers (4 MiB by default) to show sharding.
        cluster_env = {"MDREC_MIN_SHARD_BYTES": str(64 * 1024)}
        chief = cluster.launch(argv, "chief", 0, logs / "chief.log", extra_env=cluster_env)
        try:
            code = chief.wait(timeout=CLUSTER_TIMEOUT)
        except subprocess.TimeoutExpired:
            code = None  # a stalled cluster must not hang the demo; the servers are killed on exit
    if code != 0:
        from mdrec.errors import MdrecError

        what = f"did not finish in {CLUSTER_TIMEOUT} s" if code is None else f"exited with status {code}"
        raise MdrecError(f"the parameter-server chief {what}", path=str(logs / "chief.log"),
                         hint="see the chief's, workers' and servers' logs in that folder")


def _scale_out_table(single: dict, cluster: dict) -> pd.DataFrame:
    """Step 2's one-process STAR beside the cluster's, from their metrics.json."""
    rows = {}
    for name, m in (("STAR, one process (step 2; with history)", single),
                    ("STAR, parameter-server cluster", cluster)):
        test = {r["domain"]: r for r in m["tables"]["test"]}
        rows[name] = {"epochs": len(m.get("history", [])) or m.get("epochs_run"), "best valid auc": m["best_valid_auc"],
                      "test auc": test["ALL"]["auc"], "test logloss": test["ALL"]["logloss"],
                      **{f"auc[{d}]": r["auc"] for d, r in test.items() if d != "ALL"}}
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "run"
    return table


def _retrieval_steps(spec_path: Path, paths: dict, out: Path, *, quick: bool, log) -> dict:
    from mdrec.evaluation.metrics import format_table
    from mdrec.training.retrieval import comparison
    from mdrec.training.run import TrainConfig
    from mdrec.workflows.index import format_report, index_run
    from mdrec.workflows.run_tables import retrieval_rows
    from mdrec.workflows.train import train_run

    log(f"\n[4/{STEPS}] training a two-tower retrieval model across the lines (towers=sequence: a causal "
        "transformer over the user's history against rows of its item table; in-batch softmax with logQ correction)")
    config = TrainConfig(model="two_tower", train=str(paths["train"]), valid=str(paths["valid"]),
                         test=str(paths["test"]), epochs=1 if quick else 20, batch_size=512,
                         learning_rate=3e-3, patience=3, seed=0, hyperparameters=dict(RETRIEVAL))
    metrics = train_run(spec_path, config, out / "two_tower", overwrite=True, log=log)
    tables = retrieval_rows(metrics, "test")
    log("\ntwo-tower on the test split: each user's clicks of a line ranked against that line's whole "
        "catalogue,\ntheir earlier clicks removed (mdrec evaluate --run runs/demo/two_tower --data ...):")
    retrieval_table = comparison(tables, "two_tower", metrics=("recall@10", "ndcg@10", "recall@50", "ndcg@50",
                                                              "recall@100"))
    log(format_table(retrieval_table))

    log(f"\n[5/{STEPS}] indexing the catalogue: ScaNN against exact search and brute force "
        "(mdrec index --run runs/demo/two_tower)")
    report = index_run(out / "two_tower", kind="scann", k=10, max_queries=1000,
                       qps_seconds=0.2 if quick else 0.5, log=log)
    log(format_report(report))
    return {"retrieval": retrieval_table, "index": report}


def _export_step(ctr_run: Path, retrieval_run: Path, export_dir: Path, *, log) -> dict:
    import shutil

    from mdrec.export import format_tree, write_serving_config
    from mdrec.workflows.export import export_run

    log(f"\n[6/{STEPS}] exporting for TF Serving (mdrec export, mdrec serving-config)")
    shutil.rmtree(export_dir, ignore_errors=True)
    exports = {"ctr_star": export_run(ctr_run, "ctr_star", export_dir=export_dir),
               "retrieval": export_run(retrieval_run, "retrieval", export_dir=export_dir, index="brute_force")}
    config, batching = write_serving_config(export_dir)
    log(format_tree(export_dir))
    log("ctr_star: raw features -> probability, logit; retrieval: user features -> item_ids, scores (top 100 "
        "of the line, stock TF ops),\nplus query_embedding and item_embedding. Serve with:\n"
        f"  tensorflow_model_server --rest_api_port=8501 --model_config_file={config.resolve()} "
        f"--enable_batching --batching_parameters_file={batching.resolve()}")
    return exports


STEPS = 11
PRETRAIN_EPOCHS = 8  # step 8's pretraining: validation NDCG@10 0.0864 at the 8th epoch, 0.0928 at its best (12th)
CLUSTER_TIMEOUT = 900  # seconds for step 10's cluster run (about a minute on two cores)
# Two-tower settings measured on this log (README, "Where the numbers stand").
TWO_TOWER = {"embedding_dim": 32, "hidden": [128], "dropout": 0.3, "temperature": 0.2}  # MLP towers (step 9)
# Step 4: the README's recommended retrieval recipe for a log with time (chosen on this log's
# validation split: width 32 / 64 / 128, dropout 0.1 / 0.2 / 0.3 / 0.5, temperature 0.05 / 0.1).
RETRIEVAL = {"towers": "sequence", "temperature": 0.1, "embedding_dim": 64, "dropout": 0.3}


def bayes_auc_on_test(generated) -> dict[str, float]:
    """Per-domain (and ALL) AUC of the true click probabilities on the test split."""
    from mdrec.data.synthetic import bayes_auc

    _, _, test = generated.split()
    truth = generated.true_probability[test.index.to_numpy()]
    labels = test["click"].to_numpy()
    out = {"ALL": bayes_auc(truth, labels)}
    for domain in sorted(test["domain"].unique()):
        mask = (test["domain"] == domain).to_numpy()
        out[domain] = bayes_auc(truth[mask], labels[mask])
    return out
