"""A seeded synthetic multi-business-line click log whose click model is known.

A company runs several business lines ("domains": main app, mini-program, live stream, grocery...)
that share user accounts and partly share catalogues. :func:`generate` simulates one impression
log for all of them. Because the true click probability of every impression is known, the log can
state the best achievable (Bayes) AUC per domain, which tells a benchmark how much headroom a model
has left.

Generative story (all randomness from ``numpy.random.default_rng(config.seed)``):

Users
    Shared latent factor ``u`` (``latent_dim`` components, each N(0, 1/sqrt(latent_dim)) so that a
    dot product of two factors has variance 1), a bias ``user_bias`` ~ N(0, 0.35^2), a home domain
    (systematic sampling over activity, so home traffic follows the configured shares) and, for
    exactly ``user_overlap`` of the users, 1+ further domains (small domains are picked more often
    than their traffic share: their users are mostly users of the big app too). A user's events
    are split over their domains with the home domain weighted 4x, per-domain weights fitted so
    domain totals match ``domain_shares``. Activity is Zipf-Mandelbrot: weight
    (rank + 1 + num_users/50)^-zipf_exponent times the length of the user's active window, plus a
    floor of min(5, impressions/users) events per user. Every user's first event is at their arrival time: uniform in the first 60% of the
    time span, or in [80%, 95%] for the ``cold_user_share`` cold users. Inside a user's window,
    event times follow a day/night (UTC hour) profile. ``age_group`` and ``gender`` are noisy
    functions of ``u``, so they help with cold users.
Items
    Shared latent factor ``v``, bias ``item_bias`` = 0.25 * popularity + N(0, 0.35^2). Content is
    generated FROM ``v`` so that it generalises to cold items: ``category`` = argmax(C v + noise);
    ``tags`` = the 1-4 best of (T v + noise); ``title`` = 3-8 words drawn from word groups tied to
    the category, to the sign of the item's strongest latent directions, or filler words;
    ``price`` = lognormal(mu_category + 0.3 p.v, 0.35); ``item_emb`` = 8 floats, a noisy linear
    projection P v + 0.5 Q[category] + N(0, 0.25^2).
Catalogues
    Each domain has a catalogue sized like its traffic (at least min(50, num_items / (2 domains))
    items). About ``catalogue_overlap`` of each catalogue is shared: shared items are in exactly
    two catalogues (a domain larger than all others together cannot reach the share). An item has
    one id in every catalogue it is in. A domain's impressions only show its own catalogue, with
    Zipf-Mandelbrot popularity inside the catalogue (shared items are popular in both domains,
    with noise). ``cold_item_share`` of the items are introduced at a time in [80%, 95%] of the
    span and are never shown before that.
Clicks
    Per domain d, a user shift ``s_{u,d}`` and an item shift ``t_{i,d}`` (same distribution as
    ``u``/``v``), and::

        logit = b_d + scale_d * (u + shift*s_{u,d}).(v + shift*t_{i,d}) / (1 + shift^2)
                    + user_bias + item_bias + device_effect[d, device]
        click ~ Bernoulli(sigmoid(logit))

    The division by 1 + shift^2 keeps the interaction's variance independent of ``domain_shift``;
    the correlation of a user's factors between two domains is 1 / (1 + shift^2). ``scale_d`` is
    ``1.0`` times a per-domain factor in [0.85, 1.15]; ``b_d`` is solved so that the domain's mean
    click probability hits a target CTR between 4% and 12% (targets differ between domains). With
    the defaults each domain's Bayes AUC is about 0.76-0.82. ``device`` is mostly the user's
    phone (ios/android) with a per-domain share of "web".

Exposure (sequential taste)
    A user's first impression, and every impression with probability 1 - ``related_share``, shows
    a popular item of the line (the popularity feed above). Otherwise it comes from the "related to
    your recent clicks" shelf: an anchor among the user's last ``recent_clicks`` clicks in any line
    (the newest twice as likely as the one before, and so on), then one of the anchor's
    ``related_items`` related items in the impression's line, uniformly. Related items are the
    nearest by an item "sequel" factor ``w`` (``latent_dim`` components, independent of ``v``), so
    which item comes next is learnable from the order of a user's clicks (and across lines: a
    big-line click fills a small line's shelf), not from the taste factors. A related item not yet
    introduced falls back to the popularity feed. The click on a shown item follows the click model
    above, which does not read the history: the true probability stays the ceiling of a CTR model.
    ``b_d`` is solved on the popularity feed's items; the shelf moves a line's realised CTR a little
    (``meta.domains[d].ctr``).

The true probability is NOT a column of the frame; it is kept in ``SyntheticLog.true_probability``
for tests and benchmarks.

Modules: :mod:`~mdrec.data.synthetic.config` (knobs, presets, validation),
:mod:`~mdrec.data.synthetic.users` and :mod:`~mdrec.data.synthetic.items` (the population),
:mod:`~mdrec.data.synthetic.clicks` (click model and exposure), :mod:`~mdrec.data.synthetic.generator`
(:func:`generate`), :mod:`~mdrec.data.synthetic.quality` (achievable AUC and the meta),
:mod:`~mdrec.data.synthetic.output` (:class:`SyntheticLog`, its split, :func:`write`).
"""
from __future__ import annotations

from mdrec.data.synthetic.config import (AGE_GROUPS, COLD_FRACTION, COLUMNS, DEVICES, PRESETS, SyntheticConfig,
                                         preset)
from mdrec.data.synthetic.generator import generate
from mdrec.data.synthetic.output import SyntheticLog, time_split, write
from mdrec.data.synthetic.quality import bayes_auc, expected_bayes_auc

__all__ = ["AGE_GROUPS", "COLD_FRACTION", "COLUMNS", "DEVICES", "PRESETS", "SyntheticConfig", "SyntheticLog",
           "bayes_auc", "expected_bayes_auc", "generate", "preset", "time_split", "write"]
