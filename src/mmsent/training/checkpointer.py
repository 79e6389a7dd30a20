"""A run's checkpoints: when one is due, saving one (every rank takes part), resuming from the newest.

`checkpoint.py` is the file format (atomic pairs, verified, weights-only loading); this is what the
training loop does with it. A checkpoint is due at every epoch's end (the loop's call), every
`checkpoint_every_steps` optimizer steps, and at the first optimizer step once
`checkpoint_every_minutes` have passed since the last one: inside a SageMaker job the script is a
child of a PID 1 shell that does not forward SIGTERM, so a stop or spot reclaim may end it without
the signal's save.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from mmsent.config import TrainConfig
from mmsent.training import distributed
from mmsent.training.checkpoint import (
    CheckpointError, CheckpointFolder, LoopState, build_payload, check_compatible, checkpoint_name, load_trainable,
    rng_state, set_rng_state,
)  # fmt: skip
from mmsent.training.distributed import DistInfo
from mmsent.training.errors import TrainingError


class Checkpointer:
    """Saves and restores one run's training state: the model's trainable weights, optimizer, scheduler,
    scaler and RNG states, with the configs and data fingerprints that tell this run from another."""

    def __init__(self, folder: Path, cfg: TrainConfig, dist: DistInfo, *, configs: dict, data: dict[str, str], frozen: str,
                 model: torch.nn.Module, optimizer, scheduler, scaler) -> None:  # fmt: skip
        self.folder = CheckpointFolder(folder, cfg.keep_checkpoints)
        self.dist, self.configs, self.data, self.frozen = dist, configs, data, frozen
        self.model, self.optimizer, self.scheduler, self.scaler = model, optimizer, scheduler, scaler
        self.cfg = cfg
        self.saved_train: dict | None = None  # the resumed checkpoint's training settings
        self.rate_reached = 1.0  # and the factor of the base rate its schedule had reached
        self.every_steps = cfg.checkpoint_every_steps
        self.every_seconds = 60 * (cfg.checkpoint_every_minutes or 0)
        self.last_saved = time.monotonic()

    def time_due(self) -> bool:
        """This rank's view of the wall-clock trigger; the loop makes every rank agree on it."""
        return self.every_seconds > 0 and time.monotonic() - self.last_saved >= self.every_seconds

    def steps_due(self, optimizer_steps: int) -> bool:
        return bool(self.every_steps) and optimizer_steps % self.every_steps == 0

    def save(self, state: LoopState, best_weights: dict | None) -> Path:
        """Write the checkpoint for `state` and return its path. Every rank's RNG state goes in (a
        collective); rank 0 alone builds and writes the payload (a CPU copy of the weights); all
        learn whether it worked, so none waits in a collective alone."""
        self.last_saved = time.monotonic()
        rng_states = distributed.gather_objects(self.dist, rng_state())
        path, failure = self.folder.folder / checkpoint_name(state), None
        if self.dist.is_main:
            payload = build_payload(state=state, configs=self.configs, data=self.data, model=self.model, frozen=self.frozen,
                                    best=best_weights, optimizer=self.optimizer, scheduler=self.scheduler,
                                    scaler=self.scaler, rng_states=rng_states)  # fmt: skip
            try:
                self.folder.write(payload, path.name)
            except CheckpointError as problem:
                failure = str(problem)
        failure = distributed.gather_objects(self.dist, failure)[0]
        if failure:
            raise TrainingError(failure)
        return path

    def set_aside(self) -> Path | None:
        """`--resume false`: earlier checkpoints moved out of the way (rank 0); where they went."""
        return self.folder.set_aside() if self.dist.is_main else None

    def finished(self) -> None:
        """The run ended and its model dir is written: keep only the newest checkpoint (rank 0), unless
        more than the default 2 were asked for (a trail). The newest is all a resume of a finished run
        needs: the last epoch's weights and optimizer state (a larger --epochs goes on from there) and
        the best epoch's weights (a lost model dir is written again). The fallback kept while training
        guarded against a newest cut short mid-write; the older ones would only resume earlier points."""
        if self.dist.is_main and self.folder.keep <= TrainConfig.keep_checkpoints:
            self.folder.prune(1)

    def resume(self) -> tuple[LoopState, dict | None] | None:
        """(LoopState, best weights) from the newest valid checkpoint, restored into the model,
        optimizer, scheduler, scaler and RNGs; None if there is none. Rank 0 chooses; every rank loads
        that same file (the folder is shared, or synced as SageMaker does)."""
        dist = self.dist
        if dist.is_main:
            self.folder.remove_partial_writes()
        found = self.folder.newest_valid() if dist.is_main else None
        chosen = distributed.gather_objects(dist, found[0] if found else None)[0]
        if chosen is None:
            return None
        try:
            payload = found[1] if dist.is_main else self.folder.read(chosen)
        except (CheckpointError, OSError) as problem:
            raise TrainingError(f"rank {dist.rank} cannot read the checkpoint rank 0 chose ({problem}): the checkpoint "
                               "folder must be shared by, or synced to, every machine") from None  # fmt: skip
        try:
            changes = check_compatible(payload, chosen, self.configs, dist.world_size, self.data)
        except CheckpointError as problem:
            raise TrainingError(str(problem)) from None
        if changes and dist.is_main:
            print(f"resuming {chosen.name} with changed settings: {'; '.join(changes)}")
        if payload["frozen_digest"] != self.frozen:
            raise TrainingError(f"{chosen}: the frozen backbone weights rebuilt now differ from the checkpoint's "
                               "(other pretrained weights file?); use --resume false to start afresh")  # fmt: skip
        try:
            load_trainable(self.model, payload["model"])
        except CheckpointError as problem:
            raise TrainingError(f"{chosen}: {problem}") from None
        self.optimizer.load_state_dict(payload["optimizer"])
        self.scheduler.load_state_dict(payload["scheduler"])
        first = self.optimizer.param_groups[0]
        self.rate_reached = first["lr"] / first.get("initial_lr", first["lr"])  # the schedule's factor when it was saved
        saved = self.saved_train = payload["configs"]["train"]
        apply_rates(self.optimizer, self.scheduler, self.cfg, saved.get("learning_rate", self.cfg.learning_rate),
                    saved.get("encoder_learning_rate", self.cfg.encoder_learning_rate))  # fmt: skip
        if not load_scaler_state(self.scaler, payload["scaler"]) and self.scaler.is_enabled() and dist.is_main:
            print(f"{chosen}: written without loss scaling (bf16, fp32 or the CPU); fp16's loss scale starts afresh")
        rng = payload["rng"]
        set_rng_state(rng[dist.rank] if dist.rank < len(rng) else rng[0])
        return LoopState(**payload["loop"]), payload["best_model"]


