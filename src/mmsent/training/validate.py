"""Running a model over a loader: predictions, loss and metrics for both heads.

Used for validation every epoch, for the test split after training, and by `mmsent evaluate`.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from mmsent.data.dataset import count_issues
from mmsent.labels import TASKS
from mmsent.training.metrics import head_metrics
from mmsent.training.precision import Precision


@dataclass
class Predictions:
    indices: np.ndarray  # dataset positions, in loader order
    targets: dict[str, np.ndarray]
    probabilities: dict[str, np.ndarray]  # (items, classes) softmax of each head
    loss: float | None = None
    issues: Counter = field(default_factory=Counter)  # media problems met, by kind

    def predicted(self, task: str) -> np.ndarray:
        return self.probabilities[task].argmax(axis=1)


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


def to_device(batch: dict, device: torch.device) -> dict:
    return {k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


@torch.no_grad()
def predict(model: nn.Module, loader, device: torch.device, precision: Precision,
            loss_fn: MultiTaskLoss | None = None) -> Predictions:
    model.eval()
    indices, targets, probabilities = [], {t: [] for t in TASKS}, {t: [] for t in TASKS}
    total_loss, items, issues = 0.0, 0, Counter()
    for batch in loader:
        issues += count_issues(batch)
        batch = to_device(batch, device)
        with precision.autocast():
            logits = model(batch)
        if loss_fn is not None:
            total_loss += loss_fn(logits, batch).item() * len(batch["index"])
        items += len(batch["index"])
        indices.append(batch["index"].cpu())
        for task in TASKS:
            targets[task].append(batch[task].cpu())
            probabilities[task].append(torch.softmax(logits[task].float(), dim=1).cpu())
    return Predictions(
        indices=torch.cat(indices).numpy(),
        targets={t: torch.cat(v).numpy() for t, v in targets.items()},
        probabilities={t: torch.cat(v).numpy() for t, v in probabilities.items()},
        loss=total_loss / max(items, 1) if loss_fn is not None else None,
        issues=issues,
    )


def summarize(predictions: Predictions) -> dict:
    """{"loss": ..., "emotion": head_metrics, "sentiment": head_metrics, "media_issues": {...}}."""
    summary: dict = {"loss": predictions.loss}
    for task in TASKS:
        summary[task] = head_metrics(task, predictions.targets[task], predictions.predicted(task))
    summary["media_issues"] = dict(sorted(predictions.issues.items()))
    return summary
