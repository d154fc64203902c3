"""Tests of the synthetic multi-domain click log (mdrec.data.synthetic)."""
from __future__ import annotations

import json
from collections import Counter, defaultdict

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from mdrec.data import synthetic
from mdrec.data.synthetic import (COLUMNS, SyntheticConfig, SyntheticLog, bayes_auc,
                                  expected_bayes_auc, generate, write)
from mdrec.errors import MdrecError

SMALL = dict(num_users=800, num_items=600, num_impressions=30_000)


@pytest.fixture(scope="module")
def cfg() -> SyntheticConfig:
    return SyntheticConfig(seed=7, **SMALL)


@pytest.fixture(scope="module")
def log(cfg) -> SyntheticLog:
    return generate(cfg)


def _cold_cut(cfg: SyntheticConfig) -> float:
    return cfg.start_timestamp + 0.8 * cfg.days * 86400


# ---------------------------------------------------------------- determinism and schema


def test_same_seed_gives_identical_log_and_other_seed_differs(cfg, log):
    again = generate(cfg)
    pd.testing.assert_frame_equal(log.frame, again.frame, check_exact=True)
    np.testing.assert_array_equal(log.true_probability, again.true_probability)
    assert json.dumps(log.meta, sort_keys=True) == json.dumps(again.meta, sort_keys=True)

    other = generate(SyntheticConfig(seed=8, **SMALL))
    assert not log.frame.equals(other.frame)
    assert not np.array_equal(log.frame["click"].to_numpy()[:5000], other.frame["click"].to_numpy()[:5000])


def test_columns_dtypes_and_formats(cfg, log):
    f = log.frame
    assert list(f.columns) == list(COLUMNS)
    assert len(f) == cfg.num_impressions
    assert isinstance(f.index, pd.RangeIndex)
    assert f["timestamp"].dtype == np.int64 and f["click"].dtype == np.int64
    assert f["price"].dtype == np.float64
    for col in ("user_id", "item_id", "domain", "age_group", "gender", "device", "category", "tags",
                "title", "item_emb"):
        assert pd.api.types.is_string_dtype(f[col]), col
        assert isinstance(f[col].iloc[0], str), col
        assert not f[col].isna().any(), col
    # The true probability must not leak into the model inputs.
    assert not any("prob" in c or "logit" in c for c in f.columns)

    assert f["timestamp"].is_monotonic_increasing
    assert set(f["click"].unique()) == {0, 1}
    assert f["user_id"].str.fullmatch(r"u\d{6}").all()
    assert f["item_id"].str.fullmatch(r"i\d{6}").all()
    assert set(f["domain"].unique()) == set(cfg.domains)
    assert set(f["age_group"].unique()) <= set(synthetic.AGE_GROUPS)
    assert f["age_group"].nunique() >= 5
    assert set(f["gender"].unique()) == {"f", "m", "u"}
    assert set(f["device"].unique()) == {"ios", "android", "web"}
    assert f["category"].str.fullmatch(r"c\d{2}").all()
    assert f["tags"].str.fullmatch(r"t\d{2}(\|t\d{2}){0,3}").all()
    assert f["title"].str.fullmatch(r"[a-z]+( [a-z]+){2,7}").all()
    assert f["item_emb"].str.fullmatch(r"-?\d+\.\d{4}( -?\d+\.\d{4}){7}").all()
    assert (f["price"] > 0).all()
    ts = f["timestamp"]
    assert ts.min() >= cfg.start_timestamp and ts.max() < cfg.start_timestamp + cfg.days * 86400

    # Tags within an item are distinct and sorted.
    for tags in f["tags"].drop_duplicates().head(300):
        parts = tags.split("|")
        assert parts == sorted(set(parts))


def test_user_and_item_features_are_constant_per_id(log):
    f = log.frame
    assert (f.groupby("user_id")[["age_group", "gender"]].nunique() == 1).all().all()
    item_cols = ["category", "tags", "title", "price", "item_emb"]
    assert (f.groupby("item_id")[item_cols].nunique() == 1).all().all()


