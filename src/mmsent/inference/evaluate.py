"""`mmsent evaluate`: score a model dir on a labelled split, with nothing but the model dir."""

from __future__ import annotations

from pathlib import Path

import torch

from mmsent.config import TrainConfig
from mmsent.data.dataset import MeldDataset
from mmsent.data.layout import SplitFiles
from mmsent.labels import TASKS
from mmsent.files import write_json_atomic
from mmsent.model_dir import load_model_dir
from mmsent.training.loop import make_loader
from mmsent.training.metrics import format_head_metrics, save_confusion_pngs
from mmsent.training.precision import choose_precision
from mmsent.training.validate import predict, summarize


def evaluate_model_dir(model_dir: Path, split: SplitFiles, out: Path, batch_size: int = 32, num_workers: int = 2) -> str:
    """Write report.json and confusion-matrix PNGs to `out`; return the per-class tables as text."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model, data_cfg, tokenizer = load_model_dir(model_dir, device)
    dataset = MeldDataset.from_split(split, tokenizer, data_cfg)
    loader = make_loader(dataset, TrainConfig(batch_size=batch_size, num_workers=num_workers), device)
    report = summarize(predict(model, loader, device, choose_precision(False, device)))
    report = {"model_dir": str(model_dir), "split": split.split, "csv": str(split.csv_path), "items": len(dataset)} | report
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / "report.json", report)
    save_confusion_pngs(out, report, split.split)
    lines = [f"{split.split}: {len(dataset)} items from {split.csv_path}"]
    if report["media_issues"]:
        lines.append("media problems: " + ", ".join(f"{k} {v}" for k, v in report["media_issues"].items()))
    lines += [format_head_metrics(task, report[task]) for task in TASKS]
    return "\n".join(lines)
