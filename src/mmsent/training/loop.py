"""The training loop, top to bottom, in one function: `train`.

Features and the settings that turn them on (all in TrainConfig unless named otherwise):
- AdamW with per-part learning rates: `encoder_learning_rate` for fine-tuned pretrained backbones,
  `learning_rate` for everything that starts random; no weight decay on biases and norms.
- Warm-up then cosine or linear decay, a constant rate, or halving on a plateau: `scheduler`, `warmup_ratio`.
- Class weights from the CSV labels (scikit-learn's compute_class_weight): `class_weights`.
- Label smoothing, gradient clipping, dropout (ModelConfig): `label_smoothing`, `grad_clip`.
- Mixed precision on CUDA: `amp`. Gradient accumulation: `grad_accum_steps`.
- Parallel decoding: `num_workers` (with pinned memory and persistent workers on CUDA).
- Quick experiments: `max_train_samples`. Early stopping on validation emotion weighted F1:
  `early_stopping_patience`. Repeatable runs on CPU: `seed`.
- Every epoch: validation loss, accuracy, weighted and macro F1, per-class F1 for both heads, to
  TensorBoard (scalars, confusion matrices, learning rates; the model graph once; hparams at the
  end) and as a SageMaker metric line on stdout.
- The best epoch (validation emotion weighted F1) is saved as a model dir, with metrics.json,
  confusion-matrix PNGs and a training-curves PNG; the test split, when there is one, is scored
  with the best weights.
"""

from __future__ import annotations

import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Subset

from mmsent.config import DataConfig, ModelConfig, TrainConfig
from mmsent.data.dataset import MeldDataset, collate, count_issues, worker_init
from mmsent.data.layout import SplitFiles
from mmsent.labels import TASKS
from mmsent.model.fusion import MultimodalSentimentModel
from mmsent.model.summary import format_parameter_counts, parameter_counts
from mmsent.model_dir import save_model_dir, write_json_atomic
from mmsent.pretrained import load_tokenizer
from mmsent.training.metrics import curves_figure, format_head_metrics, save_confusion_pngs, save_figure
from mmsent.training.precision import choose_precision
from mmsent.training.progress import Progress
from mmsent.training.tracking import TensorBoardLog, epoch_metrics, metric_line
from mmsent.training.validate import MultiTaskLoss, predict, summarize, to_device


class TrainingError(RuntimeError):
    """Training cannot start or go on; the message says why."""


@dataclass(frozen=True)
class RunPaths:
    model_dir: Path  # the best model: weights, config, labels, metrics, figures
    tensorboard_dir: Path  # TensorBoard event files
    output_dir: Path  # everything else worth keeping: per-epoch history