def test_age_group_carries_signal_about_clicks(log):
    # Age is a noisy function of the user factor; its CTR should vary across buckets more than
    # chance would make it. Weak test: the spread of bucket CTRs is non-zero.
    rates = log.frame.groupby("age_group")["click"].mean()
    assert rates.max() - rates.min() > 0.005


def test_meta_is_json_serialisable_and_consistent(cfg, log):
    meta = json.loads(json.dumps(log.meta))  # no numpy types, no custom default needed
    assert meta["config"] == cfg.to_dict()
    assert meta["rows"] == len(log.frame)
    assert sum(d["rows"] for d in meta["domains"].values()) == len(log.frame)
    assert "formula" in meta["click_model"] and "sigmoid" in meta["click_model"]["formula"]
    for name, d in meta["domains"].items():
        rows = log.frame["domain"] == name
        assert d["ctr"] == pytest.approx(log.frame.loc[rows, "click"].mean())
        assert d["bayes_auc"] == pytest.approx(
            bayes_auc(log.true_probability[rows.to_numpy()], log.frame.loc[rows, "click"]))
    assert log.true_probability.shape == (len(log.frame),)


# ---------------------------------------------------------------- traffic, users, catalogues


def test_every_domain_present_with_configured_share(cfg, log):
    shares = log.frame["domain"].value_counts(normalize=True)
    for name, share in zip(cfg.domains, cfg.domain_shares):
        assert shares[name] == pytest.approx(share, abs=0.02), name


def test_domain_shares_hold_without_multi_domain_users():
    # With no shared users the domain totals come only from which users live where.
    cfg = SyntheticConfig(seed=3, user_overlap=0.0, **SMALL)
    shares = generate(cfg).frame["domain"].value_counts(normalize=True)
    for name, share in zip(cfg.domains, cfg.domain_shares):
        assert shares[name] == pytest.approx(share, abs=0.02), name


def _multi_domain_share(frame: pd.DataFrame) -> float:
    return float((frame.groupby("user_id")["domain"].nunique() > 1).mean())


@pytest.mark.parametrize("overlap", [0.2, 0.6])
def test_user_overlap_matches_config(overlap, cfg, log):
    if overlap == cfg.user_overlap:
        frame = log.frame
    else:
        frame = generate(SyntheticConfig(seed=11, user_overlap=overlap, **SMALL)).frame
    assert _multi_domain_share(frame) == pytest.approx(overlap, abs=0.02)


def test_users_have_enough_events(cfg, log):
    per_user = log.frame["user_id"].value_counts()
    assert per_user.index.size == cfg.num_users  # every user shows up
    assert per_user.min() >= 5
    # Zipf activity: the heaviest users see far more than the median user.
    assert per_user.max() > 5 * per_user.median()


def test_domain_rows_only_show_that_domains_catalogue(cfg, log):
    f = log.frame
    catalogues = {d: set(ids) for d, ids in log.catalogues.items()}
    assert set(catalogues) == set(cfg.domains)
    for name in cfg.domains:
        shown = set(f.loc[f["domain"] == name, "item_id"])
        assert shown <= catalogues[name], name
        exclusive = catalogues[name] - set().union(*(c for d, c in catalogues.items() if d != name))
        assert exclusive, name
        assert set(f.loc[f["item_id"].isin(exclusive), "domain"]) == {name}
    assert len(set().union(*catalogues.values())) == cfg.num_items


def test_catalogue_overlap_positive_and_zero_when_configured(cfg, log):
    f = log.frame
    shared_shown = (f.groupby("item_id")["domain"].nunique() > 1).sum()
    assert shared_shown > 0  # the same item id appears in two domains
    for name, d in log.meta["domains"].items():
        assert 0.1 < d["catalogue_overlap"] <= 0.5, name

    disjoint = generate(SyntheticConfig(seed=7, catalogue_overlap=0.0, **SMALL))
    assert (disjoint.frame.groupby("item_id")["domain"].nunique() == 1).all()


