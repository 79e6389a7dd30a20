"""The training loop: `train` is the spine, reading top to bottom; `build_run` makes a run's parts,
`train_one_epoch` trains an epoch, `evaluate` scores a split, `end_epoch` keeps the best, `finish`
scores the test split and writes the results. Tests drive an epoch in-process through them.

Features and the settings that turn them on (all in TrainConfig unless named otherwise):
- AdamW (fused) with per-part learning rates: `encoder_learning_rate` for fine-tuned pretrained backbones,
  `learning_rate` for everything that starts random; no weight decay on biases and norms.
- Warm-up then cosine or linear decay, a constant rate, or halving on a plateau: `scheduler`, `warmup_ratio`.
- Class weights from the CSV labels (scikit-learn's compute_class_weight): `class_weights`.
- Label smoothing, gradient clipping, dropout (ModelConfig): `label_smoothing`, `grad_clip`.
- Mixed precision on CUDA: `amp`. Gradient accumulation: `grad_accum_steps`.
- Parallel decoding: `num_workers` (with pinned memory and persistent workers on CUDA).
- Decode once: with a cache folder (RunPaths.cache_dir) every clip is decoded once into the
  memory-mapped media cache (built, resumed or rebuilt as needed) and read from it; frozen
  backbones then run once per dataset and their outputs are reused (`cache_embeddings`).
- Batches of about one token length (much less padding for the text encoder): `group_by_length`.
- Quick experiments: `max_train_samples`. Early stopping on validation emotion weighted F1:
  `early_stopping_patience`. Repeatable runs on CPU: `seed`.
- Checkpoints at every epoch's end, every `checkpoint_every_steps` optimizer steps and, at the
  first optimizer step once `checkpoint_every_minutes` have passed since the last one, the newest
  `keep_checkpoints` kept; a run started again resumes from the newest valid one (`resume`) and
  ends as the uninterrupted run would have; a finished run keeps only its newest checkpoint
  (training/checkpointer.py). SIGTERM (SageMaker's stop and spot reclaim) or Ctrl-C: a checkpoint
  at the next batch boundary, then `TrainingInterrupted`.
- A non-finite loss or gradient skips its step; `max_bad_steps` in a row stop the run with a checkpoint.
  The device is read once per optimizer step (losses, finiteness, under torchrun the decisions every
  rank shares), never per micro-batch, so the host queues work ahead of the device.
- torchrun: DDP over every process (NCCL on GPUs, gloo on CPU), each reading its share of the data
  (DistributedSampler), gradients synchronised on the last accumulation micro-step only,
  validation gathered from all ranks, files and logs written by rank 0 alone. `batch_size` is
  per process: the global batch is batch_size x processes x grad_accum_steps.
- Every epoch: validation loss, accuracy, weighted and macro F1, per-class F1 for both heads, to
  TensorBoard (scalars, confusion matrices, learning rates; the model graph once; hparams at the
  end) and as a SageMaker metric line on stdout.
- The best epoch (validation emotion weighted F1) is saved as a model dir, with metrics.json,
  confusion-matrix PNGs and a training-curves PNG (training/run_outputs.py, written by rank 0); the
  test split, when there is one, is scored with the best weights.
"""

from __future__ import annotations

import contextlib
import math
import random
import time
from collections.abc import Callable
from datetime import timedelta
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Subset

from mmsent.config import AUDIO_CNN, VIDEO_R3D, DataConfig, ModelConfig, TrainConfig
from mmsent.data.cache import split_fingerprint
from mmsent.data.dataset import MeldDataset, count_issues
from mmsent.data.loader import make_loader
from mmsent.data.layout import SplitFiles
from mmsent.labels import TASKS
from mmsent.model.fusion import MultimodalSentimentModel
from mmsent.model.summary import format_parameter_counts, parameter_counts
from mmsent.pretrained import fetch_video_weights, load_tokenizer
from mmsent.training import distributed
from mmsent.training.sampler import ResumableSampler
from mmsent.training.checkpoint import LoopState, frozen_digest, load_trainable, trainable_state
from mmsent.training.checkpointer import Checkpointer
from mmsent.training.distributed import DistInfo
from mmsent.training.embeddings import attach_frozen_features
from mmsent.training.text_states import attach_text_states
from mmsent.training.errors import TrainingError, TrainingInterrupted
from mmsent.training.loss import MultiTaskLoss
from mmsent.training.metrics import format_head_metrics
from mmsent.training.model_card import model_card
from mmsent.training.modality_dropout import drop_modalities
from mmsent.training.precision import Precision, choose_precision
from mmsent.training.progress import Progress
from mmsent.training.run_outputs import RunOutputs, RunPaths
from mmsent.training.step import StepOutcome, gradient_norm, optimizer_step
from mmsent.training.stop_signal import StopSignal
from mmsent.training.tracking import TensorBoardLog, epoch_metrics, metric_line
from mmsent.model.fusion import to_device
from mmsent.training.validate import Interrupted, merge, predict_views, summarize

