"""Classification metrics for both heads (scikit-learn), and the training curves (matplotlib); the confusion
matrices are drawn by confusion_image.py."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support

from mmsent.labels import TASKS


def head_metrics(task: str, targets: np.ndarray, predictions: np.ndarray) -> dict:
    """Accuracy, weighted F1 (MELD's standard metric), macro F1, per-class P/R/F1, confusion matrix."""
    names = TASKS[task]
    labels = list(range(len(names)))
    precision, recall, f1, support = precision_recall_fscore_support(
        targets, predictions, labels=labels, zero_division=0
    )
    return {
        "accuracy": float(accuracy_score(targets, predictions)),
        "weighted_f1": float(f1_score(targets, predictions, labels=labels, average="weighted", zero_division=0)),
        "macro_f1": float(f1_score(targets, predictions, labels=labels, average="macro", zero_division=0)),
        "per_class": {
            name: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
            for name, p, r, f, s in zip(names, precision, recall, f1, support)
        },
        "confusion_matrix": confusion_matrix(targets, predictions, labels=labels).tolist(),
    }


def format_head_metrics(task: str, metrics: dict) -> str:
    """A per-class precision/recall/F1 table with the head's summary line."""
    lines = [
        f"{task}: accuracy {metrics['accuracy']:.4f}  weighted F1 {metrics['weighted_f1']:.4f}  "
        f"macro F1 {metrics['macro_f1']:.4f}",
        f"  {'class':<10} {'precision':>9} {'recall':>9} {'f1':>9} {'support':>8}",
    ]
    for name, row in metrics["per_class"].items():
        lines.append(f"  {name:<10} {row['precision']:>9.4f} {row['recall']:>9.4f} {row['f1']:>9.4f} {row['support']:>8}")
    return "\n".join(lines)


def save_figure(figure, path) -> None:
    import matplotlib.pyplot as plt

    figure.savefig(path, dpi=100)
    plt.close(figure)


def curves_figure(history: list[dict], best_epoch: int | None = None):
    """Training curves by epoch (whole-number ticks): losses, and each head's validation weighted F1,
    with the best epoch (the one the model dir keeps) marked on both."""
    plt = _pyplot()
    from matplotlib.ticker import MaxNLocator

    epochs = [h["epoch"] for h in history]
    figure, (loss_axes, f1_axes) = plt.subplots(1, 2, figsize=(10, 4))
    loss_axes.plot(epochs, [h["train"]["loss"] for h in history], marker="o", label="train")
    loss_axes.plot(epochs, [h["validation"]["loss"] for h in history], marker="o", label="validation")
    loss_axes.set(xlabel="epoch", ylabel="loss", title="loss")
    for task in TASKS:
        f1_axes.plot(epochs, [h["validation"][task]["weighted_f1"] for h in history], marker="o", label=task)
    f1_axes.set(xlabel="epoch", ylabel="weighted F1", title="validation weighted F1", ylim=(0, 1))
    for axes in (loss_axes, f1_axes):
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        if best_epoch is not None:
            axes.axvline(best_epoch, color="grey", linestyle="--", linewidth=1, label=f"best epoch ({best_epoch})")
        axes.legend()
    figure.tight_layout()
    return figure


def _pyplot():
    """matplotlib's pyplot on the file-only Agg backend (no display on servers and training instances)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt
