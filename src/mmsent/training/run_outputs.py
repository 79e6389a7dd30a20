"""What a training run leaves behind besides checkpoints and TensorBoard events: the best model's
model dir, its metrics, model card and figures, the per-epoch history and the setup timings.

Rank 0 writes them all (the others' RunOutputs is disabled and writes nothing); where a write can fail,
every rank learns of it, so none is left waiting in a collective alone.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path

import torch

from mmsent.config import DataConfig, ModelConfig, TrainConfig
from mmsent.files import write_atomic, write_json_atomic
from mmsent.model_dir import CARD, METRICS, save_model_dir
from mmsent.training import distributed
from mmsent.training.distributed import DistInfo
from mmsent.training.errors import TrainingError
from mmsent.training.confusion_image import save_confusion_pngs
from mmsent.training.metrics import curves_figure, save_figure
from mmsent.training.run_folders import RunFolderError, hold_run_folders


@dataclass(frozen=True)
class RunPaths:
    model_dir: Path  # the best model: weights, config, labels, metrics, figures
    tensorboard_dir: Path  # TensorBoard event files
    output_dir: Path  # everything else worth keeping: per-epoch history
    checkpoint_dir: Path  # checkpoints to resume from (/opt/ml/checkpoints in a SageMaker job)
    cache_dir: Path | None = None  # the decoded-media cache; None decodes every clip every epoch
    rebuild_cache: bool = False  # replace a media cache another dataset built, rather than refuse it


class RunOutputs:
    def __init__(self, paths: RunPaths, dist: DistInfo) -> None:
        self.paths, self.dist = paths, dist
        self.enabled = dist.is_main

    def hold(self) -> contextlib.AbstractContextManager:
        """Every output folder made and proven writable, the checkpoint and model folders locked for
        the run (a second run on them stops at once); released when the returned context exits."""
        if not self.enabled:
            return contextlib.ExitStack()
        paths = self.paths
        folders = {"checkpoints": paths.checkpoint_dir, "model dir": paths.model_dir, "output data": paths.output_dir,
                   "TensorBoard logs": paths.tensorboard_dir}  # fmt: skip
        try:
            return hold_run_folders(folders, ("checkpoints", "model dir"))
        except RunFolderError as problem:
            raise TrainingError(str(problem)) from None

    def save_model(self, model: torch.nn.Module, weights: dict, data_cfg: DataConfig, model_cfg: ModelConfig, tokenizer,
                   checkpoint: Path, train_cfg: TrainConfig | None = None) -> None:  # fmt: skip
        """The model dir with `weights` (the best epoch's trainable ones; `checkpoint` holds the same)."""
        failure = None
        if self.enabled:
            try:
                save_model_dir(self.paths.model_dir, model, data_cfg, model_cfg, tokenizer, state=weights, train_cfg=train_cfg)
            except (OSError, RuntimeError) as problem:  # torch.save reports a failed write as RuntimeError
                failure = (f"could not write the model dir {self.paths.model_dir} ({str(problem).splitlines()[0]}); the "
                           f"checkpoint in {checkpoint} holds the training: the same command again writes it")  # fmt: skip
        failure = distributed.gather_objects(self.dist, failure)[0]
        if failure:
            raise TrainingError(failure)

    def write_results(self, final: dict, history: list[dict], timings: dict, card: str) -> None:
        """metrics.json, the model card and the figures in the model dir; history.json and timings.json
        in the output dir."""
        if not self.enabled:
            return
        paths = self.paths
        write_json_atomic(paths.model_dir / METRICS, final)
        write_atomic(paths.model_dir / CARD, lambda path: Path(path).write_text(card, encoding="utf-8"))
        paths.output_dir.mkdir(parents=True, exist_ok=True)
        write_json_atomic(paths.output_dir / "history.json", history)
        write_json_atomic(paths.output_dir / "timings.json", timings)
        split = "test" if "test" in final else "validation"
        save_confusion_pngs(paths.model_dir, final[split], f"{split}, best epoch {final['best_epoch']}")
        save_figure(curves_figure(history, final["best_epoch"]), paths.model_dir / "training_curves.png")