__all__ = ["Run", "RunPaths", "TrainingError", "TrainingInterrupted", "build_run", "evaluate", "train", "train_one_epoch"]


def train(splits: dict[str, SplitFiles], data_cfg: DataConfig, model_cfg: ModelConfig, cfg: TrainConfig,
          paths: RunPaths, dist: DistInfo = DistInfo()) -> dict:
    """Train on splits["train"], choose the best epoch on splits["dev"]; return the final metrics.
    Every output folder is made and proven writable first, and the run holds its checkpoint and
    model folders (rank 0, which writes them) until it ends: a second run on them stops at once."""
    if "train" not in splits or "dev" not in splits:
        raise TrainingError(f"training needs a train and a validation (dev) split; found {', '.join(splits) or 'none'}")
    outputs = RunOutputs(paths, dist)
    with outputs.hold():
        return _train(splits, data_cfg, model_cfg, cfg, paths, dist, outputs)


@dataclass
class Run:
    """What one training run is made of, built once by `build_run`: the epoch and validation functions
    read it, and `train` (the spine) passes it along."""

    splits: dict[str, SplitFiles]
    data_cfg: DataConfig
    model_cfg: ModelConfig
    cfg: TrainConfig
    paths: RunPaths
    dist: DistInfo
    outputs: RunOutputs
    device: torch.device
    precision: Precision
    say: Callable[..., None]  # print on rank 0, nothing elsewhere
    tokenizer: object
    datasets: dict[str, MeldDataset]
    train_items: Dataset  # the train split, or the subset of it that max_train_samples chose
    train_sampler: ResumableSampler
    train_loader: DataLoader
    val_loader: DataLoader
    batches_per_epoch: int
    model: MultimodalSentimentModel
    trained: torch.nn.Module  # what the training step calls: `model`, or its DDP wrapper
    loss_fn: MultiTaskLoss
    optimizer: torch.optim.Optimizer
    scheduler: object
    scaler: object
    log: TensorBoardLog
    checkpointer: Checkpointer
    setup_seconds: dict[str, float]  # what decoding once costs up front: output/timings.json (read by the benchmarks)
    stored_bytes: dict[str, int]  # what it keeps (the text encoder's lower layers' states): timings.json too
    loader: Callable[..., DataLoader]  # loader(dataset, sampler): the run's batch size, workers and seed
    bad_in_a_row: int = 0  # optimizer steps with a non-finite loss in a row, across epoch boundaries

    def save_model(self, weights: dict, checkpoint: Path) -> None:
        self.outputs.save_model(self.model, weights, self.data_cfg, self.model_cfg, self.tokenizer, checkpoint, self.cfg)


def _train(splits: dict[str, SplitFiles], data_cfg: DataConfig, model_cfg: ModelConfig, cfg: TrainConfig,
           paths: RunPaths, dist: DistInfo, outputs: RunOutputs) -> dict:
    run = build_run(splits, data_cfg, model_cfg, cfg, paths, dist, outputs)
    state, best_weights = start(run)
    stop = StopSignal()
    with stop:
        while state.epoch <= cfg.epochs and not state.finished:
            train_stats = train_one_epoch(run, state, stop, save=lambda: run.checkpointer.save(state, best_weights))
            try:
                validation = evaluate(run, run.val_loader, f"epoch {state.epoch}/{cfg.epochs} validation",
                                      should_stop=lambda: distributed.any_rank(dist, [stop.requested], run.device)[0])  # fmt: skip
            except Interrupted:
                raise TrainingInterrupted(stop.signal or 15, run.checkpointer.save(state, best_weights)) from None
            best_weights = end_epoch(run, state, train_stats, validation, best_weights)
    return finish(run, state, best_weights)


