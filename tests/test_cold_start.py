"""Cold-start transfer: the split holds whole users out of the target line, the mapping carries a
user across lines, and the evaluation groups users and pairs methods as its docstring says."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from mdrec.cli import main
from mdrec.data.splits import COLD_USERS, cold_user_split, split_files
from mdrec.errors import MdrecError
from mdrec.evaluation.cold_start import gain_intervals, group_table, per_user_metrics
from mdrec.evaluation.ranking import RankingQueries
from mdrec.transfer.mapping import EMCDR

SPEC = """
name: two-lines
label: {column: click}
domain: {column: domain, values: [big, new]}
features:
  - {name: user_id, role: user_id, type: categorical, embedding_dim: 4}
  - {name: item_id, role: item_id, type: categorical, embedding_dim: 4}
"""


def _two_line_log(n_users: int = 40, seed: int = 0) -> pd.DataFrame:
    """Every user clicks 4 items in 'big' and 3 in 'new', plus one non-click in each; u0 and u1 are
    only in 'big' (no target click: never cold candidates), u2 only in 'new' (no source click)."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(n_users):
        for line, clicks in (("big", 4), ("new", 3)):
            if (line == "new" and u in (0, 1)) or (line == "big" and u == 2):
                continue
            for k in range(clicks):
                rows.append((f"u{u}", f"{line}{rng.integers(0, 12)}", line, 1))
            rows.append((f"u{u}", f"{line}{rng.integers(0, 12)}", line, 0))
    return pd.DataFrame(rows, columns=["user_id", "item_id", "domain", "click"])


def _split(frame: pd.DataFrame, fraction: float = 0.25, seed: int = 3):
    base = tuple(np.flatnonzero(np.arange(len(frame)) % 5 == r) for r in (0, 1, 2))
    base = (np.flatnonzero(np.arange(len(frame)) % 5 >= 2), base[0], base[1])  # 60/20/20
    return cold_user_split(frame["user_id"].to_numpy(object), frame["domain"].to_numpy(object),
                           frame["click"].to_numpy(), base, source="big", target="new", fraction=fraction, seed=seed)


def test_cold_users_lose_every_target_training_row_and_keep_every_source_row():
    frame = _two_line_log()
    (train, valid, test), cold_valid, cold_test = _split(frame)
    # 37 candidates (u0, u1 lack a target click, u2 a source click); round(0.25 * 37) = 9 cold users.
    assert len(cold_valid) + len(cold_test) == 9 and len(cold_valid) == 4
    assert not set(cold_valid) & set(cold_test) and not {"u0", "u1", "u2"} & (set(cold_valid) | set(cold_test))
    users, lines = frame["user_id"].to_numpy(object), frame["domain"].to_numpy(object)
    for users_of_split, rows in ((cold_valid, valid), (cold_test, test)):
        cold_target = np.flatnonzero(np.isin(users, users_of_split) & (lines == "new"))
        assert set(cold_target) <= set(rows)            # every target row of theirs is held out here
    cold = np.isin(users, np.concatenate([cold_valid, cold_test]))
    assert not (cold[train] & (lines[train] == "new")).any()
    assert set(np.flatnonzero(cold & (lines == "big"))) <= set(train)   # their source history trains
    assert not (np.isin(users[valid], cold_test)).any() and not (np.isin(users[test], cold_valid)).any()
    # Every row lands in exactly one split, and warm users keep the base split.
    assert np.array_equal(np.sort(np.concatenate([train, valid, test])), np.arange(len(frame)))
    warm_valid = valid[~cold[valid]]
    assert np.array_equal(warm_valid, np.flatnonzero(~cold & (np.arange(len(frame)) % 5 == 0)))
    # Seeded: the same seed gives the same users, another seed others.
    assert np.array_equal(_split(frame)[2], cold_test) and not np.array_equal(_split(frame, seed=4)[2], cold_test)


@pytest.mark.parametrize("kwargs, text", [
    ({"fraction": 1.5}, "must be in (0, 1)"),
    ({"fraction": 0.01}, "gives 0 cold users"),
    ({"source": "bog"}, "the source line 'bog' has no rows"),
])
def test_cold_user_split_refuses_what_it_cannot_do(kwargs, text):
    frame = _two_line_log()
    args = dict(source="big", target="new", fraction=0.25, seed=0)
    args.update(kwargs)
    parts = (np.arange(len(frame)), np.zeros(0, int), np.zeros(0, int))
    with pytest.raises(MdrecError, match=text.replace("(", r"\(").replace(")", r"\)")):
        cold_user_split(frame["user_id"].to_numpy(object), frame["domain"].to_numpy(object),
                        frame["click"].to_numpy(), parts, **args)


