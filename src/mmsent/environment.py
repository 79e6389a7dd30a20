"""Every environment variable mmsent reads, read here and nowhere else, when asked (never at import).

Inside a SageMaker training job the container contract sets `SM_*` variables: the input channels
(`SM_CHANNEL_TRAIN`, `SM_CHANNEL_VALIDATION`, `SM_CHANNEL_TEST`), the model and output folders.
Outside one, none is set and local defaults apply. torchrun sets RANK, LOCAL_RANK and WORLD_SIZE.
SageMaker also names the job (TRAINING_JOB_NAME) and writes its hyperparameters to
input/config/hyperparameters.json, where a training job started by a tuning job finds
`_tuning_objective_metric` (the training toolkit keeps that one from the script's arguments).
In a batch transform job's container SageMaker sets SAGEMAKER_BATCH=true (the inference handler then
answers a clip it cannot use with a row naming why, not an error that would fail the whole job).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from mmsent.errors import SettingsError

_CHANNEL_PREFIX = "SM_CHANNEL_"
TUNING_OBJECTIVE = "_tuning_objective_metric"  # sagemaker_training.params.TUNING_METRIC_PARAM


@dataclass(frozen=True)
class Environment:
    channels: dict[str, Path] = field(default_factory=dict)  # SageMaker input channels by lower-case name
    model_dir: Path | None = None  # SM_MODEL_DIR: what the job uploads as model.tar.gz
    output_data_dir: Path | None = None  # SM_OUTPUT_DATA_DIR: extra outputs, uploaded as output.tar.gz
    output_dir: Path | None = None  # SM_OUTPUT_DIR: /opt/ml/output; TensorBoard's LocalPath is tensorboard/ in it
    cache_dir: Path = Path.home() / ".cache" / "mmsent"  # MMSENT_CACHE_DIR, else XDG_CACHE_HOME/mmsent
    world_size: int = 1  # WORLD_SIZE, set by torchrun: how many training processes share the job
    rank: int = 0  # RANK: this process's place among them
    local_rank: int = 0  # LOCAL_RANK: its place on this machine, which picks its GPU
    base_dir: Path = Path("/opt/ml")  # SAGEMAKER_BASE_DIR: the job's /opt/ml tree (another folder for a local run)
    job_name: str | None = None  # TRAINING_JOB_NAME, set by SageMaker in a job
    tuning_trial: bool = False  # a training job of a tuning job (its hyperparameters name the tuning objective)
    batch_transform: bool = False  # SAGEMAKER_BATCH=true: the model serves a batch transform job

    @property
    def in_sagemaker(self) -> bool:
        return self.model_dir is not None or bool(self.channels)

    @property
    def tensorboard_dir(self) -> Path | None:
        """Inside a job, the folder that TensorBoardOutputConfig syncs to S3 (its default LocalPath)."""
        if not self.in_sagemaker:
            return None
        return (self.output_dir or self.base_dir / "output") / "tensorboard"

    @property
    def checkpoint_dir(self) -> Path | None:
        """Inside a job, the folder that CheckpointConfig syncs with S3 (its default LocalPath): what a
        restarted spot job finds again. Every training job of a tuning job gets the same CheckpointConfig,
        so each keeps its checkpoints in a folder named after itself: a trial resumes its own after a spot
        interruption, never another trial's (whose settings differ on purpose). The TensorFlow toolkit
        does the same for its model_dir (aws/sagemaker-tensorflow-training-toolkit#179)."""
        if not self.in_sagemaker:
            return None
        folder = self.base_dir / "checkpoints"
        return folder / self.job_name if self.tuning_trial and self.job_name else folder

    @classmethod
    def read(cls, environ: Mapping[str, str] | None = None) -> "Environment":
        env = os.environ if environ is None else environ
        channels = {
            key[len(_CHANNEL_PREFIX) :].lower(): Path(value)
            for key, value in env.items()
            if key.startswith(_CHANNEL_PREFIX) and value
        }
        if env.get("MMSENT_CACHE_DIR"):
            cache_dir = Path(env["MMSENT_CACHE_DIR"])
        elif env.get("XDG_CACHE_HOME"):
            cache_dir = Path(env["XDG_CACHE_HOME"]) / "mmsent"
        else:
            cache_dir = Path(env.get("HOME", str(Path.home()))) / ".cache" / "mmsent"
        base_dir = Path(env.get("SAGEMAKER_BASE_DIR") or "/opt/ml")
        return cls(
            channels=channels,
            model_dir=Path(env["SM_MODEL_DIR"]) if env.get("SM_MODEL_DIR") else None,
            output_data_dir=Path(env["SM_OUTPUT_DATA_DIR"]) if env.get("SM_OUTPUT_DATA_DIR") else None,
            output_dir=Path(env["SM_OUTPUT_DIR"]) if env.get("SM_OUTPUT_DIR") else None,
            cache_dir=cache_dir,
            world_size=_integer(env, "WORLD_SIZE", 1),
            rank=_integer(env, "RANK", 0),
            local_rank=_integer(env, "LOCAL_RANK", 0),
            base_dir=base_dir,
            job_name=env.get("TRAINING_JOB_NAME") or None,
            tuning_trial=_tuning_objective_named(base_dir / "input" / "config" / "hyperparameters.json"),
            batch_transform=env.get("SAGEMAKER_BATCH", "").lower() == "true",
        )


def _tuning_objective_named(hyperparameters: Path) -> bool:
    try:
        return TUNING_OBJECTIVE in json.loads(hyperparameters.read_text())
    except (OSError, ValueError, TypeError):  # no job here, or no readable file: not a tuning trial
        return False


def _integer(env: Mapping[str, str], name: str, default: int) -> int:
    value = env.get(name) or str(default)
    try:
        number = int(value)
    except ValueError:
        raise SettingsError(f"environment variable {name}={value!r} is not an integer") from None
    if number < 0:
        raise SettingsError(f"environment variable {name}={value!r} must not be negative")
    return number