def build_run(splits: dict[str, SplitFiles], data_cfg: DataConfig, model_cfg: ModelConfig, cfg: TrainConfig,
              paths: RunPaths, dist: DistInfo, outputs: RunOutputs) -> Run:
    """Data, model, loss, optimizer, schedule, TensorBoard log and checkpointer for one run."""
    timeout = timedelta(minutes=cfg.dist_timeout_minutes) if cfg.dist_timeout_minutes is not None else None
    device = distributed.start(dist, timeout)
    say = print if dist.is_main else _silent
    # Every rank, on every machine, starts from the same seed, so all build the same weights: frozen backbones
    # are never synchronised by DDP (which copies rank 0's trainable ones), and the frozen-output store is
    # keyed by their weights, so a rank with other random ones would look for outputs no rank wrote.
    seed_everything(cfg.seed)
    if "video" in model_cfg.modalities and model_cfg.video_model == VIDEO_R3D:
        if dist.local_rank == 0:  # one download per machine, before the hours a cache build can take
            fetch_video_weights(model_cfg.video_weights)
        distributed.setup_barrier(dist)
    precision = choose_precision(cfg.amp, device, cfg.amp_dtype)
    say(f"device {device}, {precision.name}, {torch.get_num_threads()} torch threads"
        + (f", {dist.world_size} processes (DDP)" if dist.enabled else ""))  # fmt: skip

    # Data: text is tokenised once; clips are read from the media cache when there is one, else
    # decoded by the loader's workers. Every rank reads its own share in an order fixed by
    # (seed, epoch), which is what lets a run resume mid-epoch.
    tokenizer = load_tokenizer(model_cfg.text_model)
    setup_seconds, stored_bytes = {}, {}
    started = time.monotonic()
    caches = _media_caches(splits, data_cfg, cfg, paths, dist, say)
    setup_seconds["media_cache"] = time.monotonic() - started
    datasets = {split: MeldDataset.from_split(files, tokenizer, data_cfg, caches.get(split)) for split, files in splits.items()}
    train_set, val_set = datasets["train"], datasets["dev"]
    train_items = train_set
    if cfg.max_train_samples is not None and cfg.max_train_samples < len(train_set):
        chosen = np.random.default_rng(cfg.seed).choice(len(train_set), cfg.max_train_samples, replace=False)
        train_items = Subset(train_set, sorted(chosen.tolist()))
    lengths = train_set.token_lengths() if cfg.group_by_length and "text" in data_cfg.modalities else None
    if lengths is not None and isinstance(train_items, Subset):
        lengths = [lengths[i] for i in train_items.indices]
    train_sampler = ResumableSampler(train_items, dist, shuffle=True, seed=cfg.seed, lengths=lengths, batch_size=cfg.batch_size)

    def loader(dataset, sampler=None):
        return make_loader(dataset, cfg.batch_size, cfg.num_workers, device, sampler, cfg.seed)

    train_loader = loader(train_items, train_sampler)
    val_loader = loader(val_set, ResumableSampler(val_set, dist, shuffle=False))
    batches_per_epoch = math.ceil(train_sampler.num_samples / cfg.batch_size)
    say(f"train {len(train_items)} items from {splits['train'].csv_path}; validation {len(val_set)} from {splits['dev'].csv_path}")

    # Model, loss, optimizer, schedule.
    model = MultimodalSentimentModel(model_cfg).to(device)
    if dist.rank:  # then each rank its own stream (dropout, modality dropout); rank 0's is a single process's
        seed_everything(cfg.seed + dist.rank)
    say(format_parameter_counts(parameter_counts(model)))
    if "video" in model_cfg.freeze and "video" in model_cfg.modalities and model_cfg.video_model == VIDEO_R3D and model_cfg.video_weights == "none":
        say("note: the video backbone is frozen with random weights: a fixed random feature extractor "
            "(--video-weights kinetics400 or PATH gives pretrained features)")  # fmt: skip
    if cfg.cache_embeddings:
        started = time.monotonic()
        served = attach_frozen_features(model, datasets, data_cfg, loader, device, dist, say)
        setup_seconds["frozen_outputs"] = time.monotonic() - started
        if served:
            say(f"frozen {', '.join(served)} backbone outputs come from the cache: each epoch trains the rest only")
        started = time.monotonic()
        stored = attach_text_states(model, datasets, data_cfg, device, dist, say)
        if stored:
            setup_seconds["text_states"] = time.monotonic() - started
            stored_bytes["text_states"] = stored
            say(f"the text encoder's lower {model.encoders['text'].cut} layers run once ({stored / 2**20:.1f} MB of "
                f"states): each epoch trains its top {model_cfg.train_top_layers}")  # fmt: skip
    positions = _positions(train_items)
    class_weights = {
        task: class_weight_tensor([train_set.labels(task)[i] for i in positions], len(names), cfg.class_weights, device)
        for task, names in TASKS.items()
    }
    loss_fn = MultiTaskLoss(class_weights, cfg.label_smoothing, cfg.sentiment_loss_weight).to(device)
    # Fused AdamW: one kernel over all parameters instead of a loop of tensor ops; the same update and
    # state dict (checkpoints resume either way). Text-only on this 2-core CPU it took a batch of 16
    # from 238 to 227 ms (benchmarks/bench_text.py): the encoder's forward and backward dominate. The CPU
    # kernel exists since torch 2.4 (pytorch/pytorch#123074); the SageMaker training images' torch is 2.10.
    optimizer = torch.optim.AdamW(parameter_groups(model, cfg), fused=device.type in ("cpu", "cuda"))
    optimizer_steps_per_epoch = -(-batches_per_epoch // cfg.grad_accum_steps)
    scheduler = make_scheduler(optimizer, cfg, optimizer_steps_per_epoch * cfg.epochs)
    scaler = precision.scaler()
    checkpointer = Checkpointer(
        paths.checkpoint_dir, cfg, dist, model=model, optimizer=optimizer, scheduler=scheduler, scaler=scaler,
        configs={"model": asdict(model_cfg), "data": asdict(data_cfg), "train": asdict(cfg)},
        data={split: split_fingerprint(files, datasets[split].utterances, times=False) for split, files in splits.items()},
        frozen=frozen_digest(model),
    )  # fmt: skip
    return Run(splits=splits, data_cfg=data_cfg, model_cfg=model_cfg, cfg=cfg, paths=paths, dist=dist, outputs=outputs,
               device=device, precision=precision, say=say, tokenizer=tokenizer, datasets=datasets,
               train_items=train_items, train_sampler=train_sampler, train_loader=train_loader, val_loader=val_loader,
               batches_per_epoch=batches_per_epoch, model=model, trained=_wrap_ddp(model, dist, device), loss_fn=loss_fn,
               optimizer=optimizer, scheduler=scheduler, scaler=scaler,
               log=TensorBoardLog(paths.tensorboard_dir, enabled=dist.is_main), checkpointer=checkpointer,
               setup_seconds=setup_seconds, stored_bytes=stored_bytes, loader=loader)  # fmt: skip


def start(run: Run) -> tuple[LoopState, dict | None]:
    """Where the run begins: the newest valid checkpoint's state and best weights, or a fresh start
    (which logs the model graph to TensorBoard)."""
    cfg, say, checkpointer = run.cfg, run.say, run.checkpointer
    if not cfg.resume and (aside := checkpointer.set_aside()):
        say(f"--resume false: earlier checkpoints moved to {aside}")
    resumed = checkpointer.resume() if cfg.resume else None
    if resumed is None:
        run.log.graph(run.model, to_device(next(iter(run.val_loader)), run.device))
        return LoopState(), None
    state, best_weights = resumed
    continue_schedule(run, state, run.checkpointer.saved_train.get("epochs", cfg.epochs), run.checkpointer.rate_reached)
    folder = run.paths.checkpoint_dir
    if state.finished or state.epoch > cfg.epochs:
        say(f"resumed from {folder}: training already ended after epoch {state.epoch - 1}; scoring the best epoch again")
    else:
        say(f"resumed from {folder}: epoch {state.epoch}, {state.batches_done} of {run.batches_per_epoch} batches done")
    if best_weights is not None:  # the model dir may be gone with the old instance, or never written
        run.save_model(best_weights, folder)
    return state, best_weights


def train_one_epoch(run: Run, state: LoopState, stop: StopSignal, save: Callable[[], Path]) -> dict:
    """Train epoch `state.epoch` (or what is left of it, after a resume) and return its stats: loss,
    seconds, media issues. `save` writes a checkpoint of the run as it stands (when one is due, on a
    stop signal, before giving up on a diverged run)."""
    cfg, dist, device, model, say = run.cfg, run.dist, run.device, run.model, run.say
    epoch = state.epoch
    model.train()
    run.train_sampler.set_epoch(epoch, skip=state.batches_done * cfg.batch_size)
    started = time.monotonic()
    progress = Progress(run.batches_per_epoch, f"epoch {epoch}/{cfg.epochs} train", cfg.log_every,
                        done=state.batches_done, enabled=dist.is_main)  # fmt: skip
    run.optimizer.zero_grad(set_to_none=True)
    # The step's non-finite losses, its loss x items and its items, kept on the device and read once per
    # optimizer step (a read per micro-batch would make the host wait for the device each time).
    pending = torch.zeros(3, dtype=torch.float64, device=device)
    for batch in run.train_loader:
        last_micro_step = (state.batches_done + 1) % cfg.grad_accum_steps == 0 or state.batches_done + 1 == run.batches_per_epoch
        state.media_issues += sum(count_issues(batch["issues"]).values())
        items = len(batch["index"])
        batch = to_device(drop_modalities(batch, cfg.modality_dropout, cfg.modality_dropout_on), device)
        # DDP averages gradients across ranks in backward: only on the micro-step that steps.
        sync = contextlib.nullcontext() if last_micro_step or not dist.enabled else run.trained.no_sync()
        with sync:
            with run.precision.autocast():
                loss = run.loss_fn(run.trained(batch), batch)
            # A non-finite loss's backward runs too: whether it was finite is read at the step, which it drops.
            run.scaler.scale(loss / cfg.grad_accum_steps).backward()
        loss = loss.detach().to(torch.float64)
        finite = torch.isfinite(loss)
        pending += torch.stack([(~finite).to(torch.float64), torch.where(finite, loss * items, 0.0), finite.to(torch.float64) * items])
        state.batches_done += 1
        if last_micro_step:
            norm = gradient_norm(model, run.scaler, cfg.grad_clip)
            device_flags = torch.stack([pending[0] > 0] + ([] if norm is None else [~torch.isfinite(norm)]))
            flags, (loss_sum, items_seen) = distributed.read_step(
                dist, device_flags, [stop.requested, run.checkpointer.time_due()], pending[1:])  # fmt: skip
            bad_loss, bad_gradients = flags[0], norm is not None and flags[1]
            stop_now, time_due = flags[-2:]
            pending.zero_()
            state.loss_sum += loss_sum
            state.items_seen += int(items_seen)
            outcome = optimizer_step(model, run.optimizer, run.scaler, run.scheduler, cfg,
                                     losses_finite=not bad_loss, gradients_finite=not bad_gradients)  # fmt: skip
            state.optimizer_steps += 1
            if outcome is not StepOutcome.STEPPED:
                state.skipped_steps += 1
            if outcome is StepOutcome.BAD_GRADIENTS:
                say(f"warning: non-finite gradients at epoch {epoch} batch {state.batches_done}: step skipped")
            run.bad_in_a_row = run.bad_in_a_row + 1 if outcome is StepOutcome.DROPPED else 0
            if outcome is StepOutcome.DROPPED:
                say(f"warning: non-finite loss at epoch {epoch} batch {state.batches_done}: step skipped "
                    f"({run.bad_in_a_row} in a row, {state.skipped_steps} in the run)")  # fmt: skip
                if run.bad_in_a_row >= cfg.max_bad_steps:
                    path = save()
                    raise TrainingError(f"{run.bad_in_a_row} steps in a row with a non-finite loss (epoch {epoch}, batch "
                                        f"{state.batches_done}): training diverged; the last good state is in {path}. "
                                        "Lower --learning-rate, or lower --grad-clip to clip harder")  # fmt: skip
            if stop_now:
                progress.close()
                raise TrainingInterrupted(stop.signal or 15, save())
            if time_due or run.checkpointer.steps_due(state.optimizer_steps):
                save()
        progress.update(loss=state.loss_sum / max(state.items_seen, 1))  # as of the last optimizer step
    progress.close()
    loss_sum, items_seen, media_issues = distributed.sum_over_ranks(
        dist, [state.loss_sum, state.items_seen, state.media_issues], device)  # fmt: skip
    if items_seen == 0:  # however short the epoch, an untrained model must not be saved as the result
        raise TrainingError(f"every training step of epoch {epoch} was skipped for a non-finite loss: nothing "
                            "was learnt; check the learning rates, loss weights and inputs")  # fmt: skip
    return {"loss": loss_sum / max(items_seen, 1), "seconds": time.monotonic() - started, "media_issues": int(media_issues)}


def end_epoch(run: Run, state: LoopState, train_stats: dict, validation: dict, best_weights: dict | None) -> dict | None:
    """Report the epoch (history, TensorBoard, the metric line), keep its weights if it is the best so
    far, decide on early stopping, checkpoint, and write the model dir on a new best. Returns the best
    weights."""
    cfg, epoch = run.cfg, state.epoch
    if cfg.scheduler == "plateau":
        run.scheduler.step(validation["emotion"]["weighted_f1"])
    rates = learning_rates(run.optimizer)
    state.history.append({"epoch": epoch, "train": train_stats, "validation": validation, "learning_rates": rates})
    run.log.epoch(epoch, train_stats, validation, rates)
    run.say(metric_line(epoch_metrics(epoch, train_stats, validation)), flush=True)
    best_score = state.history[state.best_epoch - 1]["validation"]["emotion"]["weighted_f1"] if state.best_epoch else None
    improved = best_score is None or validation["emotion"]["weighted_f1"] > best_score
    if improved:
        state.best_epoch, state.epochs_without_gain = epoch, 0
        best_weights = trainable_state(run.model)
    else:
        state.epochs_without_gain += 1
        if cfg.early_stopping_patience and state.epochs_without_gain >= cfg.early_stopping_patience:
            run.say(f"early stopping: no better validation emotion weighted F1 for {state.epochs_without_gain} epochs")
            state.finished = True
    state.epoch, state.batches_done = epoch + 1, 0
    state.loss_sum, state.items_seen, state.media_issues = 0.0, 0, 0
    saved = run.checkpointer.save(state, best_weights)  # first: a model dir that cannot be written then loses no epoch
    if improved:
        run.save_model(best_weights, saved)
    return best_weights


def finish(run: Run, state: LoopState, best_weights: dict | None) -> dict:
    """The best epoch's weights: the test split scored, metrics, history and figures written, hparams
    logged. Returns the final metrics."""
    cfg, say = run.cfg, run.say
    if state.best_epoch is None:
        raise TrainingError(f"no epoch was validated: --epochs {cfg.epochs} is below the checkpoint's epoch {state.epoch}")
    run.checkpointer.finished()  # the model dir is written: older checkpoints only resume earlier points
    load_trainable(run.model, best_weights)  # the frozen weights it lacks never changed
    best = state.history[state.best_epoch - 1]
    final = {"best_epoch": state.best_epoch, "epochs_run": len(state.history), "validation": best["validation"],
             "skipped_steps": state.skipped_steps}  # fmt: skip
    if "test" in run.splits:
        test_set = run.datasets["test"]
        test_loader = run.loader(test_set, ResumableSampler(test_set, run.dist, shuffle=False))
        final["test"] = evaluate(run, test_loader, "test")
    device = run.device
    peak = {"peak_gpu_memory_mb": torch.cuda.max_memory_allocated(device) / 2**20} if device.type == "cuda" else {}
    items = {"train": len(run.train_items)} | {split: len(data) for split, data in run.datasets.items() if split != "train"}
    splits = {split: {"items": items[split], "csv": str(files.csv_path)} for split, files in run.splits.items()}
    card = model_card(final, splits, run.data_cfg, run.model_cfg, cfg)
    run.outputs.write_results(final, state.history, {"setup_seconds": run.setup_seconds, "stored_bytes": run.stored_bytes} | peak, card)
    headline = {f"{split}_{task}_weighted_f1": final[split][task]["weighted_f1"]
                for split in ("validation", "test") if split in final for task in TASKS}  # fmt: skip
    run.log.hparams({**asdict(cfg), **{f"model_{k}": v for k, v in asdict(run.model_cfg).items()}}, headline)
    run.log.close()
    for split in ("validation", "test"):
        if split in final:
            say(f"\n{split} (best epoch {state.best_epoch}):")
            for task in TASKS:
                say(format_head_metrics(task, final[split][task]))
    distributed.stop(run.dist)
    return final


def _media_caches(splits: dict[str, SplitFiles], data_cfg: DataConfig, cfg: TrainConfig, paths: RunPaths,
                  dist: DistInfo, say) -> dict:
    """Readers of the media cache, brought up to date first by one process per machine."""
    if paths.cache_dir is None or data_cfg.modalities == ("text",):
        return {}
    from mmsent.data.cache import build_cache

    workers = max(cfg.num_workers, 1)
    if dist.local_rank == 0:
        caches = build_cache(splits, data_cfg.media, paths.cache_dir, workers, say=say, rebuild=paths.rebuild_cache)
    distributed.setup_barrier(dist)  # the others wait out the build, however long, outside the training group
    if dist.local_rank != 0:
        caches = build_cache(splits, data_cfg.media, paths.cache_dir, workers, progress=False, say=_silent)  # finds it complete
    if caches:
        say(f"media cache: {paths.cache_dir} ({', '.join(caches)})")
    return caches


def evaluate(run: Run, loader: DataLoader, desc: str, should_stop=None) -> dict:
    """Metrics over the whole split: each rank predicts its share, every rank gets all of them.
    A model of text and other modalities is also scored with the text hidden from every item, as a
    user's clip without its transcript is (`without_text`: both heads' metrics), from the same pass."""
    model, dist = run.model, run.dist
    modalities = model.cfg.modalities
    views = {"all": ()} | ({"without_text": ("text",)} if "text" in modalities and len(modalities) > 1 else {})
    progress = Progress(len(loader), desc, run.cfg.log_every, enabled=dist.is_main)
    predictions = predict_views(model, loader, run.device, run.precision, views, should_stop, progress)
    ranks = distributed.gather_objects(dist, predictions)
    merged = {view: merge([rank[view] for rank in ranks]) for view in views}
    summary = summarize(merged["all"], run.loss_fn)
    if "without_text" in merged:
        without_text = summarize(merged["without_text"])
        summary["without_text"] = {task: without_text[task] for task in TASKS}
    return summary


def _wrap_ddp(model: torch.nn.Module, dist: DistInfo, device: torch.device) -> torch.nn.Module:
    if not dist.enabled:
        return model
    from torch.nn.parallel import DistributedDataParallel

    # No device_ids: the batches are on the device already, and with device_ids DDP would copy every tensor of
    # the batch there again, the presence masks kept on the host (fusion.to_device) included.
    return DistributedDataParallel(model, device_ids=None)


def _silent(*_args, **_kwargs) -> None:
    """`print` on ranks other than 0."""


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _positions(items) -> list[int]:
    return list(items.indices) if isinstance(items, Subset) else list(range(len(items)))


def class_weight_tensor(labels: list[int], classes: int, mode: str, device: torch.device) -> torch.Tensor | None:
    """Inverse-frequency weights from the labels alone (no clip is decoded); 1 for classes absent from them.
    `sqrt` takes their square root: rare classes still count more, without swamping the frequent ones."""
    if mode == "none":
        return None
    from sklearn.utils.class_weight import compute_class_weight

    present = np.unique(labels)
    weights = np.ones(classes, dtype=np.float32)
    weights[present] = compute_class_weight("balanced", classes=present, y=np.asarray(labels))
    if mode == "sqrt":
        weights = np.sqrt(weights)
    return torch.tensor(weights, device=device)


def parameter_groups(model: MultimodalSentimentModel, cfg: TrainConfig) -> list[dict]:
    """Fine-tuned pretrained backbones at the encoder rate, everything else at the base rate;
    biases and normalisation weights without weight decay."""
    starts_pretrained = ("text", "video") + (() if model.cfg.audio_model == AUDIO_CNN else ("audio",))
    pretrained = {id(p) for name in starts_pretrained if name in model.encoders for p in model.encoders[name].backbone.parameters()}
    groups: dict[str, dict] = {}
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        part = "encoders" if id(parameter) in pretrained else "new_layers"
        decay = parameter.ndim > 1
        key = part if decay else f"{part}_no_decay"
        group = groups.setdefault(key, {
            "name": key,
            "params": [],
            "lr": cfg.encoder_learning_rate if part == "encoders" else cfg.learning_rate,
            "weight_decay": cfg.weight_decay if decay else 0.0,
        })  # fmt: skip
        group["params"].append(parameter)
    return list(groups.values())


def make_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig, total_steps: int):
    from transformers import get_constant_schedule_with_warmup, get_cosine_schedule_with_warmup, get_linear_schedule_with_warmup

    warmup = int(cfg.warmup_ratio * total_steps)
    if cfg.scheduler == "cosine":
        return get_cosine_schedule_with_warmup(optimizer, warmup, total_steps)
    if cfg.scheduler == "linear":
        return get_linear_schedule_with_warmup(optimizer, warmup, total_steps)
    if cfg.scheduler == "constant":
        return get_constant_schedule_with_warmup(optimizer, warmup)
    return torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="max", factor=0.5, patience=1)


