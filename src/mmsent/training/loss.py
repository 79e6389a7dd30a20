"""The training loss: both heads' cross-entropies, class-weighted, in one module."""

from __future__ import annotations

import torch
from torch import nn

from mmsent.labels import TASKS


class MultiTaskLoss(nn.Module):
    """Emotion cross-entropy plus a weighted sentiment cross-entropy, each with class weights."""

    def __init__(self, class_weights: dict[str, torch.Tensor | None], label_smoothing: float,
                 sentiment_weight: float) -> None:
        super().__init__()
        self.criteria = nn.ModuleDict({
            task: nn.CrossEntropyLoss(weight=class_weights.get(task), label_smoothing=label_smoothing)
            for task in TASKS
        })  # fmt: skip
        self.task_weights = {"emotion": 1.0, "sentiment": sentiment_weight}

    def forward(self, logits: dict[str, torch.Tensor], batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return sum(self.task_weights[t] * self.criteria[t](logits[t].float(), batch[t]) for t in TASKS)
