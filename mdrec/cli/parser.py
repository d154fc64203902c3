"""The command line's flags: one function per command group (argument tables), each flag
declared once; the schedule flags come from the workflows' own defaults, so ``--help`` shows what
a run will use."""
from __future__ import annotations

import argparse

from mdrec.cli.commands import (run_ab, run_cold_start, run_compare, run_compare_branches, run_data_convert,
                                run_data_prepare, run_data_split, run_data_statistics, run_data_synth, run_demo,
                                run_evaluate, run_export, run_index, run_lifelong, run_pretrain, run_request,
                                run_serving_config, run_spec_check, run_train, run_transfer)


class ShowDefaults(argparse.HelpFormatter):
    """--help appends "(default: X)" to every option with a default (not to None, False or empty
    ones, nor where the help already states its default)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if ("default" in text or action.default is None or action.default is False
                or action.default == argparse.SUPPRESS or not action.option_strings):
            return text
        if isinstance(action.default, list) and not action.default:
            return text
        return f"{text} (default: %(default)s)".lstrip()


class Parser(argparse.ArgumentParser):
    """Every command's parser (subcommands inherit the class) shows its defaults in --help."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", ShowDefaults)
        super().__init__(*args, **kwargs)

    def add_argument(self, *args, **kwargs):
        # argparse prints no help line for an option without help text, so the default would not show.
        default = kwargs.get("default")
        shown = not (default is None or default is False or default == [] or default == argparse.SUPPRESS)
        if kwargs.get("help") is None and shown:
            kwargs["help"] = "(default: %(default)s)"
        return super().add_argument(*args, **kwargs)


SCHEDULE_HELP = {
    "epochs": "passes over the training data at most (early stopping usually ends sooner: --patience)",
    "batch_size": "examples per training step",
    "learning_rate": "Adam's learning rate",
    "patience": "epochs without a gain in the validation score before stopping",
    "seed": "seeds the weights and the batch order",
}


def add_schedule_flags(p: argparse.ArgumentParser, defaults: dict, **help_text: str) -> None:
    """--epochs, --batch-size, --learning-rate, --patience and --seed (those ``defaults`` names),
    declared once for every training command; the defaults are the workflow's own
    (mdrec.training.schedule), so --help shows what a run will use. A None default is decided by
    the workflow (its help text says how)."""
    from mdrec.training.schedule import SCHEDULE_KEYS, SCHEDULE_TYPES

    for key in SCHEDULE_KEYS:
        if key in defaults:
            p.add_argument("--" + key.replace("_", "-"), type=SCHEDULE_TYPES[key], default=defaults[key],
                           help=help_text.get(key, SCHEDULE_HELP[key]))


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="mdrec", description="Multi-domain CTR prediction and ID-based transfer between "
                    "business lines.")
    sub = parser.add_subparsers(title="commands", metavar="COMMAND")
    _demo_command(sub)
    _data_commands(sub)
    _spec_commands(sub)
    _train_command(sub)
    _pretrain_command(sub)
    _transfer_command(sub)
    _comparison_commands(sub)
    _index_and_lifelong_commands(sub)
    _serving_commands(sub)
    _ab_command(sub)
    return parser


def _demo_command(sub: argparse._SubParsersAction) -> None:
    """`mdrec demo`."""
    p = sub.add_parser("demo", help="generate the synthetic log, train, print per-domain metrics")
    p.add_argument("--out", default="runs/demo", help="demo folder (default: runs/demo)")
    p.add_argument("--quick", action="store_true", help="a smaller log and one epoch (for smoke tests)")
    p.set_defaults(func=run_demo)