def test_split_command_writes_the_cold_users_and_names_missing_lines(tmp_path, capsys):
    (tmp_path / "spec.yaml").write_text(SPEC)
    _two_line_log().to_csv(tmp_path / "log.csv", index=False)
    written = split_files(tmp_path / "spec.yaml", tmp_path / "log.csv", tmp_path / "out", by="cold_users",
                          source_line="big", target_line="new", cold_fraction=0.25, seed=1)
    listing = pd.read_csv(tmp_path / "out" / COLD_USERS, sep="\t")
    assert written["cold_users"][0] == len(listing) == 9 and set(listing["split"]) == {"valid", "test"}
    train = pd.read_parquet(tmp_path / "out" / "train.parquet")
    assert not train[train["domain"] == "new"]["user_id"].isin(listing["user"].astype(str)).any()
    code = main(["data", "split", "--spec", str(tmp_path / "spec.yaml"), "--data", str(tmp_path / "log.csv"),
                 "--out", str(tmp_path / "o2"), "--by", "cold_users", "--target-line", "new"])
    assert code == 2 and "--source-line" in capsys.readouterr().err


def test_emcdr_maps_a_cold_user_to_the_target_items_of_users_like_them():
    # Two tastes: users 0-9 click source items 0-2 and target items 0-2; users 10-19 the others.
    source = np.zeros((20, 6))
    target = np.zeros((20, 6))
    source[:10, :3] = target[:10, :3] = 1
    source[10:, 3:] = target[10:, 3:] = 1
    model = EMCDR(rank=2, mapping="linear", l2=1e-3).fit(sp.csr_matrix(source), sp.csr_matrix(target))
    cold = sp.csr_matrix(np.array([[1.0, 1, 0, 0, 0, 0], [0, 0, 0, 0, 1, 1]]))
    scores = model.score(cold, sp.csr_matrix((2, 6)))
    assert scores[0, :3].min() > scores[0, 3:].max() and scores[1, 3:].min() > scores[1, :3].max()
    # A warm user keeps their own target factor: PureSVD's x V Vᵀ.
    warm = sp.csr_matrix(target[:1])
    v = model.target_items
    assert np.allclose(model.score(sp.csr_matrix((1, 6)), warm), target[:1] @ v @ v.T, atol=1e-5)


def _queries(relevant):
    n = len(relevant)
    return RankingQueries(np.arange(n), np.zeros(n, np.int64), np.array([f"u{i}" for i in range(n)], object),
                          [np.asarray(r) for r in relevant], [np.zeros(0, np.int64)] * n)


def test_per_user_metrics_average_the_sampled_protocol_over_each_users_items():
    membership = np.ones((1, 30), bool)
    queries = _queries([[0, 1], [2]])
    scores = np.zeros((2, 30))
    scores[0, 0], scores[0, 1] = 10.0, -10.0      # user 0: item 0 first, item 1 last of 30
    scores[1, 2] = 10.0                            # user 1: item 2 first
    out = per_user_metrics(lambda p: scores[p], queries, membership, negatives=20, seed=0)
    assert out["recall@10"].tolist() == [0.5, 1.0]
    assert out["sampled_hr@10"].tolist() == [0.5, 1.0]       # item 1 ranks last of 21
    assert out["sampled_mrr"].tolist() == pytest.approx([(1 + 1 / 21) / 2, 1.0])
    table = group_table({"m": out}, np.array(["cold", "warm"], object))
    assert table.loc[("m", "cold"), "count"] == 1 and table.loc[("m", "warm"), "recall@10"] == 1.0


def test_gain_intervals_pair_users_and_see_a_gain_only_where_there_is_one():
    rng = np.random.default_rng(0)
    users = np.array([f"u{i}" for i in range(200)], object)
    groups = np.where(np.arange(200) < 100, "cold", "warm").astype(object)
    base = {"recall@10": rng.random(200), "ndcg@10": rng.random(200)}
    better = {m: v + np.where(groups == "cold", 0.1, 0.0) for m, v in base.items()}
    out = gain_intervals({"base": base, "better": better}, "base", groups, users, n_bootstrap=200)
    cold, warm = out.loc[("better", "cold")], out.loc[("better", "warm")]
    assert cold["gain recall@10"] == pytest.approx(0.1) and cold["low recall@10"] == pytest.approx(0.1)
    assert warm["gain ndcg@10"] == 0.0 and warm["low ndcg@10"] == warm["high ndcg@10"] == 0.0


