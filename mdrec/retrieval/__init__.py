"""Top-K retrieval over a catalogue of candidate embeddings, exact or approximate (ScaNN).

Inputs everywhere: ``candidates`` float32 [N, d] (L2-normalised item embeddings), ``identifiers``
[N] (item ids), ``queries`` float32 [Q, d]; the score is the dot product. Per business line:
``membership`` bool [D, N] (an item may be in several lines' catalogues) and a line index per
query, int [Q]. A query of line d only ever gets items of d's catalogue.

The modules, by job:

- :mod:`mdrec.retrieval.exact`: :func:`exact_top_k`, blocked matmul + top-k (the ground truth;
  memory-safe at N=1e6, Q=1e4).
- :mod:`mdrec.retrieval.scann`: :class:`ScannSettings`, :func:`scann_config` and the tfrs
  :class:`ScaNN` layer they configure.
- :mod:`mdrec.retrieval.domain_index`: :func:`build_index`, a tensorflow-recommenders ``ScaNN`` or
  ``BruteForce`` layer over one catalogue; :class:`DomainIndex`, one index per line, routing each
  query in-graph and saving as a SavedModel (:func:`load_domain_index`).
- :mod:`mdrec.retrieval.tuning`: :func:`recall_against_exact`, :func:`measure_qps` and
  :func:`tune`, the cheapest ScaNN search setting that reaches a recall target, with the table.
- :mod:`mdrec.retrieval.searcher`: :func:`write_scann_searcher` / :func:`load_scann_searcher`, a
  standalone ScaNN folder (no TF Serving) that still loads after the folder is moved.
- :mod:`mdrec.retrieval.checks`: the checks of the input arrays they all share.

Missing results (a line with fewer reachable items than k) are padded with score -inf and row -1
(id ""), never with another item. ScaNN's k-means training is multi-threaded and not bit-for-bit
reproducible across builds: compare two builds by recall, a build and its reload by ids.
"""