def test_domains_have_different_device_mix(log):
    web = log.frame.assign(web=log.frame["device"] == "web").groupby("domain")["web"].mean()
    assert web.max() - web.min() > 0.03


# ---------------------------------------------------------------- cold start


def test_cold_users_and_items_exist_and_only_appear_late(cfg, log):
    f = log.frame
    cut = _cold_cut(cfg)
    assert len(log.cold_users) == round(cfg.cold_user_share * cfg.num_users) > 0
    assert len(log.cold_items) == round(cfg.cold_item_share * cfg.num_items) > 0
    cold_user_rows = f["user_id"].isin(log.cold_users)
    cold_item_rows = f["item_id"].isin(log.cold_items)
    assert cold_user_rows.any() and cold_item_rows.any()
    assert (f.loc[cold_user_rows, "timestamp"] >= cut).all()
    assert (f.loc[cold_item_rows, "timestamp"] >= cut).all()
    # Warm users really were seen before the cut, so "cold" means something.
    first = f.groupby("user_id")["timestamp"].min()
    warm = first.drop(index=list(log.cold_users))
    assert (warm < cut).all()
    assert log.meta["cold"]["users_shown"] == len(log.cold_users)


# ---------------------------------------------------------------- click model


def test_label_rates_in_range_and_differ_between_domains(log):
    rates = log.frame.groupby("domain")["click"].mean()
    assert ((rates > 0.02) & (rates < 0.16)).all(), rates.to_dict()
    assert rates.max() - rates.min() > 0.02


def test_bayes_auc_per_domain_is_informative_but_not_trivial(cfg, log):
    rng = np.random.default_rng(0)
    p = log.true_probability
    for name in cfg.domains:
        rows = (log.frame["domain"] == name).to_numpy()
        y = log.frame["click"].to_numpy()[rows]
        auc = bayes_auc(p[rows], y)
        assert 0.6 < auc < 0.95, (name, auc)
        # The true probability beats a noisy copy of itself.
        logit = np.log(p[rows] / (1 - p[rows]))
        noisy = logit + rng.normal(0.0, 1.5, logit.size)
        assert auc >= roc_auc_score(y, noisy), name
        # The realised AUC is close to its expectation over label draws.
        assert abs(auc - expected_bayes_auc(p[rows])) < 0.05, name


def _brute_force_expected_auc(p: np.ndarray) -> float:
    num = den = 0.0
    for i in range(p.size):
        for j in range(p.size):
            if i == j:
                continue
            w = p[i] * (1 - p[j])
            den += w
            num += w * (1.0 if p[i] > p[j] else 0.5 if p[i] == p[j] else 0.0)
    return num / den


def test_expected_bayes_auc_matches_brute_force():
    rng = np.random.default_rng(42)
    p = rng.beta(1.0, 8.0, 200)
    assert expected_bayes_auc(p) == pytest.approx(_brute_force_expected_auc(p), abs=1e-9)
    tied = np.round(p, 2)  # many ties: they must count half
    assert expected_bayes_auc(tied) == pytest.approx(_brute_force_expected_auc(tied), abs=1e-9)
    assert expected_bayes_auc(np.full(10, 0.3)) == pytest.approx(0.5)


def test_metric_inputs_are_checked():
    with pytest.raises(MdrecError):
        bayes_auc([0.1, 0.2], [0, 0])
    with pytest.raises(MdrecError):
        expected_bayes_auc([0.1, 1.5])


# ---------------------------------------------------------------- split and files