def test_cold_start_command_scores_every_method_for_cold_and_warm_users(tmp_path, capsys):
    (tmp_path / "spec.yaml").write_text(SPEC)
    _two_line_log(n_users=120, seed=1).to_csv(tmp_path / "log.csv", index=False)
    split_files(tmp_path / "spec.yaml", tmp_path / "log.csv", tmp_path / "split", by="cold_users",
                source_line="big", target_line="new", cold_fraction=0.3, seed=0)
    files = [f"--{n}={tmp_path / 'split' / f'{n}.parquet'}" for n in ("train", "valid", "test")]
    assert main(["cold-start", "--spec", str(tmp_path / "spec.yaml"), *files, "--target-line", "new",
                 "--out", str(tmp_path / "report")]) == 0
    table = pd.read_csv(tmp_path / "report" / "cold_start.csv").set_index(["method", "users"])
    cold_users = pd.read_csv(tmp_path / "split" / COLD_USERS, sep="\t")
    # The test split's cold users are exactly the listed test users with a held-out click.
    assert table.loc[("popularity (target line)", "cold"), "count"] == (cold_users["split"] == "test").sum()
    assert {"baseline: ItemKNN (all lines)", "baseline: EASE (per line)", "EMCDR (PureSVD + mapping)",
            "sequel kNN (all lines)"} <= set(
        table.index.get_level_values("method"))
    # Within the line, a cold user has nothing to go on: the per-line rows fall back to popularity.
    assert table.loc[("baseline: ItemKNN (per line)", "cold"), "recall@10"] == \
        table.loc[("popularity (target line)", "cold"), "recall@10"]
    out = capsys.readouterr().out
    assert "gain over the reference" in out and "EMCDR (PureSVD + mapping), cold" in out
    gains = pd.read_csv(tmp_path / "report" / "gains.csv").set_index(["method", "users"])
    # Each group is compared with its own best row without transfer (cold: popularity, which the
    # per-line rows tie and which is listed first).
    assert set(gains.xs("cold", level="users")["reference"]) == {"popularity (target line)"}
    warm_best = table.xs("warm", level="users")
    plain = ["popularity (target line)", "baseline: ItemKNN (per line)", "baseline: EASE (per line)"]
    assert set(gains.xs("warm", level="users")["reference"]) == {warm_best.loc[plain, "ndcg@10"].idxmax()}
    assert main(["cold-start", "--spec", str(tmp_path / "spec.yaml"), *files, "--target-line", "new",
                 "--run", "nonsense"]) == 2
    assert "is not NAME=PATH" in capsys.readouterr().err


def test_cross_line_histories_take_the_rows_own_line_out_of_a_share_of_rows():
    from mdrec.data.catalogue import Catalogue
    from mdrec.data.log import DOMAIN
    from mdrec.training.retrieval import cross_line_histories

    catalogue = Catalogue(pd.DataFrame({"__item_key__": ["b1", "b2", "n1", "n2"], DOMAIN: ["big", "big", "new", "new"],
                                        "item_id": ["b1", "b2", "n1", "n2"]}), {}, ["big", "new"],
                          np.array([[1, 1, 0, 0], [0, 0, 1, 1]], bool), np.ones((2, 4), np.int64), "item_id")
    history = np.array([["n1", "b1", "n2", "b2"]] * 400, dtype=object)
    lines = np.array(["new", "big"] * 200, dtype=object)
    out = cross_line_histories(history, lines, catalogue, 0.5, seed=0)
    changed = (out != history).any(1)
    assert 0.4 < changed.mean() < 0.6                      # about half the rows, seeded
    # A changed row keeps the other line's items, in order, left-aligned; its own line's are gone.
    new_rows, big_rows = changed & (lines == "new"), changed & (lines == "big")
    assert (out[new_rows] == np.array(["b1", "b2", "", ""], object)).all()
    assert (out[big_rows] == np.array(["n1", "n2", "", ""], object)).all()
    assert (out[~changed] == history[~changed]).all()
    assert np.array_equal(cross_line_histories(history, lines, catalogue, 0.5, seed=0), out)
    assert (cross_line_histories(history, lines, catalogue, 0.0, seed=0) == history).all()
    with pytest.raises(MdrecError, match=r"must be in \[0, 1\]"):
        cross_line_histories(history, lines, catalogue, 1.5, seed=0)


