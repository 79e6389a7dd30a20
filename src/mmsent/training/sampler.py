"""The order training reads its items in: this rank's share, shuffled by (seed, epoch), resumable
part-way through an epoch, and optionally grouped by length.

Grouping by length (`TrainConfig.group_by_length`, as Hugging Face's Trainer offers it): a batch's
token width is its longest item's (collate trims the rest of the padding), and MELD's utterances
run from 2 to 90 word pieces, so random batches are mostly padding: the encoder then spends most
of its time on it. The shuffled order is cut into windows of many batches; each window is sorted by
length and cut into batches, and the batches are shuffled, so every batch holds items of about one
length while what goes into a batch, and the batches' order, stay random epoch to epoch.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import torch
from torch.utils.data import DistributedSampler

from mmsent.training.distributed import DistInfo

GROUP_WINDOW_BATCHES = 50  # batches per sorted window: wide enough to find equal lengths, narrow enough to stay random


class ResumableSampler(DistributedSampler):
    """torch's DistributedSampler (this rank's share, shuffled by seed + epoch; world size 1 is
    every item), able to start an epoch part-way through: `set_epoch(epoch, skip=items)`. With
    `lengths` (each item's token count) and `batch_size`, consecutive runs of `batch_size` items
    are of about one length."""

    def __init__(self, dataset, dist: DistInfo, shuffle: bool, seed: int = 0, lengths: Sequence[int] | None = None,
                 batch_size: int = 1) -> None:
        super().__init__(dataset, num_replicas=dist.world_size, rank=dist.rank, shuffle=shuffle, seed=seed)
        if lengths is not None and len(lengths) != len(dataset):
            raise ValueError(f"{len(lengths)} lengths for {len(dataset)} items")
        self.lengths, self.batch_size = lengths, batch_size
        self.skip = 0

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        super().set_epoch(epoch)
        self.skip = skip

    def __iter__(self):
        order = list(super().__iter__())
        if self.lengths is not None:
            order = group_by_length(order, self.lengths, self.batch_size, self.seed + self.epoch)
        return itertools.islice(order, self.skip, None)

    def __len__(self) -> int:
        return max(self.num_samples - self.skip, 0)


def group_by_length(order: list[int], lengths: Sequence[int], batch_size: int, seed: int) -> list[int]:
    """`order` rearranged so that each run of `batch_size` items is of about one length, batches in
    a seeded random order except that the batch with the longest item comes first (an out-of-memory
    shows in the first step, not hours in). The same items, each once."""
    window = batch_size * GROUP_WINDOW_BATCHES  # a multiple of batch_size: only the very last batch can be short
    batches = []
    for first in range(0, len(order), window):
        chunk = sorted(order[first : first + window], key=lambda i: lengths[i], reverse=True)
        batches += [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
    # The DataLoader cuts the order every batch_size items: a short batch stays last, or every batch after it would straddle two.
    short = [batches.pop()] if batches and len(batches[-1]) < batch_size else []
    shuffled = torch.randperm(len(batches), generator=torch.Generator().manual_seed(seed)).tolist()
    batches = [batches[i] for i in shuffled]
    if batches:
        longest = max(range(len(batches)), key=lambda b: lengths[batches[b][0]])  # each batch is sorted: its first is its longest
        batches.insert(0, batches.pop(longest))
    return [i for batch in batches + short for i in batch]