def test_time_split_is_ordered_disjoint_and_complete(log):
    train, valid, test = log.split(0.1, 0.1)
    assert len(train) + len(valid) + len(test) == len(log.frame)
    assert train["timestamp"].max() < valid["timestamp"].min()
    assert valid["timestamp"].max() < test["timestamp"].min()
    pd.testing.assert_frame_equal(pd.concat([train, valid, test]), log.frame)
    n = len(log.frame)
    assert len(train) == pytest.approx(0.8 * n, abs=0.02 * n)
    assert len(test) == pytest.approx(0.1 * n, abs=0.02 * n)
    # Index is kept, so the true probability lines up with each part.
    assert len(log.true_probability[test.index]) == len(test)
    with pytest.raises(MdrecError, match="valid_fraction"):
        log.split(1.2, 0.1)
    with pytest.raises(MdrecError):
        log.split(0.5, 0.5)


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_write_round_trip(fmt, log, tmp_path):
    out = tmp_path / "synth"
    paths = write(log, out, fmt=fmt)
    assert set(paths) == {"log", "train", "valid", "test", "meta"}
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [f"{n}.{fmt}" for n in ("log", "train", "valid", "test")] + ["meta.json"])  # no temp files left

    def read(path):
        if fmt == "parquet":
            return pd.read_parquet(path)
        return pd.read_csv(path)

    back = read(paths["log"])
    pd.testing.assert_frame_equal(back, log.frame.reset_index(drop=True), check_exact=True)
    train, valid, test = log.split()
    for name, part in (("train", train), ("valid", valid), ("test", test)):
        pd.testing.assert_frame_equal(read(paths[name]), part.reset_index(drop=True), check_exact=True)
    meta = json.loads(paths["meta"].read_text())
    assert meta["domains"] == log.meta["domains"]
    assert sum(meta["split"]["rows"].values()) == len(log.frame)
    with pytest.raises(MdrecError, match="fmt"):
        write(log, out, fmt="xlsx")


# ---------------------------------------------------------------- validation


@pytest.mark.parametrize("kwargs, field", [
    (dict(domain_shares=(0.5, 0.3, 0.1, 0.05)), "domain_shares"),
    (dict(domain_shares=(0.5, 0.5)), "domain_shares"),
    (dict(domain_shares=(1.2, -0.1, -0.05, -0.05)), "domain_shares"),
    (dict(domains=("main",), domain_shares=(1.0,)), "domains"),
    (dict(domains=("main", "main"), domain_shares=(0.5, 0.5)), "domains"),
    (dict(user_overlap=1.5), "user_overlap"),
    (dict(catalogue_overlap=-0.1), "catalogue_overlap"),
    (dict(num_users=0), "num_users"),
    (dict(num_items=3.5), "num_items"),
    (dict(num_impressions=100, num_users=100), "num_impressions"),
    (dict(vocab_words=10), "vocab_words"),
    (dict(cold_user_share=0.9), "cold_user_share"),
    (dict(num_tags=3), "num_tags"),
    (dict(related_share=1.5), "related_share"),
    (dict(related_items=0), "related_items"),
    (dict(recent_clicks=0), "recent_clicks"),
])
def test_invalid_config_names_the_field(kwargs, field):
    with pytest.raises(MdrecError, match=rf"SyntheticConfig\.{field}\b"):
        SyntheticConfig(**kwargs)


def test_config_accepts_lists_and_tiny_configs_work():
    cfg = SyntheticConfig(domains=["a", "b"], domain_shares=[0.97, 0.03], num_users=50, num_items=20,
                          num_impressions=200, num_categories=2, num_tags=4, vocab_words=21)
    assert cfg.domains == ("a", "b")
    log = generate(cfg)
    assert set(log.frame["domain"]) == {"a", "b"}
    assert log.frame["title"].str.fullmatch(r"[a-z]+( [a-z]+){2,7}").all()
    json.dumps(log.meta)


def test_default_config_is_within_targets():
    log = generate()  # its speed: bench/synthetic_speed.py
    meta = log.meta
    assert meta["rows"] == 200_000
    assert meta["users"]["multi_domain_share"] == pytest.approx(0.6, abs=0.01)
    for name, d in meta["domains"].items():
        assert 0.03 <= d["ctr"] <= 0.15, name
        assert 0.70 <= d["expected_bayes_auc"] <= 0.85, name


# ---------------------------------------------------------------- sequential taste


