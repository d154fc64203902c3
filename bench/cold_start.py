"""Cold-start transfer: a new line ranks its items for users only the big line knows.

    python bench/cold_start.py --data ../shared/data/amazon-cdr-disencdr --dataset amazon-cloth-sport \
        --source-line cloth --target-line sport
    python bench/cold_start.py --data ../shared/data/douban-book-music --dataset douban-book-music \
        --source-line book --target-line music

    python bench/cold_start.py --synthetic transfer --source-line main --target-line grocery --cold-fraction 0.2

``--synthetic PRESET`` generates the synthetic log of that preset (seeded, so every run the same)
and adds the click-model ceiling (:mod:`mdrec.data.synthetic.ceiling`: each user's expected clicks
per item from the generator's own click model and exposure rule) as a row, and to each transfer
row's summary its share of the gap from popularity to that ceiling (``share_of_gap <metric>``;
issue 19 asks for at least half on cold users). ``--data`` is the raw shared folder (prepared into OUT/data with the shipped spec of --dataset) or
a prepared folder (log.parquet). The log is split once (``mdrec data split --by cold_users``,
--cold-fraction of the users with clicks in both lines, --split-seed, default 0); the seeds vary
the learned methods and sequel kNN's factorisation only. Methods (:mod:`mdrec.workflows.cold_start`):
popularity, ItemKNN and EASE in the target line alone and over both lines (settings chosen on
validation), EMCDR (rank and mapping chosen on the cold validation users), sequel kNN (rank, shelf
size and blend chosen there too), and two-tower models with the README's recommended towers
(``towers=shared``, temperature 0.1): one over both lines (transfer), one over the target line
alone (no transfer), the same target-line model with ``towers=mlp`` (which reads the user id)
warm-started by ID from one over the source line alone (``mdrec train --warm-start``: users only
the source knows keep their source rows), and, per ``--encoder-modes``, the target-line model with a user encoder
pretrained on the source line's clicks (``mdrec pretrain``, SASRec's recipe, per seed) in its query
tower (``mdrec transfer --task retrieval --mode frozen|adapter|finetune``; ``towers=mlp``, the
towers that read user inputs, beside the same model without the encoder): a cold user's vector
comes from their source-line sequence. Every row faces the same sampled negatives.

JSON lines on stdout:
  {"method", "transfer", "learned", "users": "cold"|"warm", "seed", "count", "recall@10", "recall@50",
   "ndcg@10", "sampled_hr@10", "sampled_ndcg@10", "sampled_mrr"}          one per method, seed, group
  {"summary": METHOD, "users", "<metric>_mean", "<metric>_std", "gain_over", "gain <metric>",
   "ci95 <metric>", "ratio <metric>"}            per method and group: seeds' mean ± std, and the
                                                 user-bootstrap interval of the seed-averaged gain
                                                 over the group's best row without transfer
Progress goes to stderr. Finished runs in OUT are reused (delete a run folder to retrain it).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from mdrec.data.io import read_file  # noqa: E402
from mdrec.data.prepare import prepare  # noqa: E402
from mdrec.data.splits import split_files  # noqa: E402
from mdrec.evaluation.cold_start import METRICS  # noqa: E402
from mdrec.cli.commands import parse_params  # noqa: E402
from mdrec.fileio import atomic_write_table  # noqa: E402
from mdrec.progress import quiet_progress  # noqa: E402
from mdrec.spec import SHIPPED_SPECS, load_spec  # noqa: E402
from mdrec.training.run import RunDir, TrainConfig  # noqa: E402
from mdrec.workflows.train import train_run  # noqa: E402
from mdrec.workflows.cold_start import ColdStartResult, ColdStartTask, json_rows  # noqa: E402

JOINT = "two_tower (both lines)"
ALONE = "two_tower (target line only)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", help="the raw shared folder or a prepared one (not with --synthetic)")
    parser.add_argument("--synthetic", metavar="PRESET",
                        help="generate the synthetic log of this preset (e.g. transfer) instead of reading --data: "
                             "the table then has the click-model ceiling and each transfer row's share of its gap")
    parser.add_argument("--dataset", help="a shipped spec's name, e.g. amazon-cloth-sport (synthetic with --synthetic)")
    parser.add_argument("--spec", help="a spec for the same prepared log (default: the shipped spec of --dataset)")
    parser.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                        help="two-tower hyperparameter (default with a behaviour sequence in the spec: the README's "
                             "towers=shared and temperature=0.1; without one, the model's defaults)")
    parser.add_argument("--source-line", required=True)
    parser.add_argument("--target-line", required=True)
    parser.add_argument("--cold-fraction", type=float, default=0.1)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--split-seed", type=int, default=0, help="which users are made cold")
    parser.add_argument("--out", default="/tmp/bench-cold-start")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--patience", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--learning-rate", type=float, default=4e-3, help="the README's Amazon recipe")
    parser.add_argument("--cross-line-share", type=float, default=0.0,
                        help="the joint model's `mdrec train --cross-line-share` (0: off, the kit's default)")
    parser.add_argument("--no-models", action="store_true", help="kNN, EASE, popularity, EMCDR and sequel kNN only")
    parser.add_argument("--encoder-modes", default="frozen,adapter,finetune",
                        help="comma separated transfer modes of the pretrained source-line encoder ('' for none)")
    parser.add_argument("--pretrain-epochs", type=int, default=20, help="the source-line encoder's epoch cap")
    parser.add_argument("--pretrain-param", action="append", default=[], metavar="KEY=VALUE",
                        help="a pretraining hyperparameter (e.g. negatives=512 for a large source catalogue)")
    args = parser.parse_args()
    err = lambda message: print(message, file=sys.stderr, flush=True)  # noqa: E731

    if bool(args.data) == bool(args.synthetic):
        parser.error("give --data or --synthetic")
    args.dataset = args.dataset or ("synthetic" if args.synthetic else None)
    if not args.dataset:
        parser.error("--dataset is required with --data")
    out = Path(args.out)
    spec_path = Path(args.spec) if args.spec else SHIPPED_SPECS / f"{args.dataset}.yaml"
    spec = load_spec(spec_path)
    params = {"towers": "shared", "temperature": 0.1} if spec.sequence else {}
    params.update(parse_params(args.param))
    pretraining = parse_params(args.pretrain_param)
    truth = None
    if args.synthetic:
        from mdrec.data import synthetic

        generated = synthetic.generate(synthetic.preset(args.synthetic))
        truth, data = generated.truth, out / "data"
        if not (data / "log.parquet").is_file():
            synthetic.write(generated, data)
    else:
        data = Path(args.data)
    if not (data / "log.parquet").is_file():
        if not (out / "data" / "prepare.json").is_file():
            prepare(args.dataset, data, out / "data")
        data = out / "data"
    split = out / (f"split-{args.source_line}-{args.target_line}-{args.cold_fraction}"
                   + (f"-seed{args.split_seed}" if args.split_seed else ""))
    if not (split / "cold_users.tsv").is_file():
        split_files(spec_path, data / "log.parquet", split, by="cold_users", source_line=args.source_line,
                    target_line=args.target_line, cold_fraction=args.cold_fraction, seed=args.split_seed)
    paths = {name: split / f"{name}.parquet" for name in ("train", "valid", "test")}
    alone = _line_only(paths, spec.domain.column, args.target_line, split / "target-only")

    with quiet_progress():
        task = ColdStartTask(spec_path, paths["train"], paths["valid"], paths["test"], target=args.target_line,
                             log=err)
        fixed = _cached_baselines(task, split / "baselines")
        if truth is not None:  # the generator's own ranking: the bound the transfer rows are measured against
            fixed.append(task.ceiling(truth.expected_clicks))
        seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
        settings = ",".join(f"{k}={v}" for k, v in sorted(params.items())) or "defaults"
        results = []
        for seed in seeds:
            scored = list(fixed) + [task.emcdr(seed), task.sequel(seed)]
            if not args.no_models:
                joint = JOINT + (f", cross-line share {args.cross_line_share}" if args.cross_line_share else "")
                for name, files, transfer in ((joint, paths, True), (ALONE, alone, False)):
                    share = args.cross_line_share if transfer else 0.0
                    tag = settings + (f",cross_line_share={share}" if share else "")
                    run = out / "runs" / f"{split.name}-{'joint' if transfer else 'alone'}-{tag}-seed{seed}"
                    _train(spec_path, files, run, seed, params, share, args, err)
                    scored.append(task.run(name, run, transfer))
                # The rows below read the user's own inputs (their id; the pretrained encoder),
                # which towers=shared's query tower does not: they and their control (the same
                # target-only model) use towers=mlp.
                mlp = {**params, "towers": "mlp"}
                tag = ",".join(f"{k}={v}" for k, v in sorted(mlp.items()))
                if params.get("towers", "mlp") != "mlp":  # else the target-only row is the control
                    run = out / "runs" / f"{split.name}-alone-{tag}-seed{seed}"
                    _train(spec_path, alone, run, seed, mlp, 0.0, args, err)
                    scored.append(task.run(f"{ALONE}, towers=mlp", run, False))
                # ID warm start: the target-only model's tables start from a source-only model's
                # rows by ID; the users only the source line knows keep theirs.
                source = _line_only(paths, spec.domain.column, args.source_line, split / "source-only")
                donor = out / "runs" / f"{split.name}-source-{args.source_line}-{tag}-seed{seed}"
                _train(spec_path, source, donor, seed, mlp, 0.0, args, err)
                run = out / "runs" / f"{split.name}-warm-{tag}-seed{seed}"
                _train(spec_path, alone, run, seed, mlp, 0.0, args, err, warm_start=donor)
                scored.append(task.run(f"{ALONE}, towers=mlp, ID warm start from {args.source_line}", run, True))
                modes = [m for m in args.encoder_modes.split(",") if m.strip()]
                if modes:
                    encoder_tag = ",".join(f"{k}={v}" for k, v in sorted(pretraining.items())) or "defaults"
                    pretrained = out / "runs" / f"{split.name}-pretrained-{args.source_line}-{encoder_tag}-seed{seed}"
                    _pretrain(spec_path, source["train"], pretrained, seed, args.pretrain_epochs, pretraining, err)
                    for mode in modes:
                        run = out / "runs" / f"{split.name}-encoder-{mode}-{tag}-{encoder_tag}-seed{seed}"
                        _transfer(spec_path, alone, pretrained, mode, run, seed, mlp, args, err)
                        scored.append(task.run(f"{ALONE}, towers=mlp + {args.source_line} encoder ({mode})", run,
                                               True))
            result = task.result(scored)
            results.append(result)
            for row in json_rows(result, seed, args.dataset):
                print(json.dumps(row), flush=True)
    for row in summary(results, seeds):
        print(json.dumps(row), flush=True)


def _cached_baselines(task: ColdStartTask, folder: Path) -> list:
    """The rows that do not depend on the seed, computed once per split (about 10 minutes on
    Amazon) and kept in ``folder`` (methods.json, per_user.npz)."""
    from mdrec.workflows.cold_start import Method

    if (folder / "methods.json").is_file():
        methods = [Method(**m) for m in json.loads((folder / "methods.json").read_text())]
        with np.load(folder / "per_user.npz", allow_pickle=False) as stored:
            return [(m, {k: stored[f"{i}/{k}"] for k in METRICS}) for i, m in enumerate(methods)]
    fixed = task.baselines()
    folder.mkdir(parents=True, exist_ok=True)
    np.savez(folder / "per_user.npz", **{f"{i}/{k}": v[k] for i, (_, v) in enumerate(fixed) for k in METRICS})
    (folder / "methods.json").write_text(json.dumps([m.__dict__ for m, _ in fixed], default=str))
    return fixed


def _line_only(paths: dict[str, Path], column: str, line: str, folder: Path) -> dict[str, Path]:
    """The split's files restricted to one line (the target-only models' data; the source
    encoder's clicks)."""
    out = {}
    for name, path in paths.items():
        out[name] = folder / f"{name}.parquet"
        if not out[name].is_file():
            frame = read_file(path)
            atomic_write_table(frame[frame[column].astype(str) == line].reset_index(drop=True), out[name])
    return out


