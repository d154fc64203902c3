"""The sanity rows of every comparison table, each fitted on the training split only.

CTR: :class:`MeanBaseline` (smoothed user and item click rates). Retrieval: popularity per line
(``mdrec.evaluation.ranking.popularity_scores``), :class:`ItemKNN` and :class:`EASE`, fitted and
chosen on validation by :func:`fit_baselines`.
"""
from mdrec.evaluation.baselines.ease import EASE, TooLarge
from mdrec.evaluation.baselines.itemknn import ItemKNN
from mdrec.evaluation.baselines.mean import MeanBaseline

__all__ = ["EASE", "ItemKNN", "MeanBaseline", "TooLarge"]