def _next_click_recall(frame: pd.DataFrame, line: str = "main") -> tuple[float, float]:
    """Recall@10 of each user's last click on ``line`` (earlier ones removed from the ranking) by
    popularity and by a first-order Markov count (what followed the user's last two clicks before),
    both fitted on the earlier clicks."""
    clicks = frame[(frame["click"] == 1) & (frame["domain"] == line)]
    sequences = [list(s) for _, s in clicks.groupby("user_id", sort=True)["item_id"] if len(s) >= 2]
    popular = Counter(i for s in sequences for i in s[:-1])
    follows: dict[str, Counter] = defaultdict(Counter)
    for s in sequences:
        for a, b in zip(s[:-2], s[1:-1]):
            follows[a][b] += 1
    ranking = [i for i, _ in popular.most_common()]
    hits = np.zeros(2)
    for s in sequences:
        history, target = s[:-1], s[-1]
        seen = set(history)
        score = Counter({i: 1e-6 * n for i, n in popular.most_common(50)})
        for weight, anchor in zip((1.0, 0.5), reversed(history[-2:])):
            for item, n in follows[anchor].items():
                score[item] += weight * n
        hits += [target in [i for i in ranking[:10 + len(seen)] if i not in seen][:10],
                 target in [i for i, _ in score.most_common(10 + len(seen)) if i not in seen][:10]]
    return tuple(hits / len(sequences))


@pytest.fixture(scope="module")
def default_log() -> SyntheticLog:
    return generate()


def test_next_clicks_follow_recent_clicks_as_meta_states(default_log):
    exposure = default_log.meta["click_model"]["exposure"]
    assert {"rule", "related_share", "related_items", "recent_clicks"} <= set(exposure)
    assert 0.3 < exposure["shelf_share_of_clicks"] < 0.7
    # The planted rule is learnable: what followed an item before predicts what follows it next
    # (at least twice popularity on the default log), and without the shelf it does not.
    popularity, markov = _next_click_recall(default_log.frame)
    assert markov >= 2 * popularity, (markov, popularity)
    flat = generate(SyntheticConfig(related_share=0.0))
    assert flat.meta["click_model"]["exposure"]["shelf_share_of_impressions"] == 0.0
    popularity, markov = _next_click_recall(flat.frame)
    assert markov < 1.5 * popularity, (markov, popularity)


def test_shown_items_stay_in_their_line_and_clicks_ignore_the_history(cfg):
    generated = generate(cfg)
    frame = generated.frame
    catalogues = {d: set(items) for d, items in generated.catalogues.items()}
    # Every impression shows an item of its own line's catalogue, shelf or not.
    assert all(item in catalogues[d] for item, d in zip(frame["item_id"], frame["domain"]))
    # The click model does not read the history: the true probability of an impression depends on
    # (user, item, line, device) only, so equal tuples have equal probabilities.
    keys = frame[["user_id", "item_id", "domain", "device"]].astype(str).agg("|".join, axis=1)
    spread = pd.Series(generated.true_probability).groupby(keys.to_numpy()).agg(lambda p: p.max() - p.min())
    assert spread.max() < 1e-12


def test_transfer_long_preset_gives_the_big_line_long_click_histories():
    # bench/transfer.py's scenario: the source line must know its users (the "transfer" preset,
    # sized for the demo, leaves the median big-line user with 3 clicks), every small line has
    # a test split large enough to slice.
    frame = generate(synthetic.preset("transfer-long")).frame
    main = frame[frame["domain"] == "main"]
    assert main[main["click"] == 1].groupby("user_id").size().median() >= 10
    small = frame[frame["domain"] != "main"]
    assert small.groupby("domain").size().min() >= 45_000
    demo = generate(synthetic.preset("transfer")).frame
    demo_main = demo[(demo["domain"] == "main") & (demo["click"] == 1)]
    assert demo_main.groupby("user_id").size().median() < 10


def test_unknown_preset_names_the_choices():
    with pytest.raises(MdrecError, match="transfer-long"):
        synthetic.preset("long")


