"""Running a model over a loader: predictions, loss and metrics for both heads.

Used for validation every epoch, for the test split after training, and by `mmsent evaluate`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from mmsent.data.dataset import count_issues
from mmsent.labels import TASKS
from mmsent.model.fusion import hide_modalities, to_device
from mmsent.training.loss import MultiTaskLoss
from mmsent.training.metrics import head_metrics
from mmsent.training.precision import Precision


class Interrupted(Exception):
    """`should_stop` said so between two batches."""


@dataclass
class Predictions:
    indices: np.ndarray  # dataset positions, in loader order
    targets: dict[str, np.ndarray]
    log_probabilities: dict[str, np.ndarray]  # (items, classes) log-softmax of each head
    issues: list[tuple[str, ...]] = field(default_factory=list)  # media problems met, per item

    def predicted(self, task: str) -> np.ndarray:
        return self.log_probabilities[task].argmax(axis=1)

    def probabilities(self, task: str) -> np.ndarray:
        return np.exp(self.log_probabilities[task])


def merge(parts: list[Predictions]) -> Predictions:
    """One set of predictions from each rank's share, by dataset position. DistributedSampler pads
    the last share with repeats of the first items so every rank runs as many batches; those
    repeats are dropped here, so every item counts once."""
    indices = np.concatenate([p.indices for p in parts])
    order = np.argsort(indices, kind="stable")
    _, first = np.unique(indices[order], return_index=True)
    keep = order[first]
    issues = [issue for part in parts for issue in part.issues]
    return Predictions(
        indices=indices[keep],
        targets={t: np.concatenate([p.targets[t] for p in parts])[keep] for t in TASKS},
        log_probabilities={t: np.concatenate([p.log_probabilities[t] for p in parts])[keep] for t in TASKS},
        issues=[issues[i] for i in keep],
    )


def predict(model: nn.Module, loader, device: torch.device, precision: Precision,
            should_stop: Callable[[], bool] | None = None, progress=None) -> Predictions:
    """Both heads' log-probabilities for every item the loader yields. `should_stop`, asked before
    each batch, can cut a long validation short (SIGTERM): then `Interrupted` is raised. `progress`
    (a training.progress.Progress) is told of each batch."""
    return predict_views(model, loader, device, precision, {"": ()}, should_stop, progress)[""]


@torch.no_grad()
def predict_views(model: nn.Module, loader, device: torch.device, precision: Precision,
                  views: dict[str, tuple[str, ...]], should_stop: Callable[[], bool] | None = None,
                  progress=None) -> dict[str, Predictions]:
    """`predict` once per view (name -> the modalities hidden from every item), from one pass over
    the loader: each batch is decoded once and through the backbones once, then the rest of the
    model (projections, fusion, heads) runs once per view."""
    model.eval()
    indices, issues = [], []
    targets: dict[str, list] = {t: [] for t in TASKS}
    log_probabilities = {view: {t: [] for t in TASKS} for view in views}
    for batch in loader:
        if should_stop is not None and should_stop():
            raise Interrupted
        issues += batch["issues"]
        batch = to_device(batch, device)
        indices.append(batch["index"].cpu())
        for task in TASKS:
            targets[task].append(batch[task].cpu())
        if len(views) > 1:
            with precision.autocast():
                batch = batch | model.backbone_features(batch)
        for view, hidden in views.items():
            with precision.autocast():
                logits = model(hide_modalities(batch, hidden))
            for task in TASKS:
                log_probabilities[view][task].append(torch.log_softmax(logits[task].float(), dim=1).cpu())
        if progress is not None:
            progress.update()
    if progress is not None:
        progress.close()
    return {
        view: Predictions(
            indices=torch.cat(indices).numpy(),
            targets={t: torch.cat(v).numpy() for t, v in targets.items()},
            log_probabilities={t: torch.cat(v).numpy() for t, v in per_task.items()},
            issues=issues,
        )
        for view, per_task in log_probabilities.items()
    }


def summarize(predictions: Predictions, loss_fn: MultiTaskLoss | None = None) -> dict:
    """{"loss": ..., "emotion": head_metrics, "sentiment": head_metrics, "media_issues": {...}}.
    The loss is the training loss over all items at once (None without `loss_fn`): log-probabilities
    are their own log-softmax, so cross-entropy on them equals cross-entropy on the logits."""
    loss = None
    if loss_fn is not None:
        device = next((b.device for b in loss_fn.buffers()), torch.device("cpu"))  # where its class weights live
        loss = loss_fn({t: torch.from_numpy(v).to(device) for t, v in predictions.log_probabilities.items()},
                       {t: torch.from_numpy(v).to(device) for t, v in predictions.targets.items()}).item()  # fmt: skip
    summary: dict = {"loss": loss}
    for task in TASKS:
        summary[task] = head_metrics(task, predictions.targets[task], predictions.predicted(task))
    summary["media_issues"] = dict(sorted(count_issues(predictions.issues).items()))
    return summary
