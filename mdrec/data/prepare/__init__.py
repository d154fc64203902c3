"""Adapters from raw public datasets to the tabular multi-domain log the feature specs describe.

Each adapter reads one raw source folder (see ``../shared/data/<folder>/SOURCE.md``), checks every
line, and returns one log with a split per row. :func:`prepare` writes that log and its splits::

    out/log.parquet     every row
    out/train.parquet   out/valid.parquet   out/test.parquet
    out/prepare.json    summary: rows per split and domain, users, items, user overlap, label rate,
                        what was done (split rule, negatives sampled, rows dropped and why, files read)

Nothing is dropped silently: every removed row is counted under ``dropped`` in ``prepare.json``.
Raw data never ships with the project (licences); the code takes the source folder as an argument.
Paths in ``prepare.json`` are absolute or relative to its folder (:mod:`mdrec.records`);
:func:`read_prepared` resolves them from any working directory.

The modules, by job: ``entry`` (:func:`prepare`, :func:`read_prepared`, the ``DATASETS``
registry), ``prepared`` (:class:`Prepared`, the summary statistics), ``raw`` (reading raw files with
line-accurate errors), ``transforms`` (k-core filter, negative sampling, seeded streams) and one
module per dataset family: ``douban``, ``movielens``, ``amazon``.
"""
from mdrec.data.prepare.amazon import AMAZON_PAIRS
from mdrec.data.prepare.entry import DATASETS, FORMATS, RECORD, prepare, read_prepared
from mdrec.data.prepare.movielens import AGE_GROUPS, MIN_EVENTS, SEQUENTIAL_LINE
from mdrec.data.prepare.prepared import SPLITS, Prepared
from mdrec.data.prepare.transforms import k_core, sample_negatives
from mdrec.data.splits import stratified_random_split

__all__ = ["AGE_GROUPS", "AMAZON_PAIRS", "DATASETS", "FORMATS", "MIN_EVENTS", "Prepared", "RECORD",
           "SEQUENTIAL_LINE", "SPLITS", "k_core", "prepare", "read_prepared", "sample_negatives",
           "stratified_random_split"]