def _data_commands(sub: argparse._SubParsersAction) -> None:
    """`mdrec data synth|prepare|split|statistics|convert`."""
    data = sub.add_parser("data", help="synthesise, prepare or split logs").add_subparsers(
        title="data commands", metavar="COMMAND")
    p = data.add_parser("synth", help="write the seeded synthetic multi-domain log and its splits")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--impressions", type=int, default=None, help="number of impressions (default 200000)")
    p.add_argument("--users", type=int, default=None)
    p.add_argument("--items", type=int, default=None)
    p.add_argument("--format", choices=("parquet", "csv"), default="parquet")
    p.add_argument("--preset", default="default", choices=("default", "transfer", "transfer-long"),
                   help="transfer: one big line, small lines with a few events per user (the demo's); "
                        "transfer-long: the big line's users have long histories (bench/transfer.py's)")
    p.add_argument("--line-files", action="store_true", help="also write lines/<line>/{train,valid,test} per line")
    p.set_defaults(func=run_data_synth)

    p = data.add_parser("prepare", help="turn a raw public dataset folder into a log a shipped spec describes")
    p.add_argument("name", help="dataset: douban-book-music, movielens-1m, amazon-cloth-sport, ...")
    p.add_argument("--source", required=True, help="raw folder, e.g. ../shared/data/douban-book-music")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--negatives", type=int, default=4, help="sampled negatives per positive (implicit data)")
    p.add_argument("--format", choices=("parquet", "csv"), default="parquet")
    p.set_defaults(func=run_data_prepare)

    p = data.add_parser("split", help="split a log into train/valid/test files")
    p.add_argument("--spec", required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--by", choices=("time", "leave_last_out", "random", "cold_users"), default="time",
                   help="cold_users: a random split per (user, line), then --cold-fraction of the users with "
                        "clicks in both lines lose every --target-line training row; half of them are "
                        "validation users, half test users (their ids: cold_users.tsv)")
    p.add_argument("--valid-fraction", type=float, default=0.1)
    p.add_argument("--test-fraction", type=float, default=0.1)
    p.add_argument("--source-line", help="cold_users: the line that knows the users (its rows all train)")
    p.add_argument("--target-line", help="cold_users: the new line whose cold-start users are held out")
    p.add_argument("--cold-fraction", type=float, default=0.1,
                   help="cold_users: the share of the users with clicks in both lines made cold")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=run_data_split)

    p = data.add_parser("statistics", help="copy a split with leak-free statistics of the training rows added "
                        "as numeric features (each key's smoothed click rate and graded-label mean, and its rows)")
    p.add_argument("--spec", required=True)
    p.add_argument("--data", required=True, help="a split folder: train/valid/test (.parquet or .csv)")
    p.add_argument("--out", required=True, help="a new folder: the split with the columns, spec.yaml, statistics.json")
    p.add_argument("--folds", type=int, default=5,
                   help="without a time column a training row's statistics come from the other folds")
    p.add_argument("--prior", type=float, default=5.0, help="smoothing: pseudo-rows at the training mean")
    p.add_argument("--cold-share", type=float, default=None,
                   help="the share of training rows given an unseen user's values in the user columns, so a "
                        "model learns what to do with the new users of the query splits (default: the share "
                        "of validation rows whose user has no training row)")
    p.add_argument("--seed", type=int, default=0, help="the folds' and the cold rows' seed")
    p.set_defaults(func=run_data_statistics)

    p = data.add_parser("convert", help="validate a log and write it as TFRecord or Parquet shards (streaming) for "
                        "sharded training input")
    p.add_argument("--spec", required=True)
    p.add_argument("--data", required=True, help="a CSV/TSV/Parquet file or folder")
    p.add_argument("--out", required=True, help="output folder: part-NNNNN-of-NNNNN files and manifest.json")
    p.add_argument("--format", choices=("tfrecord", "parquet"), default="tfrecord")
    p.add_argument("--shards", type=int, default=8, help="number of shard files (at least the number of workers; "
                   "default 8)")
    p.add_argument("--compression", choices=("none", "gzip"), default="none", help="TFRecord compression")
    p.add_argument("--chunk-rows", type=int, default=65536, help="rows read and validated at a time (memory bound)")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty output folder")
    p.set_defaults(func=run_data_convert)


def _spec_commands(sub: argparse._SubParsersAction) -> None:
    """`mdrec spec check`."""
    spec = sub.add_parser("spec", help="feature spec tools").add_subparsers(title="spec commands", metavar="COMMAND")
    p = spec.add_parser("check", help="validate a spec, and a log against it")
    p.add_argument("spec", help="spec YAML")
    p.add_argument("--data", help="a log file or folder to check against the spec")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=run_spec_check)


