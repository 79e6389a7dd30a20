"""Checkpoints: atomic, self-describing, verified before use; the newest valid one resumes a run.

A checkpoint is two files in the checkpoint folder:

    checkpoint-EEEE-BBBBBBB.pt     everything to go on: the trainable weights, the best epoch's
                                   weights, optimizer, scheduler, scaler, every rank's RNG states,
                                   the configs, the label maps and the loop's position (epoch,
                                   batches done in it, optimizer steps, history, best so far)
    checkpoint-EEEE-BBBBBBB.json   its manifest, written last: size and SHA-256 of the .pt

EEEE is the epoch in progress and BBBBBBB the batches of it already trained, so names sort in
training order. Each file goes to a temporary name first and is `os.replace`d into place, so a
kill at any moment leaves either the old set or the new one. A checkpoint whose manifest is
missing or disagrees with its .pt (a copy cut short, a flipped byte) is skipped with a warning and
the next newest is tried. Files are read with `torch.load(weights_only=True)`: tensors and plain
containers only, so a tampered pickle cannot run code.

Frozen backbones are not stored: they are rebuilt from the same settings and seed, and a digest
of their weights proves they came back the same.
"""

from __future__ import annotations

import hashlib
import json
import pickle
import random
import re
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from mmsent import __version__
from mmsent.config import MODEL_SETTINGS_ADDED, TEXT_SETTINGS_ADDED, DataConfig, ModelConfig, TrainConfig
from mmsent.errors import MmsentError
from mmsent.features import tensors_digest
from mmsent.files import save_torch_atomic, sha256_of, write_json_atomic
from mmsent.labels import label_maps

FORMAT_VERSION = 1
_NAME = re.compile(r"^checkpoint-(\d{4})-(\d{7})\.pt$")

# What a resumed run may change. Model and data settings decide what the weights mean: they must match.
# Training settings may change on purpose (more epochs, another learning rate, patience), each named in one
# line as the run resumes, except those that decide which items each step sees and how steps are counted:
TRAIN_MUST_MATCH = frozenset({"batch_size", "grad_accum_steps", "seed", "max_train_samples", "group_by_length", "scheduler"})
# ...and these change nothing the run computes, so they change without a word.
QUIET_CHANGES = frozenset({"num_workers", "log_every", "resume", "cache_embeddings", "keep_checkpoints", "checkpoint_every_steps",
                           "checkpoint_every_minutes", "dist_timeout_minutes"})  # fmt: skip


class CheckpointError(MmsentError, RuntimeError):
    """A checkpoint cannot be written, or the newest one belongs to another run."""


@dataclass
class LoopState:
    """Where the loop is; runtime state, kept apart from the configs."""

    epoch: int = 1  # the epoch in progress, from 1
    batches_done: int = 0  # batches of that epoch already trained (per rank)
    optimizer_steps: int = 0
    loss_sum: float = 0.0  # this epoch's training loss so far, summed over items
    items_seen: int = 0
    media_issues: int = 0
    history: list[dict] = field(default_factory=list)  # one entry per validated epoch
    best_epoch: int | None = None
    epochs_without_gain: int = 0
    finished: bool = False  # early stopping ended the run
    skipped_steps: int = 0  # non-finite losses or gradients, over the whole run
    # Where a run resumed with other --epochs restarted its schedule: [optimizer step, rate factor there]
    # (training/loop.py: continue_schedule); None while the schedule is the one the run started with.
    schedule_restart: list | None = None


def trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The state dict without frozen parameters (they never change), copied to CPU."""
    frozen = {name for name, p in model.named_parameters() if not p.requires_grad}
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items() if k not in frozen}


def load_trainable(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Load what `trainable_state` saved; anything missing besides frozen parameters is an error."""
    frozen = {name for name, p in model.named_parameters() if not p.requires_grad}
    result = model.load_state_dict(state, strict=False)
    missing = sorted(set(result.missing_keys) - frozen)
    if missing or result.unexpected_keys:
        raise CheckpointError(f"weights do not fit this model: missing {missing[:3]}, unexpected {result.unexpected_keys[:3]}")


def frozen_digest(model: torch.nn.Module) -> str:
    """The frozen parameters' digest. They never change, so a run computes it once."""
    return tensors_digest((name, p) for name, p in model.named_parameters() if not p.requires_grad)


