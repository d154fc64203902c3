"""Training batches of behaviour windows, grouped by length: few padding positions, resumable.

    batches = SequenceBatches(histories, width=201, batch_size=128, seed=0)
    for x, y in batches.epoch(epoch=0, skip_batches=0):   # x["ids"] int32 [b, w] (numpy), w <= width
        ...

A user's window is the last ``width`` items of their history (oldest first, right-padded); with
``repeats`` > 1 every further copy is a window ending at a random point of the whole history
(drawn afresh each epoch), so long histories are read beyond their end. Each epoch, seeded by
(seed, epoch): the windows are shuffled, cut into chunks of ``chunk`` batches, each chunk sorted
by length and cut into batches, and the batches shuffled. A batch is padded only to its longest
window, rounded up to a multiple of ``width_step`` (so a compiled step sees few shapes). The
same (seed, epoch) always gives the same batches, so a resumed run skips exactly those it trained on.
"""
from __future__ import annotations

from typing import Iterator, Sequence

import numpy as np

IDS = "ids"
TIMES = "times"


class SequenceBatches:
    """``histories``: per user the item rows (ints >= 2, oldest first); ``times``: the same users'
    event times (or None). See the module doc for the batching rule."""

    varying_dims = (0, 1)  # a batch's windows and their width

    def __init__(self, histories: Sequence[np.ndarray], width: int, batch_size: int, seed: int, *,
                 times: Sequence[np.ndarray] | None = None, repeats: int = 1, width_step: int = 32,
                 chunk: int = 16):
        if not len(histories):
            raise ValueError("no sequences to train on")
        self.width, self.batch_size, self.seed = int(width), int(batch_size), int(seed)
        self.repeats, self.width_step, self.chunk = int(repeats), int(width_step), int(chunk)
        self.lengths = np.asarray([len(h) for h in histories], np.int64)
        self.offsets = np.concatenate([[0], np.cumsum(self.lengths)])
        self.items = np.concatenate([np.asarray(h, np.int32) for h in histories]) if self.offsets[-1] else \
            np.zeros(0, np.int32)
        self.times = (np.concatenate([np.asarray(t, np.int64) for t in times]) if times is not None and
                      self.offsets[-1] else (np.zeros(0, np.int64) if times is not None else None))
        rows = len(histories) * self.repeats
        self.batches_per_epoch = -(-rows // self.batch_size)

    def mean_targets_per_batch(self, next_item: bool, share: float = 1.0) -> float:
        """The mean number of training targets in a batch of the epoch's first windows (every user's
        last ``width`` items): a window of n items has n - 1 next-item targets, or ``share`` x n
        masked ones. Windows of later copies (``repeats``) are counted as the first copy's."""
        items = np.minimum(self.lengths, self.width).astype(np.float64)
        targets = np.maximum(items - 1, 0) if next_item else share * items
        return float(targets.mean() * self.batch_size)

    def sample(self) -> dict[str, np.ndarray]:
        """Two windows (for building the model's variables)."""
        ends = self.lengths[:2]
        return self._windows(np.arange(min(2, len(self.lengths))), ends, self.width)

    def _ends(self, epoch: int) -> tuple[np.ndarray, np.ndarray]:
        """(user, end) of every window of the epoch: copy 0 ends at the history's end, later copies
        at a uniform point (at least 2 items in, so the window has an input and a target)."""
        users = np.tile(np.arange(len(self.lengths)), self.repeats)
        ends = np.tile(self.lengths, self.repeats)
        if self.repeats > 1:
            rng = np.random.default_rng([self.seed, epoch, 2])
            later = np.arange(len(users)) >= len(self.lengths)
            low = np.minimum(2, self.lengths[users[later]])
            ends[later] = low + np.floor(rng.random(later.sum()) * (self.lengths[users[later]] - low + 1)).astype(np.int64)
        return users, ends

    def batches(self, epoch: int) -> list[np.ndarray]:
        """The epoch's batches as window indices (see the module doc)."""
        users, ends = self._ends(epoch)
        lengths = np.minimum(ends, self.width)
        rng = np.random.default_rng([self.seed, epoch])
        order = rng.permutation(len(users))
        per_chunk = self.batch_size * self.chunk
        batches = []
        for start in range(0, len(order), per_chunk):
            part = order[start:start + per_chunk]
            part = part[np.argsort(-lengths[part], kind="stable")]
            batches += [part[i:i + self.batch_size] for i in range(0, len(part), self.batch_size)]
        return [batches[i] for i in rng.permutation(len(batches))]

    def epoch(self, epoch: int, skip_batches: int) -> Iterator[tuple[dict[str, np.ndarray], np.ndarray]]:
        """The epoch's (windows, dummy labels) batches after the first ``skip_batches``.

        A plain iterator, not a tf.data pipeline: with a prefetching generator dataset the step after
        an epoch's last batch was seen to stall until the next tick of an exponential backoff (up to
        ~16 s at 25 s per epoch); building a batch of windows in numpy takes about a millisecond.
        """
        users, ends = self._ends(epoch)
        for index in self.batches(epoch)[skip_batches:]:
            longest = int(min(ends[index].max(), self.width))
            width = min(self.width, -(-max(longest, 1) // self.width_step) * self.width_step)
            yield self._windows(users[index], ends[index], width), np.zeros(len(index), np.float32)

    def _windows(self, users: np.ndarray, ends: np.ndarray, width: int) -> dict[str, np.ndarray]:
        """The windows of ``users`` ending at ``ends`` (last ``min(width, self.width)`` items), [n, width]."""
        take = np.minimum(ends, min(width, self.width))
        starts = self.offsets[users] + ends - take
        column = np.arange(width)[None, :]
        inside = column < take[:, None]
        index = np.where(inside, starts[:, None] + column, 0)
        out = {IDS: np.where(inside, self.items[index] if len(self.items) else 0, 0).astype(np.int32)}
        if self.times is not None:
            out[TIMES] = np.where(inside, self.times[index] if len(self.times) else 0, 0).astype(np.int64)
        return out