def _train(spec_path: Path, files: dict[str, Path], run: Path, seed: int, params: dict, share: float, args,
           err, warm_start: Path | None = None) -> None:
    if RunDir(run).metrics_path.is_file():
        return
    config = TrainConfig(model="two_tower", train=str(files["train"]), valid=str(files["valid"]),
                         test=str(files["test"]), epochs=args.epochs, batch_size=args.batch_size,
                         learning_rate=args.learning_rate, patience=args.patience, seed=seed,
                         hyperparameters=dict(params), cross_line_share=share,
                         warm_start=str(warm_start) if warm_start else None)
    # The sanity rows are fitted once for every method (ColdStartTask.baselines), not per run.
    train_run(spec_path, config, run, log=err, sanity_rows=False)


def _pretrain(spec_path: Path, source_train: Path, run: Path, seed: int, epochs: int, hyperparameters: dict,
              err) -> None:
    """SASRec's recipe (the kit's pretraining defaults, and ``hyperparameters``) on the source
    line's training clicks; the last click of each user is its validation target."""
    from mdrec.workflows.pretrain import pretrain_run

    if not RunDir(run).metrics_path.is_file():
        pretrain_run(spec_path, source_train, run, seed=seed, epochs=epochs, log=err, **hyperparameters)


def _transfer(spec_path: Path, files: dict[str, Path], pretrained: Path, mode: str, run: Path, seed: int,
              params: dict, args, err) -> None:
    from mdrec.workflows.transfer import transfer_run

    if RunDir(run).metrics_path.is_file():
        return
    transfer_run(pretrained, spec_path, run, task="retrieval", mode=mode, train=str(files["train"]),
                 valid=str(files["valid"]), test=str(files["test"]), model="two_tower",
                 hyperparameters=dict(params), epochs=args.epochs, batch_size=args.batch_size,
                 learning_rate=args.learning_rate, patience=args.patience, seed=seed, sanity_rows=False, log=err)


