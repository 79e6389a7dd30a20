"""The DataLoader every consumer uses: training, validation, evaluation, feature caching, prediction."""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from mmsent.data.dataset import collate
from mmsent.data.media import one_torch_thread


def make_loader(dataset: Dataset, batch_size: int, num_workers: int, device: torch.device, sampler: Sampler | None = None,
                seed: int = 0) -> DataLoader:
    """Batches in `sampler`'s order (training passes a ResumableSampler), else in dataset order."""
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        collate_fn=collate,
        num_workers=num_workers,
        worker_init_fn=one_torch_thread if num_workers else None,
        persistent_workers=num_workers > 0,
        pin_memory=device.type == "cuda",
        # Its own generator (for worker seeds), so making an iterator never draws from the
        # global one that dropout uses: a resumed run draws the same masks as an uninterrupted one.
        generator=torch.Generator().manual_seed(seed),
    )