def load_scaler_state(scaler: torch.amp.GradScaler, state: dict) -> bool:
    """Load a saved GradScaler state; False where there was none to load: a run without loss scaling (bf16,
    fp32, the CPU) saves a disabled scaler's empty state, which an fp16 scaler's load_state_dict refuses
    ("The source state dict is empty"), so an fp16 run resumed from it starts its scale afresh."""
    if not state:
        return False
    scaler.load_state_dict(state)
    return True


def apply_rates(optimizer: torch.optim.Optimizer, scheduler, cfg: TrainConfig, saved_rate: float, saved_encoder_rate: float) -> None:
    """This run's learning rates and weight decay over the restored optimizer and schedule, which hold the
    checkpoint's: a rate changed on resume takes effect at once, at the point of the schedule the run had
    reached (a LambdaLR's factor of the new base rate; a plateau's reductions kept, as a share of it)."""
    for index, group in enumerate(optimizer.param_groups):
        encoders = group["name"].startswith("encoders")
        base, before = (cfg.encoder_learning_rate, saved_encoder_rate) if encoders else (cfg.learning_rate, saved_rate)
        if not group["name"].endswith("_no_decay"):
            group["weight_decay"] = cfg.weight_decay
        if hasattr(scheduler, "lr_lambdas"):  # warm-up then cosine, linear or constant (transformers' LambdaLR)
            scheduler.base_lrs[index] = group["initial_lr"] = base
            group["lr"] = base * scheduler.lr_lambdas[index](scheduler.last_epoch)
        elif before != base:  # ReduceLROnPlateau: the halvings so far, of the new rate
            group["lr"] *= base / before
