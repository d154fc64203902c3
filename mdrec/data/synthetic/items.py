"""Items of the synthetic log: latent taste, bias, catalogue memberships, introduction times,
popularity inside each catalogue, and content generated from the taste factor so that it
generalises to cold items (see the package doc, "Items" and "Catalogues")."""
from __future__ import annotations

import math

import numpy as np

from mdrec.data.synthetic.config import COLD_FRACTION, SyntheticConfig
from mdrec.data.synthetic.users import zipf_weights

_EMB_DIM = 8


def make_items(rng, cfg: SyntheticConfig, comp_std: float, shares: np.ndarray) -> dict:
    """Per-item arrays (``num_items`` rows, k = ``latent_dim``): ``v`` [items, k], ``bias``,
    ``member`` bool [items, domains], ``catalogues`` (per domain: sorted item indices), ``weights``
    (per domain: popularity weight of each catalogue item), ``intro`` (introduction time as a
    fraction of the span, 0 for warm items), ``category``, ``category_names``, and the text columns
    ``tags``, ``title``, ``price``, ``emb``, ``ids``."""
    n_items, k = cfg.num_items, cfg.latent_dim
    v = rng.normal(0.0, comp_std, (n_items, k))
    popularity = rng.normal(size=n_items)
    bias = 0.25 * popularity + rng.normal(0.0, 0.35, n_items)
    member = _catalogue_membership(rng, cfg, shares)
    catalogues = [np.flatnonzero(member[:, d]) for d in range(member.shape[1])]

    # --- cold items: introduced at a time in [80%, 95%]; every domain keeps a warm item.
    intro = np.zeros(n_items)
    cold = rng.choice(n_items, int(round(cfg.cold_item_share * n_items)), replace=False)
    intro[cold] = rng.uniform(COLD_FRACTION + 0.001, 0.95, cold.size)
    for cat in catalogues:
        if np.all(intro[cat] > 0):
            intro[cat[0]] = 0.0

    # --- popularity inside each catalogue: shared items correlate across domains via `popularity`.
    weights = []
    for cat in catalogues:
        score = popularity[cat] + 0.5 * rng.normal(size=cat.size)
        rank = np.empty(cat.size)
        rank[np.argsort(-score, kind="stable")] = np.arange(cat.size)
        weights.append(zipf_weights(rank, cat.size, cfg.zipf_exponent))

    width = len(str(n_items - 1))
    ids = np.array([f"i{i:0{max(6, width)}d}" for i in range(n_items)], dtype=object)
    return {"v": v, "bias": bias, "member": member, "catalogues": catalogues, "weights": weights,
            "intro": intro, **_make_content(rng, cfg, v, comp_std), "ids": ids}