def rng_state() -> dict:
    """This process's random generators, in types that weights_only loading accepts."""
    kind, keys, position, has_gauss, cached = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "position": int(position),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},  # fmt: skip
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["position"], n["has_gauss"], n["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def build_payload(*, state: LoopState, configs: dict, data: dict[str, str], model: torch.nn.Module, frozen: str,
                  best: dict | None, optimizer, scheduler, scaler, rng_states: list[dict]) -> dict:
    """`frozen`: frozen_digest(model), computed once per run rather than hashed again each save."""
    return {
        "format_version": FORMAT_VERSION,
        "mmsent_version": __version__,
        "configs": configs,
        "data": data,  # each split's fingerprint (CSV bytes, clip names and sizes): resume on the same data only
        "labels": label_maps(),
        "loop": asdict(state),
        "model": trainable_state(model),
        "frozen_digest": frozen,
        "best_model": best,
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "scaler": scaler.state_dict(),
        "rng": rng_states,  # one per rank, in rank order
    }


def checkpoint_name(state: LoopState) -> str:
    return f"checkpoint-{state.epoch:04d}-{state.batches_done:07d}.pt"


class CheckpointFolder:
    """The run's checkpoint folder: write (keeping the newest `keep`), find the newest valid one."""

    def __init__(self, folder: Path, keep: int) -> None:
        self.folder = Path(folder)
        self.keep = keep

    def prepare(self) -> None:
        """Create the folder; an unusable one (a file in the way, no permission) raises OSError."""
        self.folder.mkdir(parents=True, exist_ok=True)

    def checkpoints(self) -> list[Path]:
        """Checkpoint files, newest first."""
        if not self.folder.is_dir():
            return []
        return sorted((p for p in self.folder.iterdir() if _NAME.match(p.name)), key=lambda p: p.name, reverse=True)

    def write(self, payload: dict, name: str) -> Path:
        """Write atomically, then the manifest, then drop all but the newest `keep`. On failure (a
        full disk) the temporary file is removed and the earlier checkpoints are left as they were."""
        path = self.folder / name
        landed = False
        try:
            self.prepare()
            save_torch_atomic(path, payload)
            landed = True
            manifest = {"file": path.name, "bytes": path.stat().st_size, "sha256": sha256_of(path),
                        "epoch": payload["loop"]["epoch"], "batches_done": payload["loop"]["batches_done"],
                        "format_version": FORMAT_VERSION}  # fmt: skip
            write_json_atomic(path.with_suffix(".json"), manifest)
        except (OSError, RuntimeError) as error:
            # A failed write is an OSError naming its cause (save_torch_atomic); RuntimeError: torch could not serialise.
            if landed:  # the new .pt replaced any file of that name, and has no manifest: not usable
                path.with_suffix(".json").unlink(missing_ok=True)
                path.unlink(missing_ok=True)
            raise CheckpointError(f"could not write checkpoint {path}: {str(error).splitlines()[0]}; "
                                  "earlier checkpoints are untouched") from error  # fmt: skip
        self.prune(self.keep)
        return path

    def prune(self, keep: int) -> None:
        """Delete all but the newest `keep` checkpoints."""
        for old in self.checkpoints()[keep:]:
            old.with_suffix(".json").unlink(missing_ok=True)  # the manifest first: a half-deleted pair is invalid
            old.unlink(missing_ok=True)

    def newest_valid(self) -> tuple[Path, dict] | None:
        """The newest checkpoint that checks out, or None; every one skipped is named with its reason."""
        for path in self.checkpoints():
            try:
                return path, self.read(path)
            except CheckpointError as problem:
                warnings.warn(f"skipping checkpoint: {problem}", stacklevel=2)
        return None

    def read(self, path: Path) -> dict:
        manifest_path = path.with_suffix(".json")
        if not manifest_path.is_file():
            raise CheckpointError(f"{path}: no manifest {manifest_path.name} (the write never finished)")
        try:
            manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
            expected_size, expected_hash = int(manifest["bytes"]), str(manifest["sha256"])
        except (ValueError, KeyError, TypeError) as error:
            raise CheckpointError(f"{manifest_path}: unreadable manifest ({error})") from error
        size = path.stat().st_size
        if size != expected_size:
            raise CheckpointError(f"{path}: {size} bytes, its manifest says {expected_size} (cut short?)")
        if sha256_of(path) != expected_hash:
            raise CheckpointError(f"{path}: contents differ from its manifest's SHA-256 (corrupted)")
        try:
            payload = torch.load(path, map_location="cpu", weights_only=True)
        except (pickle.UnpicklingError, RuntimeError, EOFError, OSError) as error:
            raise CheckpointError(f"{path}: refused by weights-only loading ({str(error).splitlines()[0]})") from error
        if not isinstance(payload, dict) or payload.get("format_version") != FORMAT_VERSION:
            raise CheckpointError(f"{path}: not a format {FORMAT_VERSION} mmsent checkpoint")
        return payload

    def set_aside(self) -> Path | None:
        """Move existing checkpoints into previous-TIME/ so a fresh run neither resumes nor deletes them."""
        found = self.checkpoints()
        if not found:
            return None
        aside = self.folder / time.strftime("previous-%Y%m%d-%H%M%S")
        aside.mkdir()
        for path in found:
            for part in (path, path.with_suffix(".json")):
                if part.exists():
                    part.rename(aside / part.name)
        return aside

    def remove_partial_writes(self) -> None:
        """Temporary files left by a process killed mid-write."""
        if self.folder.is_dir():
            for leftover in self.folder.glob(".checkpoint-*"):
                leftover.unlink(missing_ok=True)


