"""Offline A/B: the statistics are right (against scikit-learn, a direct DeLong, known answers, and
by simulation: nominal false-positive rate, power), bad input fails clearly, and two tiny runs
compare end to end into report.md / report.html / summary.json."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy.stats import norm
from sklearn.metrics import roc_auc_score

from conftest import TINY_SPEC, tiny_frame, write_tiny_splits
from mdrec.cli import main
from mdrec.errors import MdrecError
from mdrec.evaluation import stats
from mdrec.evaluation.ab_statistics import NO_DIFFERENCE, compare_scores, ips_table
from mdrec.evaluation.metrics import gauc
from mdrec.workflows.ab import ab_test


# --------------------------------------------------------------------------------------------
# primitives
# --------------------------------------------------------------------------------------------
def test_weighted_auc_and_group_aucs_match_sklearn_and_gauc():
    rng = np.random.default_rng(0)
    n = 500
    y = (rng.random(n) < 0.3).astype(float)
    s = np.round(rng.random(n) + 0.4 * y, 1)  # rounded: many ties, which count 1/2
    prepared = stats.SortedScores.of(y, s)
    assert stats.weighted_auc(prepared, np.ones((1, n)))[0] == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    w = rng.random((3, n))
    for row in w:
        got = stats.weighted_auc(prepared, row[None])[0]
        assert got == pytest.approx(roc_auc_score(y, s, sample_weight=row), abs=1e-12)
    # integer weights = repeating rows, which is what a bootstrap replicate is
    counts = rng.integers(0, 3, n)
    repeated = np.repeat(np.arange(n), counts)
    assert stats.weighted_auc(prepared, counts[None].astype(float))[0] == pytest.approx(
        roc_auc_score(y[repeated], s[repeated]), abs=1e-12)
    users = rng.integers(0, 40, n)
    auc_u, size, valid = stats.group_aucs(y, s, users, 40)
    expected = gauc(y, s, users)
    assert (size[valid] * auc_u[valid]).sum() / size[valid].sum() == pytest.approx(expected.value, abs=1e-12)
    assert int((~valid & (size > 0)).sum()) == expected.groups_excluded


def _direct_delong(y, a, b):
    """O(n^2) DeLong straight from the definition (placements from the full comparison matrix)."""
    def placements(s):
        psi = (s[y == 1][:, None] > s[y == 0][None]) + 0.5 * (s[y == 1][:, None] == s[y == 0][None])
        return psi.mean(1), psi.mean(0), psi.mean()
    a10, a01, auc_a = placements(a)
    b10, b01, auc_b = placements(b)
    var = np.var(b10 - a10, ddof=1) / len(a10) + np.var(b01 - a01, ddof=1) / len(a01)
    return auc_b - auc_a, np.sqrt(var)


def test_delong_matches_a_direct_implementation():
    rng = np.random.default_rng(1)
    n = 600
    y = (rng.random(n) < 0.25).astype(float)
    a = np.round(rng.normal(size=n) + 0.8 * y, 1)
    b = np.round(rng.normal(size=n) + 1.0 * y, 1)
    result = stats.delong_test(y, a, b)
    delta, se = _direct_delong(y, a, b)
    assert result.auc_a == pytest.approx(roc_auc_score(y, a), abs=1e-12)
    assert result.delta == pytest.approx(delta, abs=1e-12)
    assert result.se == pytest.approx(se, rel=1e-9)
    assert result.p_value == pytest.approx(2 * norm.sf(abs(delta) / se), rel=1e-9)
    # one row per cluster: the clustered variance is the same up to small-sample factors
    assert stats.delong_test(y, a, b, groups=np.arange(n)).se == pytest.approx(se, rel=0.01)


def test_delong_and_bootstrap_agree_on_a_known_answer():
    # Binormal scores: AUC = Phi(d / sqrt(2)) exactly, so the true delta is known.
    rng = np.random.default_rng(2)
    n = 4000
    y = (rng.random(n) < 0.3).astype(float)
    a = 1 / (1 + np.exp(-(rng.normal(size=n) + 0.8 * y)))  # monotone maps keep AUC; probabilities
    b = 1 / (1 + np.exp(-(rng.normal(size=n) + 1.1 * y)))
    truth = norm.cdf(1.1 / np.sqrt(2)) - norm.cdf(0.8 / np.sqrt(2))
    delong = stats.delong_test(y, a, b)
    rep = stats.paired_user_bootstrap(y, a, b, np.arange(n), {"ALL": np.ones(n, bool)}, n_bootstrap=400)["ALL"]["auc"]
    deltas = rep[:, 1] - rep[:, 0]
    assert np.std(deltas, ddof=1) == pytest.approx(delong.se, rel=0.12)
    low, high = stats.percentile_interval(deltas)
    assert low < truth < high
    assert abs(delong.delta - truth) < 1.96 * delong.se


def test_holm_hand_example_and_mde():
    # sorted: 0.005*4=0.02, 0.01*3=0.03, 0.03*2=0.06, 0.04*1=0.04 -> monotone 0.06
    np.testing.assert_allclose(stats.holm([0.01, 0.04, 0.03, 0.005]), [0.03, 0.06, 0.06, 0.02])
    np.testing.assert_allclose(stats.holm([0.5, np.nan, 0.01]), [0.5, np.nan, 0.02])  # NaN: not in the family
    assert stats.mde(1.0, alpha=0.05) == pytest.approx(1.959964 + 0.841621, abs=1e-5)


def test_bootstrap_resamples_users_not_events():
    # 40 users x 25 identical events: the data hold 40 independent observations, not 1000.
    rng = np.random.default_rng(3)
    users = np.repeat(np.arange(40), 25)
    y = (rng.random(40) < 0.4).astype(float)[users]
    a = rng.random(40)[users]
    b = np.clip(a + rng.normal(0, 0.2, 40)[users], 0.01, 0.99)
    everything = {"ALL": np.ones(len(users), bool)}
    width = {}
    for name, units in (("users", users), ("events", np.arange(len(users)))):
        rep = stats.paired_user_bootstrap(y, a, b, units, everything, n_bootstrap=300)["ALL"]["logloss"]
        low, high = stats.percentile_interval(rep[:, 1] - rep[:, 0])
        width[name] = high - low
    assert width["users"] > 3 * width["events"]  # about sqrt(25) = 5 times wider


# --------------------------------------------------------------------------------------------
# calibration of the tests by simulation
# --------------------------------------------------------------------------------------------
def _draw(rng, effect=0.0, n_users=80, per_user=10):
    """A log with user effects, scored by two noisy models; the treatment's noise is smaller by
    ``effect`` (0 = A/A: equally good models). Model errors are partly per user, so one user's
    rows are correlated in the delta too."""
    users = np.repeat(np.arange(n_users), per_user)
    n = len(users)
    truth = -1.0 + rng.normal(0, 1, n_users)[users] + rng.normal(0, 1, n)
    y = (rng.random(n) < 1 / (1 + np.exp(-truth))).astype(float)

    def model(noise):
        return 1 / (1 + np.exp(-(truth + 1.5 * rng.normal(0, noise, n_users)[users] + rng.normal(0, noise, n))))
    return y, model(1.0), model(1.0 - effect), users


def test_aa_false_positive_rate_is_nominal_and_a_planted_improvement_is_detected():
    rng = np.random.default_rng(0)
    clustered, iid = [], []
    for _ in range(300):
        y, a, b, users = _draw(rng)
        clustered.append(stats.delong_test(y, a, b, groups=users).p_value < 0.05)
        iid.append(stats.delong_test(y, a, b).p_value < 0.05)
    assert 0.02 <= np.mean(clustered) <= 0.09, np.mean(clustered)
    assert np.mean(iid) > np.mean(clustered) + 0.02  # ignoring users' correlation over-rejects

    # The whole verdict machinery (bootstrap intervals, DeLong, one slice): A/A and a planted effect.
    flagged = {"auc": [], "logloss": []}
    for i in range(150):
        y, a, b, users = _draw(rng)
        table = compare_scores(y, a, b, users, n_bootstrap=150, seed=i)[0].set_index("metric")
        for metric in flagged:
            flagged[metric].append(table.loc[metric, "verdict"] != NO_DIFFERENCE)
    for metric, flags in flagged.items():
        assert 0.01 <= np.mean(flags) <= 0.09, (metric, np.mean(flags))
    verdicts = []
    for i in range(60):
        y, a, b, users = _draw(rng, effect=0.5)
        verdicts.append(compare_scores(y, a, b, users, n_bootstrap=150, seed=i)[0].set_index("metric").loc["auc", "verdict"])
    assert verdicts.count("better") >= 0.7 * len(verdicts) and "worse" not in verdicts


# --------------------------------------------------------------------------------------------
# prediction files (no model needed), IPS, bad input
# --------------------------------------------------------------------------------------------
@pytest.fixture
def prediction_case(tmp_path):
    """A tiny log, its spec, a history log, and two prediction files keyed like the log."""
    (tmp_path / "tiny.yaml").write_text(TINY_SPEC)
    frame = tiny_frame(700, seed=5)
    history, log = frame.iloc[:400], frame.iloc[400:].reset_index(drop=True)
    history = history[~history["user_id"].isin([f"u{i}" for i in range(8)])]  # 8 users are new
    history.to_csv(tmp_path / "history.csv", index=False)
    rng = np.random.default_rng(0)
    signal = log["click"].to_numpy() * 0.3
    log = log.assign(production=np.clip(0.2 + 0.1 * rng.random(len(log)), 0, 1),
                     shown_p=1.0 / log.groupby("user_id")["item_id"].transform("size"))
    log.to_csv(tmp_path / "log.csv", index=False)  # the log itself carries production's scores
    keys = log[["user_id", "item_id", "domain", "ts"]]
    good = keys.assign(score=np.clip(0.2 + signal + 0.3 * rng.random(len(log)), 0, 1)).sample(frac=1, random_state=0)
    good.to_parquet(tmp_path / "b.parquet", index=False)  # any row order: joined on the keys
    return tmp_path, log, good


def test_prediction_files_compare_with_segments_slices_and_ips(prediction_case, capsys):
    folder, log, _ = prediction_case
    result = ab_test(folder / "log.csv", folder / "b.parquet", folder / "log.csv", spec=folder / "tiny.yaml",
                     score_column=("production", "score"), slices=["city"], history=folder / "history.csv",
                     n_bootstrap=200, propensity_column="shown_p")
    slices = list(result.verdict.index)
    assert slices[:4] == ["ALL", "domain=a", "domain=b", "domain=c"]
    for name in ("user=returning", "user=new", "lines=several", "prior_clicks=0", "city=x"):
        assert name in slices
    overall = result.metrics.set_index(["slice", "metric"])
    assert overall.loc[("ALL", "auc"), "control"] == pytest.approx(
        roc_auc_score(log["click"], log["production"]), abs=1e-12)
    assert overall.loc[("ALL", "auc"), "verdict"] == "better"   # B carries the label signal
    ips = result.ips
    ctr = log["click"].mean()
    # logging policy uniform over each user's rows; the control's near-constant scores give ~CTR,
    # the treatment ranks clicked items higher, so its estimated click rate is higher
    assert ips.loc["logging policy (observed CTR)", "ips"] == pytest.approx(ctr)
    assert ips.loc["treatment", "snips"] > ips.loc["control", "snips"] > 0.8 * ctr
    # uniform logging + constant scores: every importance weight is 1, IPS = SNIPS = observed CTR
    p0 = log["shown_p"].to_numpy()
    flat = ips_table(log["click"], p0, np.full(len(log), 0.3), np.full(len(log), 0.7), log["user_id"], n_bootstrap=50)
    assert flat.loc["treatment", "ips"] == pytest.approx(ctr) and flat.loc["treatment", "snips"] == pytest.approx(ctr)

    # both sides the same predictions: an A/A with zero delta everywhere
    assert main(["ab", "--control", str(folder / "b.parquet"), "--treatment", str(folder / "b.parquet"),
                 "--data", str(folder / "log.csv"), "--spec", str(folder / "tiny.yaml"), "--bootstrap", "50",
                 "--out", str(folder / "aa")]) == 0
    summary = json.loads((folder / "aa" / "summary.json").read_text())
    assert {row["verdict"] for row in summary["metrics"]} <= {NO_DIFFERENCE, "n/a"}
    assert all(row["delta"] == 0 for row in summary["metrics"] if row["delta"] is not None)
    out = capsys.readouterr().out
    assert "segment new vs returning users skipped" in out and "report:" in out


def _bad(folder, good, case) -> tuple[dict, str]:
    """ab_test arguments of a bad-input ``case`` and the message it must raise."""
    path = folder / "bad.csv"
    sides = {"control": path, "treatment": folder / "b.parquet", "score_column": "score", "slices": (),
             "propensity": None}
    if case == "missing key":
        good.drop(columns=["ts"]).to_csv(path, index=False)
        return sides, "prediction file lacks key column(s) 'ts'; it needs 'user_id', 'item_id', 'domain', 'ts'"
    if case == "missing row":
        good.iloc[1:].to_csv(path, index=False)
        return sides, "1 of the log's 300 rows have no prediction; first: log row"
    if case == "extra row":
        pd.concat([good, good.iloc[:2]]).to_csv(path, index=False)
        return sides, "2 prediction rows match no log row"
    if case == "nan score":
        good.assign(score=good["score"].where(np.arange(len(good)) != 7)).to_csv(path, index=False)
        return sides, "column 'score', row 8: score"
    sides["control"] = folder / "b.parquet"
    if case == "unknown slice":
        return dict(sides, slices=("colour",)), "--slice column 'colour' is not a feature of spec 'tiny'"
    if case == "no score column":
        return dict(sides, score_column="prob"), "no score column 'prob'"
    if case == "zero propensity":
        return dict(sides, propensity="click"), "propensity '0' is not a probability in (0, 1]"
    raise AssertionError(case)


@pytest.mark.parametrize("case", ["missing key", "missing row", "extra row", "nan score", "unknown slice",
                                  "no score column", "zero propensity"])
def test_bad_input_is_a_clear_error(prediction_case, case, capsys):
    folder, _, good = prediction_case
    args, message = _bad(folder, good, case)
    with pytest.raises(MdrecError) as info:
        ab_test(args["control"], args["treatment"], folder / "log.csv", spec=folder / "tiny.yaml",
                score_column=args["score_column"], slices=args["slices"], n_bootstrap=10,
                propensity_column=args["propensity"])
    assert message in str(info.value)
    extra = [f"--slice={c}" for c in args["slices"]] + ["--score-column", args["score_column"]]
    extra += ["--propensity", args["propensity"]] if args["propensity"] else []
    code = main(["ab", "--control", str(args["control"]), "--treatment", str(args["treatment"]), "--data",
                 str(folder / "log.csv"), "--spec", str(folder / "tiny.yaml"), "--bootstrap", "10",
                 "--out", str(folder / "r"), *extra])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err[-1].startswith("mdrec: error: ") and message in err[-1]
    if case == "unknown slice":
        assert "city" in err[-1]  # the error lists the columns there are


# --------------------------------------------------------------------------------------------
# end to end: two tiny runs (and an export) on the tiny log
# --------------------------------------------------------------------------------------------
def test_star_vs_shared_bottom_runs_end_to_end(tmp_path, capsys):
    from mdrec.training.run import TrainConfig
    from mdrec.workflows.export import export_run
    from mdrec.workflows.train import train_run

    (tmp_path / "tiny.yaml").write_text(TINY_SPEC)
    paths = write_tiny_splits(tmp_path)
    runs = {}
    for model in ("shared_bottom", "star"):
        config = TrainConfig(model=model, train=str(paths["train"]), valid=str(paths["valid"]),
                             test=str(paths["test"]), epochs=2, batch_size=32, learning_rate=5e-3, seed=0,
                             hyperparameters={"hidden": [16], "dropout": 0.0, "embeddings_l2": 0.0})
        runs[model] = tmp_path / model
        train_run(tmp_path / "tiny.yaml", config, runs[model], log=lambda *_: None)
    out = tmp_path / "reports" / "star-vs-sb"
    capsys.readouterr()  # training's progress lines
    assert main(["ab", "--control", str(runs["shared_bottom"]), "--treatment", str(runs["star"]),
                 "--data", str(paths["test"]), "--out", str(out), "--bootstrap", "200", "--slice", "city"]) == 0
    printed = capsys.readouterr().out
    assert printed.splitlines()[0].split()[:4] == ["slice", "rows", "users", "positives"]
    assert "user=returning" in printed and "city=x" in printed and "p (Holm)" in printed
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 2     # ROC + calibration, deltas per slice
    assert "Verdict per slice" in (out / "report.md").read_text()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["sides"]["treatment"]["model"] == "star" and summary["slices"][0]["rows"] == 90
    verdicts = {row["verdict"] for row in summary["metrics"]}
    assert verdicts <= {"better", "worse", NO_DIFFERENCE, "n/a", "untestable"}
    auc_all = next(r for r in summary["metrics"] if r["slice"] == "ALL" and r["metric"] == "auc")
    metrics = json.loads((runs["star"] / "metrics.json").read_text())
    star_auc = next(r["auc"] for r in metrics["tables"]["test"] if r["domain"] == "ALL")
    assert auc_all["treatment"] == pytest.approx(star_auc, abs=1e-9)  # the run's own test AUC

    # an export of the control scores the log as the run does: an A/A with zero difference
    export = export_run(runs["shared_bottom"], "ctr_sb", export_dir=tmp_path / "export", keep=0)
    result = ab_test(tmp_path / "export" / "ctr_sb", runs["shared_bottom"], paths["test"], n_bootstrap=50)
    assert result.sides["control"]["kind"] == "export" and result.sides["control"]["path"] == str(export)
    assert np.allclose(result.curves["control"], result.curves["treatment"], atol=1e-5)
    assert result.metrics["verdict"].isin([NO_DIFFERENCE, "n/a", "untestable"]).all()  # tiny slices: one class

    # A sanity row as the control: fitted on the treatment run's training file with the smoothing
    # the run chose on validation (metrics.json), so its AUC is the run's own baseline row.
    result = ab_test("baseline:mean", runs["star"], paths["test"], n_bootstrap=20)
    baseline_auc = next(r["auc"] for r in metrics["baseline"]["tables"]["test"] if r["domain"] == "ALL")
    auc_all = next(r for r in result.metrics.to_dict("records") if r["slice"] == "ALL" and r["metric"] == "auc")
    assert auc_all["control"] == pytest.approx(baseline_auc, abs=1e-9)
    assert any(f"alpha {metrics['baseline']['alpha']:g}" in note for note in result.notes)
    with pytest.raises(MdrecError, match=r"unknown sanity row 'baseline:itemknn' for a ctr model — use one of "
                                         r"baseline:mean, baseline:logistic"):
        ab_test("baseline:itemknn", runs["star"], paths["test"], n_bootstrap=20)
    with pytest.raises(MdrecError, match="the other side must be a run folder"):
        ab_test("baseline:mean", "baseline:logistic", paths["test"], n_bootstrap=20)
    with pytest.raises(MdrecError, match="baseline:logistic-graded: the run's label is not cut from a graded column"):
        ab_test("baseline:logistic-graded", runs["star"], paths["test"], n_bootstrap=20)


def test_two_retrieval_runs_compare_recall_and_ndcg_per_user(tmp_path, tiny_spec_path, tiny_splits):
    from mdrec.training.run import TrainConfig
    from mdrec.workflows.train import train_run

    runs = []
    for seed, epochs in ((0, 1), (1, 2)):
        config = TrainConfig(model="two_tower", train=str(tiny_splits["train"]), valid=str(tiny_splits["valid"]),
                             test=str(tiny_splits["test"]), epochs=epochs, batch_size=16, learning_rate=1e-2,
                             seed=seed, hyperparameters={"embedding_dim": 8, "hidden": [8]})
        runs.append(tmp_path / f"tt{seed}")
        train_run(tiny_spec_path, config, runs[-1], log=lambda *_: None)
    result = ab_test(runs[0], runs[1], tiny_splits["test"], out=tmp_path / "report", n_bootstrap=100)
    assert result.family == "retrieval"
    assert set(result.metrics["metric"]) == {"recall@10", "ndcg@10", "recall@50", "ndcg@50"}
    table = result.verdict
    assert table.index[0] == "ALL" and "queries" in table.columns and "Δrecall@10" in table.columns
    assert (tmp_path / "report" / "report.html").is_file()
    with pytest.raises(MdrecError, match="a retrieval model can only be compared with another retrieval model"):
        ab_test(runs[0], tiny_splits["test"], tiny_splits["test"], n_bootstrap=10)
    # ItemKNN as the control: the same queries, its recall the run's own ItemKNN row.
    result = ab_test("baseline:itemknn", runs[1], tiny_splits["test"], n_bootstrap=20)
    metrics = json.loads((runs[1] / "metrics.json").read_text())
    knn = metrics["baselines"]["baseline: ItemKNN (all lines)"]["tables"]["test"]
    recall = next(r for r in result.metrics.to_dict("records") if r["slice"] == "ALL" and r["metric"] == "recall@10")
    assert recall["control"] == pytest.approx(next(r["recall@10"] for r in knn if r["domain"] == "ALL"), abs=1e-9)
