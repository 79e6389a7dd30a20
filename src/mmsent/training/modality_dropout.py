"""Modality dropout: hide present modalities of training items at random, so that the fusion layer
learns to classify with any of them missing (a user's clip without its transcript, a broken video).

MELD gives every utterance its transcript, so a model trained on it alone has never seen text
absent and leans on it; masking a modality here is what a missing one looks like to the model (its
presence mask 0, its embedding zeroed), so nothing else changes. Validation and test see every
modality they have.
"""

from __future__ import annotations

import torch

from mmsent.model.fusion import PRESENT


def drop_modalities(batch: dict, probability: float, modalities: tuple[str, ...] = tuple(PRESENT)) -> dict:
    """Each present modality of each item, of those in `modalities`, hidden with `probability`; never
    all of an item's present ones (one of those, chosen at random, is kept). Draws from torch's global
    generator, which checkpoints save and restore, so a resumed run drops the same modalities."""
    names = [name for name, key in PRESENT.items() if key in batch]
    if probability <= 0 or len(names) < 2:
        return batch
    keys = [PRESENT[name] for name in names]
    present = torch.stack([batch[key] for key in keys], dim=1)  # (items, modalities) bool
    # Both draws happen every time, so the generator advances the same whatever the outcome.
    hide = (torch.rand(present.shape) < probability) & torch.tensor([name in modalities for name in names])
    tie_break = torch.rand(present.shape)
    kept = present & ~hide
    lost_everything = present.any(dim=1) & ~kept.any(dim=1)
    keep_one = torch.nn.functional.one_hot(tie_break.masked_fill(~present, -1).argmax(dim=1), len(keys)).bool()
    kept = torch.where(lost_everything.unsqueeze(1), keep_one, kept)
    return batch | {key: kept[:, column] for column, key in enumerate(keys)}