class _FixedClicks:
    """A click model whose probability depends on the item only (the ceiling's hand-worked case)."""

    def __init__(self, probability: list[float]):
        self.probability = np.asarray(probability)

    def logit(self, uu, ii, dd, dev):
        p = self.probability[ii]
        return np.log(p / (1 - p))


def test_ceiling_sums_feed_and_shelf_exposure_times_click_probability_by_hand():
    from mdrec.data.synthetic.ceiling import ClickTruth

    # Line "a" sells items 0-2 (feed weights 0.5 / 0.3 / 0.2; item 2 introduced at t = 0.5), line
    # "b" item 3. Related items in "a": of item 3 -> 1 and 2, of item 0 -> 2 twice. User 0: a "b"
    # impression clicked (item 3) at t = 0.1, an "a" impression at 0.2 clicked (item 0), one at 0.7.
    related = np.zeros((2, 4, 2), np.int64)
    related[0, 3], related[0, 0] = [1, 2], [2, 2]
    truth = ClickTruth(
        config=SyntheticConfig(domains=("a", "b"), domain_shares=(0.5, 0.5), related_share=0.5, recent_clicks=2,
                               related_items=2),
        model=_FixedClicks([0.5, 0.25, 0.1, 0.5]), user_ids=np.array(["u0"], object),
        item_ids=np.array(["i0", "i1", "i2", "i3"], object), catalogues=[np.array([0, 1, 2]), np.array([3])],
        feed_weights=[np.array([0.5, 0.3, 0.2]), np.array([1.0])], intro=np.array([0.0, 0.0, 0.5, 0.0]),
        related=related, user_of=np.zeros(3, np.int64), line_of=np.array([1, 0, 0]),
        when=np.array([0.1, 0.2, 0.7]), device=np.zeros(3, np.int64), item_of=np.array([3, 0, 1]),
        click=np.array([1, 1, 0]))
    # t = 0.2: feed over the introduced items [0.625, 0.375, 0]; the shelf (anchor item 3) offers
    # item 1 (1/2) and item 2 (1/2, not yet introduced: back to the feed), so
    # shown = 0.5 feed + 0.5 (shelf + 0.5 feed) = [0.46875, 0.53125, 0].
    # t = 0.7: anchors item 0 (2/3) and item 3 (1/3): shelf [0, 1/6, 5/6]; feed [0.5, 0.3, 0.2];
    # shown = [0.25, 0.15 + 1/12, 0.1 + 5/12].
    expected = np.array([(0.46875 + 0.25) * 0.5, (0.53125 + 0.15 + 1 / 12) * 0.25, (0.1 + 5 / 12) * 0.1])
    scores = truth.expected_clicks(["u0", "nobody"], "a", ["i2", "i0", "i1", "i3"])
    np.testing.assert_allclose(scores[0], [expected[2], expected[0], expected[1], 0.0])
    np.testing.assert_array_equal(scores[1], 0.0)  # an unknown user; "i3" is not in line a


def test_ceiling_expects_the_clicks_the_generator_made(cfg, log):
    # Summed over a line's users, the expected clicks per item are what the generator drew, within
    # Poisson noise (mean squared z 1.32 here). Measured on this log: leaving the shelf out gives
    # 3.18, ignoring the items' introduction times 1.89.
    line = cfg.domains[0]
    frame = log.frame
    users = list(frame.loc[frame["domain"] == line, "user_id"].unique())
    items = list(log.catalogues[line])
    expected = log.truth.expected_clicks(users, line, items).sum(0)
    clicks = frame[(frame["domain"] == line) & (frame["click"] == 1)]
    realised = clicks["item_id"].value_counts().reindex(items, fill_value=0).to_numpy()
    assert abs(expected.sum() - realised.sum()) < 4 * np.sqrt(realised.sum())
    busy = expected > 5
    z = (realised[busy] - expected[busy]) / np.sqrt(expected[busy])
    assert busy.sum() > 15 and np.mean(z ** 2) < 1.7, np.mean(z ** 2)