def _train_command(sub: argparse._SubParsersAction) -> None:
    """`mdrec train`."""
    from mdrec.training.schedule import TRAIN

    p = sub.add_parser("train", help="train a CTR or retrieval model into a run folder (resumes if interrupted)")
    p.add_argument("--spec", required=True)
    p.add_argument("--train", required=True)
    p.add_argument("--valid", help="validation log (early stopping: its AUC; Recall@50 for two_tower)")
    p.add_argument("--test", help="test log (metrics written to metrics.json)")
    p.add_argument("--model", default=TRAIN["model"], choices=("star", "shared_bottom", "separate", "mmoe", "two_tower"),
                   help="CTR: star, shared_bottom, separate, mmoe; retrieval: two_tower")
    p.add_argument("--domain-batches", action="store_true",
                   help="draw every batch from one domain (as the STAR paper trains)")
    p.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                   help="a model hyperparameter, e.g. normalization=input (star), num_experts=8 (mmoe), "
                        "interaction=none, grades=false (CTR on a graded label: train on the click alone; "
                        "grade_weight=0.5 by default), temperature=0.1 or logq=streaming (two_tower); repeatable")
    p.add_argument("--out", required=True, help="run folder, e.g. runs/NAME")
    add_schedule_flags(p, TRAIN, batch_size="impression rows per training step",
                       patience="epochs without a gain in the validation score (AUC; Recall@50 for two_tower), or "
                                "CTR epochs with the validation logloss above its best, before stopping")
    p.add_argument("--checkpoint-every", type=int, default=TRAIN["checkpoint_every"], help="steps between checkpoints")
    p.add_argument("--hidden", help="hidden widths, comma separated (default: the model's, e.g. 256,128,64 "
                   "for star, 128 for each two_tower tower)")
    p.add_argument("--dropout", type=float, help="dropout rate after each hidden layer (default: the model's, 0 for "
                   "every model: 0.1 did not raise the CTR models' test AUC on Douban, MovieLens-1M or the "
                   "synthetic log)")
    p.add_argument("--embeddings-l2", type=float, help="L2 penalty on the embedding tables (default: 1e-3 for "
                   "CTR models, chosen on the validation splits of Douban and the synthetic log; 0 for two_tower)")
    p.add_argument("--stream", action="store_true",
                   help="read the training log from disk chunk by chunk each epoch (bounded memory; "
                        "specs without a behaviour sequence)")
    p.add_argument("--warm-start", metavar="RUN", help="start the embedding tables from a trained run's rows, "
                   "matched by ID across vocabularies (e.g. a run on the big line)")
    p.add_argument("--strategy", choices=("mirrored", "multi_worker", "parameter_server"),
                   help="train with tf.distribute (CTR models): mirrored (this machine's devices), multi_worker "
                        "(synchronous, every node runs this command) or parameter_server (the chief runs it, "
                        "workers and ps serve; TFRecord shards); the cluster comes from TF_CONFIG")
    p.add_argument("--cross-line-share", type=float, default=0.0,
                   help="two_tower: the share of training clicks whose history keeps only the user's other lines' "
                        "items, the query of a user the line has never seen (see the README's cold-start section)")
    p.add_argument("--overwrite", action="store_true", help="discard an existing run with a different config")
    p.set_defaults(func=run_train)


