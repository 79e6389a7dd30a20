"""Where training reports go: TensorBoard event files and SageMaker metric lines on stdout.

SageMaker reads metrics by matching regular expressions against the job's log; `METRIC_DEFINITIONS`
holds the ones that match `metric_line`, for the launcher to pass as MetricDefinitions.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mmsent.labels import TASKS

# name=value; pairs printed once per epoch, e.g. "validation:emotion_weighted_f1=0.5123;".
_NUMBER = r"([-+]?[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)"
EPOCH_METRICS: tuple[str, ...] = (
    "train:loss",
    "validation:loss",
    *(f"validation:{task}_{metric}" for task in TASKS for metric in ("accuracy", "weighted_f1", "macro_f1")),
    *(f"validation_without_text:{task}_weighted_f1" for task in TASKS),  # only for models of text and more
)
METRIC_DEFINITIONS: list[dict[str, str]] = [
    {"Name": name, "Regex": f"{name}={_NUMBER};"} for name in ("epoch", *EPOCH_METRICS)
]


def epoch_metrics(epoch: int, train: dict, validation: dict) -> dict[str, float]:
    values = {"epoch": epoch, "train:loss": train["loss"], "validation:loss": validation["loss"]}
    for task in TASKS:
        for metric in ("accuracy", "weighted_f1", "macro_f1"):
            values[f"validation:{task}_{metric}"] = validation[task][metric]
    if "without_text" in validation:
        for task in TASKS:
            values[f"validation_without_text:{task}_weighted_f1"] = validation["without_text"][task]["weighted_f1"]
    return values


def metric_line(values: dict[str, float]) -> str:
    return " ".join(f"{name}={value:.6g};" for name, value in values.items())


class TensorBoardLog:
    """The run's TensorBoard writer: scalars, confusion-matrix images, the model graph, hparams.
    Disabled (every call a no-op) on all ranks but rank 0, so the loop never asks which rank it is."""

    def __init__(self, folder: Path, enabled: bool = True) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.folder = Path(folder)
        self.writer = SummaryWriter(log_dir=str(self.folder)) if enabled else None

    def graph(self, model, batch: dict) -> None:
        """The model graph, traced on one real batch. A model that cannot be traced is noted, not fatal."""
        import warnings

        if self.writer is None:
            return
        was_training = model.training
        model.eval()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # tracing warns about every data-dependent branch
                tensors = {name: batch[name] for name in model.input_names(batch)}
                self.writer.add_graph(model, (tensors,), use_strict_trace=False)
        except Exception as error:  # noqa: BLE001 - a graph is a nicety; training goes on
            print(f"note: the model graph could not be traced for TensorBoard ({type(error).__name__}: {error})")
        finally:
            model.train(was_training)

    def epoch(self, epoch: int, train: dict, validation: dict, learning_rates: dict[str, float]) -> None:
        from mmsent.training.confusion_image import confusion_image

        if self.writer is None:
            return
        w = self.writer
        w.add_scalar("Loss/train", train["loss"], epoch)
        w.add_scalar("Loss/validation", validation["loss"], epoch)
        for task in TASKS:
            w.add_scalar(f"Accuracy/validation/{task}", validation[task]["accuracy"], epoch)
            w.add_scalar(f"F1/validation/{task}_weighted", validation[task]["weighted_f1"], epoch)
            w.add_scalar(f"F1/validation/{task}_macro", validation[task]["macro_f1"], epoch)
            image = confusion_image(task, validation[task]["confusion_matrix"], f"{task}, epoch {epoch}")
            w.add_image(f"ConfusionMatrix/{task}", np.asarray(image), epoch, dataformats="HWC")
            if "without_text" in validation:
                w.add_scalar(f"F1/validation_without_text/{task}_weighted", validation["without_text"][task]["weighted_f1"], epoch)
        for group, rate in learning_rates.items():
            w.add_scalar(f"LearningRate/{group}", rate, epoch)
        w.flush()

    def hparams(self, hparams: dict, final: dict[str, float]) -> None:
        if self.writer is None:
            return
        clean = {k: v if isinstance(v, (int, float, str, bool)) else str(v) for k, v in hparams.items()}
        self.writer.add_hparams(clean, {f"hparam/{k}": v for k, v in final.items()}, run_name=".")

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
