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
    """A confusion matrix twice: the counts, and normalised per true class (each row sums to 1, the
    recall on the diagonal), each with a colorbar. Rows are the true class, columns the prediction."""
    plt = _pyplot()
    names = TASKS[task]
    counts = np.asarray(matrix)
    shares = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    side = 1.6 + 0.75 * max(len(names), 5)  # the 3-class sentiment figure as legible as the 7-class one
    figure, panels = plt.subplots(1, 2, figsize=(2 * side + 1.5, side))
    for axes, values, top, colours, what, heading, cell in (
        (panels[0], counts, max(counts.max(), 1), "Blues", "items", "counts", "{:d}"),
        (panels[1], shares, 1.0, "Greens", "share of the true class", "normalised by true class", "{:.2f}"),
    ):
        image = axes.imshow(values, cmap=colours, vmin=0, vmax=top)
        figure.colorbar(image, ax=axes, fraction=0.046, pad=0.04, label=what)
        axes.set_xticks(range(len(names)), names, rotation=45, ha="right")
        axes.set_yticks(range(len(names)), names)
        axes.set_xlabel("predicted")
        axes.set_ylabel("true")
        axes.set_title(heading)
        for i in range(len(names)):
            for j in range(len(names)):
                axes.text(j, i, cell.format(values[i, j]), ha="center", va="center",
                          color="white" if values[i, j] / top > 0.5 else "black")  # fmt: skip
    figure.suptitle(title or f"{task} confusion matrix")
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
