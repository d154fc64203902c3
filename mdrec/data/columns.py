"""The canonical column names of a validated log: what every model needs under one name whatever
the spec calls it (feature columns keep their feature names). Its own module, below the readers
and writers that need the names without the log (TFRecord shards)."""
from __future__ import annotations

LABEL = "__label__"
DOMAIN = "__domain__"
TIME = "__time__"
GRADE = "__grade__"  # the label's source column (a rating) when the spec cuts the click from it
SINGLE_DOMAIN = "all"  # the domain of every row when the spec names no domain column