def train(splits: dict[str, SplitFiles], data_cfg: DataConfig, model_cfg: ModelConfig, cfg: TrainConfig,
          paths: RunPaths) -> dict:
    """Train on splits["train"], choose the best epoch on splits["dev"]; return the final metrics."""
    if "train" not in splits or "dev" not in splits:
        raise TrainingError(f"training needs a train and a validation (dev) split; found {', '.join(splits) or 'none'}")
    seed_everything(cfg.seed)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    precision = choose_precision(cfg.amp, device)
    print(f"device {device}, {precision.name}, {torch.get_num_threads()} torch threads")

    # Data: text is tokenised once; clips are decoded by the loader's workers.
    tokenizer = load_tokenizer(model_cfg.text_model)
    train_set = MeldDataset.from_split(splits["train"], tokenizer, data_cfg)
    val_set = MeldDataset.from_split(splits["dev"], tokenizer, data_cfg)
    train_items = train_set
    if cfg.max_train_samples is not None and cfg.max_train_samples < len(train_set):
        chosen = np.random.default_rng(cfg.seed).choice(len(train_set), cfg.max_train_samples, replace=False)
        train_items = Subset(train_set, sorted(chosen.tolist()))
    train_loader = make_loader(train_items, cfg, device, shuffle=True)
    val_loader = make_loader(val_set, cfg, device, shuffle=False)
    print(f"train {len(train_items)} items from {splits['train'].csv_path}; validation {len(val_set)} from {splits['dev'].csv_path}")

    # Model, loss, optimizer, schedule.
    model = MultimodalSentimentModel(model_cfg).to(device)
    print(format_parameter_counts(parameter_counts(model)))
    if "video" in model_cfg.freeze and "video" in model_cfg.modalities and model_cfg.video_weights == "none":
        print("note: the video backbone is frozen with random weights: a fixed random feature extractor "
              "(--video-weights kinetics400 or PATH gives pretrained features)")  # fmt: skip
    positions = _positions(train_items)
    class_weights = {
        task: class_weight_tensor([train_set.labels(task)[i] for i in positions], len(names), cfg.class_weights, device)
        for task, names in TASKS.items()
    }
    loss_fn = MultiTaskLoss(class_weights, cfg.label_smoothing, cfg.sentiment_loss_weight).to(device)
    optimizer = torch.optim.AdamW(parameter_groups(model, cfg))
    steps_per_epoch = -(-len(train_loader) // cfg.grad_accum_steps)
    scheduler = make_scheduler(optimizer, cfg, steps_per_epoch * cfg.epochs)
    scaler = precision.scaler()

    log = TensorBoardLog(paths.tensorboard_dir)
    log.graph(model, to_device(next(iter(val_loader)), device))
    history: list[dict] = []
    best: dict | None = None
    epochs_without_gain = 0
    for epoch in range(1, cfg.epochs + 1):
        # ---- train one epoch
        model.train()
        started = time.monotonic()
        running_loss, seen, issues = 0.0, 0, 0
        progress = Progress(len(train_loader), f"epoch {epoch}/{cfg.epochs} train", cfg.log_every)
        optimizer.zero_grad(set_to_none=True)
        for step, batch in enumerate(train_loader):
            issues += sum(count_issues(batch).values())
            batch = to_device(batch, device)
            with precision.autocast():
                logits = model(batch)
                loss = loss_fn(logits, batch)
            scaler.scale(loss / cfg.grad_accum_steps).backward()
            last_micro_step = (step + 1) % cfg.grad_accum_steps == 0 or step + 1 == len(train_loader)
            if last_micro_step:
                if cfg.grad_clip > 0:
                    scaler.unscale_(optimizer)
                    torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                scaler.step(optimizer)
                scaler.update()
                optimizer.zero_grad(set_to_none=True)
                if cfg.scheduler != "plateau":
                    scheduler.step()
            running_loss += loss.item() * len(batch["index"])
            seen += len(batch["index"])
            progress.update(loss=running_loss / seen)
        progress.close()
        train_stats = {"loss": running_loss / max(seen, 1), "seconds": time.monotonic() - started, "media_issues": issues}

        # ---- validate, report, keep the best
        validation = summarize(predict(model, val_loader, device, precision, loss_fn))
        if cfg.scheduler == "plateau":
            scheduler.step(validation["emotion"]["weighted_f1"])
        rates = learning_rates(optimizer)
        history.append({"epoch": epoch, "train": train_stats, "validation": validation, "learning_rates": rates})
        log.epoch(epoch, train_stats, validation, rates)
        print(metric_line(epoch_metrics(epoch, train_stats, validation)), flush=True)
        score = validation["emotion"]["weighted_f1"]
        if best is None or score > best["validation"]["emotion"]["weighted_f1"]:
            best = history[-1]
            epochs_without_gain = 0
            save_model_dir(paths.model_dir, model, data_cfg, model_cfg, tokenizer)
        else:
            epochs_without_gain += 1
            if cfg.early_stopping_patience and epochs_without_gain >= cfg.early_stopping_patience:
                print(f"early stopping: no better validation emotion weighted F1 for {epochs_without_gain} epochs")
                break

    # ---- the best epoch's weights: test split, files, hparams
    model.load_state_dict(torch.load(paths.model_dir / "model.pth", map_location=device, weights_only=True))
    final = {"best_epoch": best["epoch"], "epochs_run": len(history), "validation": best["validation"]}
    if "test" in splits:
        test_set = MeldDataset.from_split(splits["test"], tokenizer, data_cfg)
        final["test"] = summarize(predict(model, make_loader(test_set, cfg, device, shuffle=False), device, precision, loss_fn))
    write_reports(paths, final, history)
    headline = {f"{split}_{task}_weighted_f1": final[split][task]["weighted_f1"]
                for split in ("validation", "test") if split in final for task in TASKS}  # fmt: skip
    log.hparams({**asdict(cfg), **{f"model_{k}": v for k, v in asdict(model_cfg).items()}}, headline)
    log.close()
    for split in ("validation", "test"):
        if split in final:
            print(f"\n{split} (best epoch {best['epoch']}):")
            for task in TASKS:
                print(format_head_metrics(task, final[split][task]))
    return final


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def make_loader(dataset, cfg: TrainConfig, device: torch.device, shuffle: bool) -> DataLoader:
    workers = cfg.num_workers
    return DataLoader(
        dataset,
        batch_size=cfg.batch_size,
        shuffle=shuffle,
        collate_fn=collate,
        num_workers=workers,
        worker_init_fn=worker_init if workers else None,
        persistent_workers=workers > 0,
        pin_memory=device.type == "cuda",
        generator=torch.Generator().manual_seed(cfg.seed) if shuffle else None,
    )


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
    pretrained = {id(p) for name in ("text", "video") if name in model.encoders for p in model.encoders[name].backbone.parameters()}
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


def learning_rates(optimizer: torch.optim.Optimizer) -> dict[str, float]:
    return {g["name"]: g["lr"] for g in optimizer.param_groups if not g["name"].endswith("_no_decay")}


def write_reports(paths: RunPaths, final: dict, history: list[dict]) -> None:
    """metrics.json and the figures in the model dir; the per-epoch history in the output dir."""
    write_json_atomic(paths.model_dir / "metrics.json", final)
    paths.output_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(paths.output_dir / "history.json", history)
    split = "test" if "test" in final else "validation"
    save_confusion_pngs(paths.model_dir, final[split], f"{split}, best epoch")
    save_figure(curves_figure(history), paths.model_dir / "training_curves.png")