def check_compatible(payload: dict, path: Path, configs: dict, world_size: int, data: dict[str, str] | None = None) -> list[str]:
    """Refuse to resume a different run: model and data settings must match, training settings apart
    from what may change (TRAIN_MUST_MATCH), and so must the data (where both the checkpoint and the
    caller have its fingerprints). A setting the checkpoint lacks (written before it existed) counts as
    the value it was trained with: MODEL_SETTINGS_ADDED's, else the setting's default. Returns the
    training settings that changed on purpose, as "name old -> new" lines."""
    changed = sorted(split for split, fingerprint in (payload.get("data") or {}).items()
                     if data is not None and split in data and data[split] != fingerprint)  # fmt: skip
    if changed:
        raise CheckpointError(f"{path} was written training on other data: the {', '.join(changed)} split(s) differ "
                              "(CSV or clips); give the same --data-dir, another checkpoint folder, or --resume false")  # fmt: skip
    differences, changes, restore = [], [], []
    for section in ("model", "data", "train"):
        now = _flat(configs[section])
        saved = _flat(_WRITTEN_BEFORE[section]) | _flat(payload["configs"][section])  # what a missing key was
        for key in sorted(now):  # a key only the checkpoint has: a setting since removed, nothing to compare
            if _plain(saved.get(key)) == _plain(now[key]):
                continue
            if section != "train" or key in TRAIN_MUST_MATCH:
                differences.append(f"{section}.{key} {_show(saved.get(key))} -> {_show(now[key])}")
                if saved.get(key) is not None:  # the option that gives it back (a default moved since, say)
                    restore.append(f"--{key.rpartition('.')[2].replace('_', '-')} {_show(saved[key])}")
            elif key not in QUIET_CHANGES:
                changes.append(f"{key} {_show(saved.get(key))} -> {_show(now[key])}")
    if differences:
        raise CheckpointError(
            f"{path} was written by a run with other settings ({'; '.join(differences)}); to continue it give "
            f"{' '.join(restore) or 'its settings'}, or use another checkpoint folder, or --resume false to start afresh"
        )  # fmt: skip
    if payload["labels"] != label_maps():
        raise CheckpointError(f"{path}: its label maps differ from this version's")
    if len(payload["rng"]) != world_size:
        # Each rank skips the batches it trained of the epoch in progress, and the schedule counts global steps:
        # with another number of processes both would be wrong (items trained twice, others skipped).
        raise CheckpointError(f"{path} was written by {len(payload['rng'])} training process(es), this run has "
                              f"{world_size}: resume with {len(payload['rng'])} (torchrun --nproc-per-node and nodes as "
                              "before), or --resume false to start afresh")  # fmt: skip
    return changes


def _defaults() -> dict[str, dict]:
    """What a checkpoint written before a setting existed was run with: the value MODEL_SETTINGS_ADDED
    names for model settings (and context turns 0, the log-mel, for data), else the setting's default."""
    data = asdict(DataConfig())
    data["text"] |= TEXT_SETTINGS_ADDED
    return {"model": asdict(ModelConfig()) | MODEL_SETTINGS_ADDED, "data": data, "train": asdict(TrainConfig())}


_WRITTEN_BEFORE = _defaults()


def _flat(settings: dict, prefix: str = "") -> dict:
    """Nested settings as one level: {"media": {"num_frames": 16}} -> {"media.num_frames": 16}."""
    flat = {}
    for key, value in settings.items():
        if isinstance(value, dict):
            flat |= _flat(value, f"{prefix}{key}.")
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _show(value) -> str:
    return ",".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)


def _plain(value):
    """Tuples and lists compare equal: JSON-like round trips turn one into the other."""
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value