def _catalogue_membership(rng, cfg: SyntheticConfig, shares: np.ndarray) -> np.ndarray:
    """member[i, d]: item i is in line d's catalogue, bool [items, domains]. Memberships = items +
    shared items: each shared item is in exactly two catalogues, the rest in one."""
    n_items, n_dom, o = cfg.num_items, len(cfg.domains), cfg.catalogue_overlap
    min_cat = min(50, max(1, n_items // (2 * n_dom)))
    memberships = n_items / (1.0 - o / 2.0)
    planned = min_cat + np.floor((memberships - n_dom * min_cat) * shares)
    stubs = np.repeat(np.arange(n_dom), np.round(o * planned).astype(np.int64))
    pairs = []
    for _ in range(20):  # random stub matching; a stub paired with its own domain tries again
        stubs = rng.permutation(stubs)
        half = stubs.size // 2
        a, b = stubs[:half], stubs[half:2 * half]
        ok = a != b
        pairs.append(np.stack([a[ok], b[ok]], axis=1))
        stubs = np.concatenate([a[~ok], b[~ok]])
        if stubs.size < 2 or np.unique(stubs).size < 2:
            break
    pairs = np.concatenate(pairs) if pairs else np.zeros((0, 2), dtype=np.int64)
    n_shared = len(pairs)
    shared_per_dom = np.bincount(pairs.ravel(), minlength=n_dom)
    exclusive = _largest_remainder(n_items - n_shared, np.maximum(planned - shared_per_dom, 0.0) + 1e-9)
    slot = rng.permutation(n_items)  # ids do not encode the domain
    member = np.zeros((n_items, n_dom), dtype=bool)
    member[slot[:n_shared], pairs[:, 0]] = True
    member[slot[:n_shared], pairs[:, 1]] = True
    member[slot[n_shared:], np.repeat(np.arange(n_dom), exclusive)] = True
    return member


def _make_content(rng, cfg: SyntheticConfig, v: np.ndarray, comp_std: float) -> dict:
    """Category, tags, title, price and item_emb of every item, generated from v [items, k] so
    they carry over to cold items."""
    n_items, k = v.shape
    n_cat, n_tags = cfg.num_categories, cfg.num_tags
    category = np.argmax(v @ rng.normal(size=(k, n_cat)) + rng.normal(size=(n_items, n_cat)), axis=1)
    tag_score = v @ rng.normal(size=(k, n_tags)) + 0.7 * rng.normal(size=(n_items, n_tags))
    top_tags = np.argsort(-tag_score, axis=1, kind="stable")[:, :4]
    n_item_tags = rng.choice(4, n_items, p=[0.3, 0.35, 0.2, 0.15]) + 1
    tag_w, cat_w = max(2, len(str(n_tags - 1))), max(2, len(str(n_cat - 1)))
    tags = np.array(["|".join(f"t{t:0{tag_w}d}" for t in sorted(row[:m]))
                     for row, m in zip(top_tags.tolist(), n_item_tags.tolist())], dtype=object)
    category_names = [f"c{c:0{cat_w}d}" for c in range(n_cat)]
    title = _make_titles(rng, cfg, v, category)
    mu_cat = rng.uniform(1.5, 5.0, n_cat)
    price_dir = rng.normal(size=k)
    log_price = mu_cat[category] + 0.3 * (v @ (price_dir / np.linalg.norm(price_dir))) \
        + rng.normal(0.0, 0.35, n_items)
    price = np.maximum(np.round(np.exp(log_price), 2), 0.01)
    emb = v @ (rng.normal(size=(k, _EMB_DIM)) / math.sqrt(k) / comp_std) \
        + 0.5 * rng.normal(size=(n_cat, _EMB_DIM))[category] + rng.normal(0.0, 0.25, (n_items, _EMB_DIM))
    emb = np.round(emb, 4) + 0.0  # + 0.0 turns -0.0 into 0.0 so no "-0.0000" appears
    emb_text = np.array([" ".join(f"{x:.4f}" for x in row) for row in emb.tolist()], dtype=object)
    return {"category": category, "category_names": category_names, "tags": tags, "title": title,
            "price": price, "emb": emb_text}


def _largest_remainder(total: int, weights: np.ndarray) -> np.ndarray:
    """Integers proportional to ``weights`` that sum exactly to ``total``."""
    raw = total * weights / weights.sum()
    out = np.floor(raw).astype(np.int64)
    out[np.argsort(-(raw - out), kind="stable")[: total - out.sum()]] += 1
    return out


def _make_vocabulary(rng, size: int) -> list[str]:
    """``size`` distinct pronounceable lowercase words of 2 or 3 consonant-vowel syllables."""
    syllables = [c + v for c in "bdfgklmnprstvz" for v in "aeiou"]  # 70
    n_syl = len(syllables)
    words = []
    for p in rng.choice(n_syl ** 2 + n_syl ** 3, size=size, replace=False).tolist():
        if p < n_syl ** 2:
            words.append(syllables[p // n_syl] + syllables[p % n_syl])
        else:
            p -= n_syl ** 2
            words.append(syllables[p // n_syl ** 2] + syllables[(p // n_syl) % n_syl] + syllables[p % n_syl])
    return words


def _make_titles(rng, cfg: SyntheticConfig, v: np.ndarray, category: np.ndarray) -> np.ndarray:
    """3-8 word titles mixing category words, words of the item's strong latent directions
    (by sign) and filler, so the text carries signal about both category and v."""
    n_items, k, n_cat, size = len(v), cfg.latent_dim, cfg.num_categories, cfg.vocab_words
    vocab = _make_vocabulary(rng, size)
    # About 35% direction words, 40% category words, the rest (at least 3) filler.
    per_dir = max(1, min(int(0.35 * size) // (2 * k), (size - n_cat - 3) // (2 * k)))
    per_cat = max(1, min(int(0.4 * size) // n_cat, (size - 2 * k * per_dir - 3) // n_cat))
    dir_base = n_cat * per_cat
    filler_base = dir_base + 2 * k * per_dir
    n_filler = size - filler_base
    slots = 16  # candidate words per item; duplicates are dropped, then the first m kept
    kind = rng.choice(3, (n_items, slots), p=[0.4, 0.35, 0.25])
    cat_word = category[:, None] * per_cat + rng.integers(0, per_cat, (n_items, slots))
    strength = np.cumsum(v ** 2, axis=1)
    strength /= strength[:, -1:]
    dim = np.minimum((rng.random((n_items, slots))[:, :, None] > strength[:, None, :]).sum(-1), k - 1)
    sign = (np.take_along_axis(v, dim, axis=1) > 0).astype(np.int64)
    dir_word = dir_base + (2 * dim + sign) * per_dir + rng.integers(0, per_dir, (n_items, slots))
    filler_word = filler_base + rng.integers(0, n_filler, (n_items, slots))
    word = np.where(kind == 0, cat_word, np.where(kind == 1, dir_word, filler_word))
    length = rng.integers(3, 9, n_items)
    titles = []
    for row, m in zip(word.tolist(), length.tolist()):
        chosen = list(dict.fromkeys(row))[:m]
        extra = filler_base
        while len(chosen) < 3:  # only with tiny vocabularies
            if extra not in chosen:
                chosen.append(extra)
            extra += 1
        titles.append(" ".join(vocab[w] for w in chosen))
    return np.array(titles, dtype=object)
