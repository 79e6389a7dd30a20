"""Text-only training speed on real MELD utterances: what batching by length, fused AdamW and
dialogue context each cost or save, side by side in one run.

Each variant trains the default text-only model (offline MiniLM, fusion, both heads) for `--steps`
batches of 16 from MELD's train CSV, drawn by the sampler training uses, the loss and optimizer as
training builds them; after `--warmup` batches, the mean seconds per batch times the batches in an
epoch give the epoch's training minutes:
  - every layer fine-tuned: random batches, foreach AdamW (mmsent before length grouping and the
    fused optimizer); grouped by length, foreach AdamW; grouped, fused AdamW; and the last with context
    turns: past 2; past 2 + future 1; past 4 + future 2
  - only the top 4 (the default), 2 or 1 of MiniLM's 6 layers trained (--train-top-layers), on the lower
    layers' outputs stored once (as training stores them: every item of the split, before the first
    batch; those seconds are printed apart), and the top 2 with past 2

    .venv/bin/python benchmarks/bench_text.py [--steps 60] [--data-dir ../shared/data/meld]
"""

from __future__ import annotations

import argparse
import itertools
import math
import time
from pathlib import Path

import torch

from mmsent.config import DataConfig, ModelConfig, TextConfig, TrainConfig
from mmsent.data.dataset import MeldDataset
from mmsent.data.layout import find_splits
from mmsent.data.loader import make_loader
from mmsent.model.fusion import MultimodalSentimentModel
from mmsent.pretrained import load_tokenizer
from mmsent.training.distributed import DistInfo
from mmsent.training.loop import parameter_groups
from mmsent.training.loss import MultiTaskLoss
from mmsent.training.sampler import ResumableSampler
from mmsent.training.text_states import compute_states

SHARED_MELD = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "meld"
VARIANTS = (  # name, grouped, fused, TextConfig, top layers trained (0: every layer)
    ("random batches, foreach AdamW, every layer", False, False, TextConfig(), 0),
    ("grouped, foreach AdamW, every layer", True, False, TextConfig(), 0),
    ("grouped, fused AdamW, every layer", True, True, TextConfig(), 0),
    ("every layer + past 2", True, True, TextConfig(max_tokens=128, context_past=2), 0),
    ("every layer + past 2, future 1", True, True, TextConfig(max_tokens=160, context_past=2, context_future=1), 0),
    ("every layer + past 4, future 2", True, True, TextConfig(max_tokens=256, context_past=4, context_future=2), 0),
    ("top 4 layers on stored states (the default)", True, True, TextConfig(), 4),
    ("top 2 layers on stored states", True, True, TextConfig(), 2),
    ("top 1 layer on stored states", True, True, TextConfig(), 1),
    ("top 2 layers on stored states + past 2", True, True, TextConfig(max_tokens=128, context_past=2), 2),
)
EVERY_LAYER = "grouped, fused AdamW, every layer"
TARGETS = ((EVERY_LAYER, "top 4 layers on stored states (the default)"), (EVERY_LAYER, "top 2 layers on stored states"),
           (EVERY_LAYER, "top 1 layer on stored states"), ("every layer + past 2", "top 2 layers on stored states + past 2"))


def seconds_per_batch(train_file, tokenizer, grouped: bool, fused: bool, text: TextConfig, top: int, steps: int,
                      warmup: int) -> tuple[float, int, float, float]:  # fmt: skip
    """(mean seconds per batch after warm-up, batches per epoch, mean token width of a batch, seconds
    storing the lower layers' outputs up front)."""
    cfg = TrainConfig()
    data_cfg = DataConfig(text=text, modalities=("text",))
    dataset = MeldDataset.from_split(train_file, tokenizer, data_cfg)
    lengths = dataset.token_lengths() if grouped else None
    sampler = ResumableSampler(dataset, DistInfo(), shuffle=True, seed=0, lengths=lengths, batch_size=cfg.batch_size)
    sampler.set_epoch(1)  # not epoch 0: grouping puts the widest batch first, which would skew a short sample
    loader = make_loader(dataset, cfg.batch_size, 0, torch.device("cpu"), sampler)
    torch.manual_seed(0)
    model = MultimodalSentimentModel(ModelConfig(modalities=("text",), train_top_layers=top)).train()
    started = time.perf_counter()
    if top:
        dataset.use_text_states(compute_states(model.encoders["text"], dataset.tokens, torch.device("cpu")))
    up_front = time.perf_counter() - started
    optimizer = torch.optim.AdamW(parameter_groups(model, cfg), fused=fused)
    loss_fn = MultiTaskLoss({}, cfg.label_smoothing, cfg.sentiment_loss_weight)
    timed, widths = [], []
    for step, batch in enumerate(itertools.islice(loader, warmup + steps)):
        started = time.perf_counter()
        loss = loss_fn(model(batch), batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        optimizer.step()
        if step >= warmup:
            timed.append(time.perf_counter() - started)
            widths.append(batch["input_ids"].shape[1])
    return sum(timed) / len(timed), math.ceil(len(dataset) / cfg.batch_size), sum(widths) / len(widths), up_front


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=60, help="timed batches per variant")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--data-dir", type=Path, default=SHARED_MELD)
    args = parser.parse_args()
    if not (args.data_dir / "train_sent_emo.csv").is_file():
        parser.error(f"no MELD CSVs in {args.data_dir}: give --data-dir")
    train_file = find_splits(args.data_dir)["train"]
    tokenizer = load_tokenizer("default")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; {args.steps} timed batches of 16 per variant\n")
    print("| variant | mean batch width (tokens) | ms/batch | epoch min | vs first | up-front s |")
    print("|---|---:|---:|---:|---:|---:|")
    first, minutes = None, {}
    for name, grouped, fused, text, top in VARIANTS:
        seconds, batches, width, up_front = seconds_per_batch(train_file, tokenizer, grouped, fused, text, top, args.steps,
                                                              args.warmup)  # fmt: skip
        minutes[name] = seconds * batches / 60
        first = first or minutes[name]
        print(f"| {name} | {width:.0f} | {seconds * 1000:.0f} | {minutes[name]:.1f} | {minutes[name] / first:.2f}x "
              f"| {up_front:.0f} |", flush=True)  # fmt: skip
    print("\ntargets (ratios measured above): an epoch with every layer fine-tuned / with the top layers on stored states")
    for every, partly in TARGETS:
        ratio = minutes[every] / minutes[partly]
        print(f"  {every} / {partly}: {ratio:.1f}x (target >= 3x) {'met' if ratio >= 3 else 'NOT met'}")


if __name__ == "__main__":
    main()
