"""Classification metrics for both heads (scikit-learn), and their figures (matplotlib)."""

from __future__ import annotations

from pathlib import Path

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


def confusion_figure(task: str, matrix: list[list[int]], title: str = ""):
    """A confusion-matrix figure: counts, with each cell shaded by its share of the true class."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = TASKS[task]
    counts = np.asarray(matrix)
    shares = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    figure, axes = plt.subplots(figsize=(1.0 + 0.8 * len(names), 0.8 + 0.7 * len(names)))
    axes.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    axes.set_xticks(range(len(names)), names, rotation=45, ha="right")
    axes.set_yticks(range(len(names)), names)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    axes.set_title(title or f"{task} confusion matrix")
    for i in range(len(names)):
        for j in range(len(names)):
            axes.text(j, i, str(counts[i, j]), ha="center", va="center", color="white" if shares[i, j] > 0.5 else "black")
    figure.tight_layout()
    return figure


def save_figure(figure, path) -> None:
    import matplotlib.pyplot as plt

    figure.savefig(path, dpi=100)
    plt.close(figure)


def save_confusion_pngs(folder, results: dict, title: str) -> None:
    """confusion_emotion.png and confusion_sentiment.png in `folder`, from summarized results."""
    for task in TASKS:
        save_figure(confusion_figure(task, results[task]["confusion_matrix"], f"{task}, {title}"),
                    Path(folder) / f"confusion_{task}.png")  # fmt: skip


def curves_figure(history: list[dict]):
    """Training curves: losses, and each head's validation weighted F1, by epoch."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [h["epoch"] for h in history]
    figure, (loss_axes, f1_axes) = plt.subplots(1, 2, figsize=(10, 4))
    loss_axes.plot(epochs, [h["train"]["loss"] for h in history], marker="o", label="train")
    loss_axes.plot(epochs, [h["validation"]["loss"] for h in history], marker="o", label="validation")
    loss_axes.set(xlabel="epoch", ylabel="loss", title="loss")
    loss_axes.legend()
    for task in TASKS:
        f1_axes.plot(epochs, [h["validation"][task]["weighted_f1"] for h in history], marker="o", label=task)
    f1_axes.set(xlabel="epoch", ylabel="weighted F1", title="validation weighted F1", ylim=(0, 1))
    f1_axes.legend()
    figure.tight_layout()
    return figure
