""":func:`generate`: the seeded simulation of the whole log, from users and items to the frame and
its meta (the story is in the package doc)."""
from __future__ import annotations

import numpy as np
import pandas as pd

from mdrec.data.synthetic.ceiling import ClickTruth
from mdrec.data.synthetic.clicks import ClickModel, expose_and_click, related_items, sample_devices, sample_items
from mdrec.data.synthetic.config import AGE_GROUPS, DEVICES, SyntheticConfig
from mdrec.data.synthetic.items import make_items
from mdrec.data.synthetic.output import SyntheticLog
from mdrec.data.synthetic.quality import describe
from mdrec.data.synthetic.users import make_user_events, make_users
from mdrec.errors import MdrecError


def generate(config: SyntheticConfig | None = None) -> SyntheticLog:
    """Simulate the log described in the package docstring. Same config -> identical frame."""
    cfg = config if config is not None else SyntheticConfig()
    if not isinstance(cfg, SyntheticConfig):
        raise MdrecError(f"generate() needs a SyntheticConfig (got {type(cfg).__name__})")
    # Every draw comes from this one generator, in a fixed order: reordering any step below
    # changes the log.
    rng = np.random.default_rng(cfg.seed)
    shares = np.asarray(cfg.domain_shares, dtype=np.float64)
    comp_std = cfg.latent_dim ** -0.25  # factor dot products then have variance 1

    users = make_users(rng, cfg, comp_std)
    user_of, dom, when = make_user_events(rng, cfg, users, shares)
    items = make_items(rng, cfg, comp_std, shares)
    item_of = sample_items(rng, cfg, items, dom, when)
    device = sample_devices(rng, len(cfg.domains), users, user_of, dom)

    # Click model: per-domain shifts and biases; b_d solved on the popularity feed's items.
    model = ClickModel(rng, cfg, users, items, comp_std)
    model.solve_biases(user_of, item_of, dom, device)
    related = related_items(rng, cfg, items)
    item_of, shelf, logit, click = expose_and_click(rng, cfg, items, related, user_of, dom, when, item_of,
                                                     model.logit, device)
    prob = 1.0 / (1.0 + np.exp(-logit))
    truth = ClickTruth(config=cfg, model=model, user_ids=users["ids"], item_ids=items["ids"],
                       catalogues=items["catalogues"], feed_weights=items["weights"], intro=items["intro"],
                       related=related, user_of=user_of, line_of=dom, when=when, device=device, item_of=item_of,
                       click=click)

    # Timestamps: whole seconds; a stable sort keeps the (deterministic) generation order on ties.
    span = cfg.days * 86400
    timestamp = cfg.start_timestamp + np.floor(when * span).astype(np.int64)
    order = np.argsort(timestamp, kind="stable")
    user_of, item_of, dom, device = user_of[order], item_of[order], dom[order], device[order]
    timestamp, click, prob, shelf = timestamp[order], click[order], prob[order], shelf[order]

    frame = _frame(cfg, users, items, user_of, item_of, dom, device, timestamp, click)
    catalogues = {name: tuple(items["ids"][items["catalogues"][d]]) for d, name in enumerate(cfg.domains)}
    cold_users = tuple(users["ids"][users["cold"]])
    cold_items = tuple(items["ids"][items["intro"] > 0])
    meta = describe(cfg, frame, prob, user_of, item_of, dom, items, users, model.describe(cfg, shelf, click))
    return SyntheticLog(frame=frame, meta=meta, true_probability=prob, catalogues=catalogues,
                        cold_users=cold_users, cold_items=cold_items, truth=truth)


def _frame(cfg: SyntheticConfig, users: dict, items: dict, user_of: np.ndarray, item_of: np.ndarray,
           dom: np.ndarray, device: np.ndarray, timestamp: np.ndarray, click: np.ndarray) -> pd.DataFrame:
    """The impressions as a frame with columns :data:`COLUMNS`; every argument after ``items`` is
    one value per impression [n], in the frame's row order."""
    def take(labels, index):
        return pd.array(np.asarray(labels, dtype=object), dtype="str").take(index)

    return pd.DataFrame({
        "user_id": take(users["ids"], user_of),
        "item_id": take(items["ids"], item_of),
        "domain": take(cfg.domains, dom),
        "timestamp": timestamp,
        "click": click,
        "age_group": take(AGE_GROUPS, users["age"][user_of]),
        "gender": take(("f", "m", "u"), users["gender"][user_of]),
        "device": take(DEVICES, device),
        "category": take(items["category_names"], items["category"][item_of]),
        "tags": take(items["tags"], item_of),
        "title": take(items["title"], item_of),
        "price": items["price"][item_of],
        "item_emb": take(items["emb"], item_of),
    })