def summary(results: list[ColdStartResult], seeds: list[int]) -> list[dict]:
    """Per method and user group: mean ± std over seeds; the gain over the group's best row
    without transfer (by NDCG@10 of the seed-averaged per-user metrics) with a user-bootstrap 95%
    interval, and the ratio of the means."""
    names = [m.name for m in results[0].methods]
    averaged = {name: {m: np.mean([r.per_user[name][m] for r in results], 0) for m in METRICS} for name in names}
    first = results[0]
    seed_mean = ColdStartResult(first.methods, averaged, first.users, first.groups)
    gains = seed_mean.intervals(metrics=("recall@10", "ndcg@10"))
    rows = []
    for group in ("cold", "warm"):
        mask = first.groups == group
        if not mask.any():
            continue
        reference = seed_mean.best_without_transfer(group)
        shares = {m: seed_mean.share_of_gap(group, m) for m in ("recall@10", "ndcg@10")}
        for method in first.methods:
            per_seed = pd.DataFrame([{m: r.per_user[method.name][m][mask].mean() for m in METRICS} for r in results])
            row = {"summary": method.name, "transfer": method.transfer, "learned": method.learned,
                   "ceiling": method.ceiling, "users": group,
                   "seeds": len(seeds), "gain_over": reference}
            for m in METRICS:
                row[f"{m}_mean"] = round(float(per_seed[m].mean()), 5)
                row[f"{m}_std"] = round(float(per_seed[m].std(ddof=1)), 5) if len(per_seed) > 1 else 0.0
            if (method.name, group) in gains.index:
                g = gains.loc[(method.name, group)]
                for m in ("recall@10", "ndcg@10"):
                    base = averaged[reference][m][mask].mean()
                    row[f"gain {m}"] = round(float(g[f"gain {m}"]), 5)
                    row[f"ci95 {m}"] = [round(float(g[f"low {m}"]), 5), round(float(g[f"high {m}"]), 5)]
                    row[f"ratio {m}"] = round(float(averaged[method.name][m][mask].mean() / base), 3) if base else None
            for m, share in shares.items():
                if method.name in share:
                    row[f"share_of_gap {m}"] = round(share[method.name], 3)
            if method.settings:
                row["settings"] = {k: v for k, v in method.settings.items() if k != "validation_grid"}
            rows.append(row)
    return rows


if __name__ == "__main__":
    main()