def _pretrain_command(sub: argparse._SubParsersAction) -> None:
    """`mdrec pretrain`."""
    from mdrec.pretraining.settings import (ARCHITECTURES, BLOCKS, DEFAULTS as PRE, FULL_SOFTMAX_ITEMS, OBJECTIVES,
                                            POOLINGS, SAMPLED_NEGATIVES, SCHEDULES, TRAINING, LOSS_WEIGHTINGS,
                                            default_text)

    p = sub.add_parser("pretrain", help="pretrain a user encoder on one line's behaviour sequences (autoregressive, "
                       "mlm or contrastive; resumes if interrupted)")
    p.add_argument("--spec", required=True, help="feature spec YAML")
    p.add_argument("--data", required=True, help="the source log (a file, a folder of shards, or a prepared folder: "
                   "its train split)")
    p.add_argument("--valid", help="held-out log: each user's first click there is the validation target "
                   "(default: each user's last click in --data is held out)")
    p.add_argument("--test", help="test log: each user's first click there is ranked after everything before it "
                   "(--data and --valid); test HR@K / NDCG@K in metrics.json and on screen")
    p.add_argument("--domains", nargs="+", metavar="LINE", help="keep only these business lines (default: all)")
    p.add_argument("--objective", required=True, choices=OBJECTIVES,
                   help="autoregressive: next item at every position (SASRec; NextItNet / PeterRec with "
                        "--architecture nextitnet); mlm: masked items (BERT4Rec, ShopperBERT); contrastive: two "
                        "augmented views, InfoNCE (CLUE), plus the next-item loss (CL4SRec; --next-item-weight 0: "
                        "contrastive only)")
    p.add_argument("--architecture", choices=ARCHITECTURES, default="transformer",
                   help="transformer (causal for next-item objectives, bidirectional for mlm) or nextitnet "
                        "(dilated causal convolutions)")
    p.add_argument("--block", choices=BLOCKS, help="transformer block (default: sasrec for causal encoders, "
                   "SASRec's block; prenorm for mlm, a BERT-like pre-norm block)")
    p.add_argument("--pooling", choices=POOLINGS,
                   help="the user vector (default: the one the next-item head scores: last for causal encoders, "
                        "mask for mlm; cls for contrastive only)")
    p.add_argument("--attributes", nargs="+", default=[], metavar="FEATURE",
                   help="item categorical features embedded with each item (and predicted by mlm), e.g. category")
    p.add_argument("--dim", type=int, default=PRE["dim"], help="width of the item embeddings and the encoder")
    p.add_argument("--layers", type=int, default=PRE["layers"], help="encoder blocks")
    p.add_argument("--heads", type=int, default=PRE["heads"], help="attention heads (transformer)")
    p.add_argument("--max-length", type=int, default=PRE["max_length"], help="the last N clicks of each user "
                   "(at most the longest training sequence)")
    p.add_argument("--dropout", type=float, default=PRE["dropout"], help="dropout rate of the embeddings and blocks")
    p.add_argument("--time-buckets", type=int, default=PRE["time_buckets"],
                   help="embed log2-hour gaps between clicks in N buckets (needs a time column; 0: off)")
    p.add_argument("--mask-rate", type=float, default=PRE["mask_rate"], help="mlm: share of positions masked")
    p.add_argument("--mask-last", type=float, default=PRE["mask_last"],
                   help="mlm: share of sequences whose newest click is always masked (the next-item query)")
    p.add_argument("--temperature", type=float, default=PRE["temperature"], help="contrastive: InfoNCE temperature")
    p.add_argument("--next-item-weight", type=float, default=PRE["next_item_weight"],
                   help="contrastive: weight of the next-item loss beside InfoNCE (0: contrastive only)")
    p.add_argument("--negatives", type=int, default=PRE["negatives"],
                   help="sampled-softmax negatives per batch; 0: the full softmax over the catalogue (default: "
                        f"full up to {FULL_SOFTMAX_ITEMS:,} items, else {SAMPLED_NEGATIVES:,} sampled)")
    p.add_argument("--exclude-seen", action=argparse.BooleanOptionalAction, default=PRE["exclude_seen"],
                   help="leave each sequence's other items out of its softmax (as the filtered ranking leaves "
                        "them out); default: on for --objective autoregressive over the full softmax, else off")
    p.add_argument("--repeats", type=int, default=PRE["repeats"], help="windows per user and epoch: the last "
                   "max_length clicks, then windows ending at random points of the whole history")
    # epochs and patience depend on the objective: None is resolved by pretrain_run.
    add_schedule_flags(p, {**TRAINING, "epochs": None, "patience": None},
                       epochs=f"passes over the users' windows at most (default: {default_text('epochs')})",
                       batch_size="windows per training step",
                       patience="epochs without a validation NDCG@10 gain before stopping (default: "
                                f"{default_text('patience')})",
                       seed="seeds the weights, batches, masks and negatives")
    p.add_argument("--schedule", choices=SCHEDULES, default=PRE["schedule"],
                   help="learning rate: constant, or cosine from --learning-rate to 0 over --epochs")
    p.add_argument("--warmup-epochs", type=float, default=PRE["warmup_epochs"],
                   help="the learning rate first rises linearly from 0 to --learning-rate over this many epochs")
    p.add_argument("--loss-weighting", choices=LOSS_WEIGHTINGS, default=PRE["loss_weighting"],
                   help="batch: each batch's item loss is the mean over its targets (batches are grouped by "
                        "window length, so targets of short windows weigh more); token: every target of an "
                        "epoch weighs the same")
    p.add_argument("--checkpoint-every", type=int, default=TRAINING["checkpoint_every"],
                   help="steps between checkpoints")
    p.add_argument("--out", required=True, help="run folder, e.g. runs/NAME")
    p.add_argument("--overwrite", action="store_true", help="discard an existing run with a different config")
    p.set_defaults(func=run_pretrain)