def test_cross_line_share_is_refused_for_a_ctr_model(tmp_path, tiny_spec_path, tiny_splits):
    from conftest import tiny_config
    from mdrec.workflows.train import train_run

    with pytest.raises(MdrecError, match="shapes a retrieval model's queries; 'shared_bottom' is a CTR model"):
        train_run(tiny_spec_path, tiny_config(tiny_splits, cross_line_share=0.5), tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_a_run_written_before_a_config_field_existed_resumes_when_the_field_keeps_its_default(tmp_path):
    import json
    from dataclasses import asdict

    from mdrec.training.run import RunDir, TrainConfig

    run = RunDir(tmp_path / "run")
    run.path.mkdir()
    old = asdict(TrainConfig(model="two_tower", train="t.csv"))
    del old["cross_line_share"]                      # as config.json was written before the field
    run.config_path.write_text(json.dumps({"config": old, "data_fingerprints": {}}))
    run.prepare(TrainConfig(model="two_tower", train="t.csv"), {})          # the same run: resumes
    with pytest.raises(MdrecError, match=r"changed: cross_line_share"):
        run.prepare(TrainConfig(model="two_tower", train="t.csv", cross_line_share=0.5), {})


def test_a_run_trained_on_the_target_line_alone_is_scored_on_its_own_test_rows(tmp_path, capsys, monkeypatch):
    import mdrec.workflows.train as train_workflow
    from mdrec.training.run import TrainConfig
    from mdrec.workflows.train import train_run

    fits: list[int] = []
    monkeypatch.setattr(train_workflow, "fit_baselines", lambda *a, **kw: fits.append(1) or [])

    # Lines not listed in the spec: the run then knows only the lines of its training data.
    (tmp_path / "spec.yaml").write_text(SPEC.replace(", values: [big, new]", ""))
    _two_line_log(n_users=120, seed=1).to_csv(tmp_path / "log.csv", index=False)
    split_files(tmp_path / "spec.yaml", tmp_path / "log.csv", tmp_path / "split", by="cold_users",
                source_line="big", target_line="new", cold_fraction=0.3, seed=0)
    alone = {}
    for name in ("train", "valid", "test"):   # the no-transfer model's data: the target line's rows
        frame = pd.read_parquet(tmp_path / "split" / f"{name}.parquet")
        alone[name] = tmp_path / f"alone-{name}.parquet"
        frame[frame["domain"] == "new"].to_parquet(alone[name])
    config = TrainConfig(model="two_tower", train=str(alone["train"]), valid=str(alone["valid"]),
                         test=str(alone["test"]), epochs=1, batch_size=16, hyperparameters={"embedding_dim": 4})
    # As bench/cold_start.py trains its runs: the table fits the sanity rows once, the run none.
    metrics = train_run(tmp_path / "spec.yaml", config, tmp_path / "alone", log=lambda *_: None, sanity_rows=False)
    assert fits == [] and metrics["baselines"] == {} and metrics["tables"]["test"]
    files = [f"--{n}={tmp_path / 'split' / f'{n}.parquet'}" for n in ("train", "valid", "test")]
    command = ["cold-start", "--spec", str(tmp_path / "spec.yaml"), *files, "--target-line", "new",
               "--out", str(tmp_path / "report"), "--run", f"alone={tmp_path / 'alone'}"]
    # The split's test file holds 'big' rows the run never saw; its own test file holds the same
    # 'new' rows, so every cold user is scored.
    assert main(command) == 0
    table = pd.read_csv(tmp_path / "report" / "cold_start.csv").set_index(["method", "users"])
    assert table.loc[("alone", "cold"), "count"] == table.loc[("popularity (target line)", "cold"), "count"]
    capsys.readouterr()
    alone["test"].unlink()   # no file of its lines to score it on: one error naming the fix
    assert main(command) == 2
    err = capsys.readouterr().err
    assert "was trained on new only" in err and "--test" in err and "Traceback" not in err


def test_the_ceiling_row_is_never_the_reference_and_measures_each_transfer_rows_share_of_the_gap():
    from mdrec.workflows.cold_start import CEILING, POPULARITY, ColdStartResult, Method

    groups = np.array(["cold", "cold", "warm"])
    per_user = {POPULARITY: {"ndcg@10": np.array([0.1, 0.1, 0.2])},
                "knn": {"ndcg@10": np.array([0.2, 0.3, 0.2])},
                "alone": {"ndcg@10": np.array([0.0, 0.1, 0.3])},
                CEILING: {"ndcg@10": np.array([0.6, 0.6, 0.9])}}
    methods = [Method(POPULARITY, transfer=False, learned=False), Method("knn", transfer=True, learned=False),
               Method("alone", transfer=False, learned=True),
               Method(CEILING, transfer=False, learned=False, ceiling=True)]
    result = ColdStartResult(methods, per_user, np.array(["a", "b", "c"]), groups)
    # The ceiling leads every group but is a bound, not a row without transfer to beat.
    assert result.best_without_transfer("cold") == POPULARITY
    assert result.best_without_transfer("warm") == "alone"
    # cold: knn 0.25 against popularity 0.1 and the ceiling 0.6 -> (0.25 - 0.1) / 0.5
    assert result.share_of_gap("cold") == pytest.approx({"knn": 0.3})
    assert result.share_of_gap("warm") == pytest.approx({"knn": 0.0})
    without = ColdStartResult(methods[:3], {k: v for k, v in per_user.items() if k != CEILING}, result.users, groups)
    assert without.share_of_gap("cold") == {}