def continue_schedule(run: Run, state: LoopState, saved_epochs: int, rate_reached: float) -> None:
    """A run resumed with other --epochs goes on from the rate it had reached, never jumping: rebuilt for
    the new total, warm-up then cosine or linear would set the rate of a far earlier point of the curve
    (after a finished run, from about zero to half the base rate at once). So the schedule restarts
    where the run stands: it warms up from the current rate to the base rate over the warm-up share of
    the steps left, then decays as before to zero at the new end (with no warm-up, it decays on from the
    current rate). A constant or plateau schedule does not depend on the total and goes on as it was."""
    cfg, scheduler = run.cfg, run.scheduler
    if cfg.scheduler not in ("cosine", "linear"):
        return
    if saved_epochs != cfg.epochs:
        state.schedule_restart = [scheduler.last_epoch, rate_reached]
        run.say(f"--epochs {saved_epochs} -> {cfg.epochs}: the {cfg.scheduler} schedule restarts from the rate reached at "
                f"step {scheduler.last_epoch}: warm-up to --learning-rate, then down to zero at the new end")  # fmt: skip
    if state.schedule_restart is None:
        return
    start, start_factor = state.schedule_restart
    total = -(-run.batches_per_epoch // cfg.grad_accum_steps) * cfg.epochs
    factor = _restarted_factor(cfg.scheduler, cfg.warmup_ratio, start, start_factor, total)
    scheduler.lr_lambdas = [factor] * len(scheduler.lr_lambdas)
    for group, base in zip(run.optimizer.param_groups, scheduler.base_lrs):
        group["lr"] = base * factor(scheduler.last_epoch)


def _restarted_factor(kind: str, warmup_ratio: float, start: int, start_factor: float, total: int):
    span = max(total - start, 1)
    warm = int(warmup_ratio * span)

    def factor(step: int) -> float:
        done = step - start
        if done < warm:
            return start_factor + (1.0 - start_factor) * done / warm
        progress = min(max((done - warm) / max(span - warm, 1), 0.0), 1.0)
        shape = 0.5 * (1.0 + math.cos(math.pi * progress)) if kind == "cosine" else 1.0 - progress
        return shape * (1.0 if warm else start_factor)

    return factor


def learning_rates(optimizer: torch.optim.Optimizer) -> dict[str, float]:
    return {g["name"]: g["lr"] for g in optimizer.param_groups if not g["name"].endswith("_no_decay")}