def _transfer_command(sub: argparse._SubParsersAction) -> None:
    """`mdrec transfer`."""
    from mdrec.training.schedule import TRANSFER
    from mdrec.transfer.settings import ADAPTER_DIM

    p = sub.add_parser("transfer", help="carry a pretrained user encoder into a target line's CTR, retrieval or "
                       "user-profile model (frozen, finetune, adapter or scratch)")
    p.add_argument("--from", dest="pretrained", required=True, metavar="RUN", help="a pretraining run (mdrec pretrain)")
    p.add_argument("--spec", required=True, help="the target line's feature spec")
    p.add_argument("--train", required=True, help="target training log (profile: the log holding the users' "
                   "attribute column; users are split 80/10/10)")
    p.add_argument("--valid", help="target validation log (early stopping)")
    p.add_argument("--test", help="target test log (metrics, and for ctr the slices by history length)")
    p.add_argument("--task", required=True, choices=("ctr", "retrieval", "profile"))
    p.add_argument("--mode", required=True, choices=("frozen", "finetune", "adapter", "scratch"),
                   help="frozen: encoder fixed, head trains; finetune: all trains; adapter: only bottleneck "
                        "adapters, layer norms and head train; scratch: same network, random start")
    p.add_argument("--model", help="target model: star, shared_bottom (default for ctr), mmoe; two_tower (retrieval)")
    p.add_argument("--target", help="profile: the user attribute column to predict (e.g. gender)")
    p.add_argument("--adapter-dim", type=int, default=ADAPTER_DIM, help="adapter bottleneck width")
    p.add_argument("--warm-start", metavar="RUN", help="also start the target's ID tables from this run's rows")
    p.add_argument("--param", action="append", default=[], metavar="KEY=VALUE", help="a model hyperparameter")
    add_schedule_flags(p, TRANSFER, batch_size="target rows (profile: users) per training step")
    p.add_argument("--out", required=True, help="run folder")
    p.add_argument("--overwrite", action="store_true", help="discard an existing run with a different config")
    p.set_defaults(func=run_transfer)


