"""`mmsent evaluate`: score a model dir on a labelled split, with nothing but the model dir."""

from __future__ import annotations

from pathlib import Path

import torch

from mmsent.data.dataset import MeldDataset
from mmsent.data.layout import SplitFiles
from mmsent.data.loader import make_loader
from mmsent.files import write_json_atomic
from mmsent.labels import TASKS
from mmsent.model.fusion import hide_modalities
from mmsent.model_dir import ModelDirError, load_model_dir
from mmsent.training.confusion_image import save_confusion_pngs
from mmsent.training.metrics import format_head_metrics
from mmsent.training.precision import choose_precision
from mmsent.training.validate import predict, summarize


def evaluate_model_dir(model_dir: Path, split: SplitFiles, out: Path, batch_size: int = 32, num_workers: int = 2,
                       absent: tuple[str, ...] = ()) -> str:
    """Write report.json and confusion-matrix PNGs to `out`; return the per-class tables as text.
    `absent`: modalities scored as missing from every item (how the model copes without them)."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model, data_cfg, tokenizer = load_model_dir(model_dir, device)
    unknown = [name for name in absent if name not in data_cfg.modalities]
    if unknown:
        raise ModelDirError(f"{model_dir} has no {', '.join(unknown)} input to hide (it reads {','.join(data_cfg.modalities)})")
    dataset = MeldDataset.from_split(split, tokenizer, data_cfg)
    loader = make_loader(dataset, batch_size, num_workers, device)
    batches = (hide_modalities(batch, absent) for batch in loader)
    report = summarize(predict(model, batches, device, choose_precision(False, device)))
    report = {"model_dir": str(model_dir), "split": split.split, "csv": str(split.csv_path), "items": len(dataset),
              "absent": list(absent)} | report  # fmt: skip
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / "report.json", report)
    save_confusion_pngs(out, report, split.split)
    lines = [f"{split.split}: {len(dataset)} items from {split.csv_path}" + (f", scored without {','.join(absent)}" if absent else "")]
    if report["media_issues"]:
        lines.append("media problems: " + ", ".join(f"{k} {v}" for k, v in report["media_issues"].items()))
    lines += [format_head_metrics(task, report[task]) for task in TASKS]
    return "\n".join(lines)