def _comparison_commands(sub: argparse._SubParsersAction) -> None:
    """`mdrec compare`, `compare-branches`, `evaluate`."""
    from mdrec.training.schedule import BRANCHES

    p = sub.add_parser("compare", help="one row per trained run on one log, with the sanity baseline")
    p.add_argument("--runs", nargs="+", required=True, help="run folders")
    p.add_argument("--data", required=True, help="the log to evaluate on (e.g. a test split)")
    p.add_argument("--out", help="also write the table as CSV here")
    p.add_argument("--report", metavar="DIR", help="also write a report folder: report.md, report.html (AUC per "
                   "line over seeds, reliability diagram per line) and table.csv, replaced as a whole")
    p.set_defaults(func=run_compare)

    p = sub.add_parser("compare-branches", help="ID vs content: train one backbone with each item encoder "
                       "(id, content, hybrid) on one split; metrics overall, warm and cold items, per line, by "
                       "item popularity, mean ± std over seeds")
    p.add_argument("--spec", required=True, help="a spec with item content (features with role item)")
    p.add_argument("--model", default="two_tower", help="the backbone: two_tower (default) or a CTR model (star, ...)")
    p.add_argument("--data", help="one log to split here, holding --cold-items of the items out of training")
    p.add_argument("--cold-items", type=float, help="with --data: share of the items held out of training "
                   "(default 0.1; seeded by --split-seed)")
    p.add_argument("--split", choices=("time", "random", "leave_last_out"), default="time",
                   help="with --data: the base split (default time)")
    p.add_argument("--split-seed", type=int, default=0)
    p.add_argument("--train", help="or: given training file")
    p.add_argument("--valid", help="given validation file (early stopping)")
    p.add_argument("--test", help="given test file (the report's numbers)")
    p.add_argument("--encoders", default="id,content,hybrid",
                   help="item encoders, comma separated; parameters after colons, e.g. "
                        "id,content,hybrid,content:text_encoder=transformer (default id,content,hybrid)")
    p.add_argument("--seeds", default="0", help="training seeds, comma separated, e.g. 0,1,2 (default 0)")
    add_schedule_flags(p, BRANCHES, epochs="passes over the training split at most, per branch and seed")
    p.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                   help="a model hyperparameter for every branch, e.g. text_encoder=transformer, "
                        "frozen_text=lsa, hidden=[64]; repeatable")
    p.add_argument("--buckets", type=int, default=4, help="item popularity buckets of the warm items (default 4)")
    p.add_argument("--out", required=True, help="report folder, e.g. reports/NAME (runs go in NAME/runs)")
    p.add_argument("--overwrite", action="store_true", help="discard runs there with a different config")
    p.set_defaults(func=run_compare_branches)

    p = sub.add_parser("cold-start", help="rank a line's items for its cold-start users (no training row there) "
                       "and its warm users: popularity, ItemKNN and EASE within the line and across lines, EMCDR, "
                       "sequel kNN, and any retrieval runs; full and sampled (999) protocols, gains with user-bootstrap "
                       "intervals")
    p.add_argument("--spec", required=True)
    p.add_argument("--train", required=True, help="a split from `mdrec data split --by cold_users`")
    p.add_argument("--valid", required=True, help="settings of the sanity rows, EMCDR and sequel kNN are chosen here")
    p.add_argument("--test", required=True)
    p.add_argument("--target-line", required=True)
    p.add_argument("--run", action="append", default=[], metavar="NAME=PATH[:alone]",
                   help="a finished retrieval run on this split; ':alone' marks one trained on the target line "
                        "only (no transfer); repeatable")
    p.add_argument("--seed", type=int, default=0, help="seed of EMCDR, of sequel kNN's factorisation and of the sampled negatives")
    p.add_argument("--out", help="write the table and the gains as CSV files into this folder")
    p.set_defaults(func=run_cold_start)

    p = sub.add_parser("evaluate", help="per-domain metrics of a trained run on a log")
    p.add_argument("--run", required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--out", help="write the result as JSON here")
    p.add_argument("--sampled", action="store_true",
                   help="retrieval runs: also rank each clicked item against sampled negatives (DisenCDR)")
    p.add_argument("--negatives", type=int, default=999, help="negatives per clicked item for --sampled")
    p.add_argument("--seed", type=int, default=0, help="seed of the sampled negatives")
    p.set_defaults(func=run_evaluate)


def _index_and_lifelong_commands(sub: argparse._SubParsersAction) -> None:
    """`mdrec index`, `mdrec lifelong`."""
    p = sub.add_parser("index", help="build a retrieval run's per-line ScaNN or brute-force index; report "
                       "ScaNN's recall against exact search and the speed of both")
    p.add_argument("--run", required=True, help="a two_tower run folder")
    p.add_argument("--kind", choices=("scann", "brute_force"), default="scann", help="the index to save")
    p.add_argument("--k", type=int, default=10, help="results per query (recall@k is measured at this k)")
    p.add_argument("--recall-target", type=float,
                   help="tune ScaNN per line: the cheapest search setting reaching this recall@k, e.g. 0.95")
    p.add_argument("--data", help="held-out queries from this log (default: the run's validation split)")
    p.add_argument("--queries", type=int, default=2000, help="at most this many held-out queries")
    p.set_defaults(func=run_index)

    p = sub.add_parser("lifelong", help="Conure: one user encoder learns tasks in sequence (pretraining, "
                       "target lines, user profiles) without forgetting; with the baselines")
    p.add_argument("--spec", required=True, help="feature spec YAML")
    p.add_argument("--tasks", required=True, help="tasks YAML (see task_files/lifelong-synthetic.yaml)")
    p.add_argument("--out", required=True, help="run folder (resumes per task when it exists)")
    p.add_argument("--data", help="prepared data folder (default: the tasks file's 'data' field)")
    p.add_argument("--overwrite", action="store_true", help="start over when --out holds a different run")
    p.add_argument("--stop-after", type=int, help="stop after this task (the next run continues from there)")
    p.set_defaults(func=run_lifelong)


def _serving_commands(sub: argparse._SubParsersAction) -> None:
    """`mdrec export`, `serving-config`, `request`."""
    p = sub.add_parser("export", help="export a trained run as a versioned TF Serving SavedModel")
    p.add_argument("--run", required=True, help="run folder, e.g. runs/NAME")
    p.add_argument("--name", required=True, help="model name: the folder under --export-dir and the name "
                   "TF Serving serves it as")
    p.add_argument("--export-dir", default="export", help="export folder (default: export)")
    p.add_argument("--version", type=int, help="version number (default: one above the highest present)")
    p.add_argument("--keep", type=int, default=5, help="versions to keep; older ones are deleted after the "
                   "new one is complete, except those models.config pins (default 5; 0 keeps all)")
    p.add_argument("--index", choices=("brute_force", "scann"),
                   help="retrieval runs: top-K by exact search in stock TF ops (default; runs on stock TF "
                        "Serving) or by ScaNN (needs the ScaNN ops in the server)")
    p.add_argument("--top-k", type=int, help="retrieval and user_encoder runs: items returned per query "
                   "(default 100)")
    p.set_defaults(func=run_export)

    p = sub.add_parser("serving-config", help="write models.config and batching_parameters.txt for TF Serving")
    p.add_argument("--export-dir", default="export", help="export folder (default: export)")
    p.add_argument("--labels", action="append", default=[], metavar="MODEL=LABEL:VERSION[,...]",
                   help="version labels for an A/B rollout, e.g. ctr=stable:3,canary:4 (serves exactly "
                        "those versions); repeatable, one per model")
    p.add_argument("--max-batch-size", type=int, default=256)
    p.add_argument("--batch-timeout-micros", type=int, default=1000)
    p.add_argument("--max-enqueued-batches", type=int, default=100)
    p.add_argument("--num-batch-threads", type=int, default=4, help="usually the server's CPU cores")
    p.set_defaults(func=run_serving_config)

    p = sub.add_parser("request", help="print the TF Serving REST predict body for rows of a log")
    p.add_argument("--export", required=True, help="export/MODEL (or export/MODEL/VERSION)")
    p.add_argument("--version", type=int, help="version (default: the latest)")
    p.add_argument("--rows", required=True, help="CSV/TSV/Parquet rows with the spec's feature columns")
    p.add_argument("--signature", default="serving_default")
    p.set_defaults(func=run_request)


def _ab_command(sub: argparse._SubParsersAction) -> None:
    """`mdrec ab`."""
    p = sub.add_parser("ab", help="offline A/B: two models on one log, with intervals, tests and a verdict per slice")
    p.add_argument("--control", required=True, help="A: a run folder, an export (export/MODEL), a prediction "
                   "file (CSV/Parquet with the log's user id, item id, domain and time columns and a score), or a "
                   "sanity row fitted on the treatment run's training file: baseline:mean, baseline:logistic, "
                   "baseline:logistic-graded (CTR, a label cut from a graded column); baseline:popularity, baseline:itemknn, baseline:ease, baseline:itemknn-per-line, "
                   "baseline:ease-per-line (two_tower)")
    p.add_argument("--treatment", required=True, help="B: same kinds as --control")
    p.add_argument("--data", required=True, help="the held-out log both are compared on (e.g. a test split)")
    p.add_argument("--out", required=True, help="report folder: report.md, report.html, summary.json")
    p.add_argument("--slice", action="append", default=[], metavar="COLUMN",
                   help="also slice by this spec column (repeatable)")
    p.add_argument("--bootstrap", type=int, default=1000, help="user resamples of the paired bootstrap (default 1000)")
    p.add_argument("--seed", type=int, default=0, help="seed of the bootstrap")
    p.add_argument("--alpha", type=float, default=0.05, help="test level after Holm's correction (default 0.05)")
    p.add_argument("--propensity", metavar="COLUMN",
                   help="the log's column with the logging policy's probability of the shown item: adds IPS "
                        "and SNIPS estimates of each side's click rate")
    p.add_argument("--score-column", default="score", help="score column of prediction files (default: score)")
    p.add_argument("--control-score-column", help="the control's score column when it differs (e.g. production's "
                   "scores logged in the --data file itself)")
    p.add_argument("--spec", help="the log's spec, needed when both sides are prediction files")
    p.add_argument("--history", help="a log whose users count as returning (default: a run side's training file)")
    p.set_defaults(func=run_ab)


# ---- commands ------------------------------------------------------------------------------------
