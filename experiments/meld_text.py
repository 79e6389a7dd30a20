"""Text-only training settings on real MELD, several seeds each: the table behind mmsent's defaults.

Each setting is `mmsent train --modalities text` on the MELD CSVs (no clips needed), the default
offline MiniLM, with the setting's options, once per seed. Runs go to OUT/SETTING/E-epochs/seed-S (a run
already finished there is read back, not repeated, so the grid can be stopped and continued). The
table gives, per setting, the mean ± standard deviation over seeds of dev emotion weighted F1,
emotion macro F1 and sentiment weighted F1 at the last epoch (not chosen on dev), the same for the
best epoch (what the model dir keeps), the mean dev emotion weighted F1 after each epoch, the
training minutes per run and seconds per epoch (validation not included), the seconds spent up front
(the text encoder's lower layers run once with --train-top-layers) and the megabytes that keeps.

    .venv/bin/python experiments/meld_text.py [--settings alone,past2,...] [--seeds 1,2,3] [--epochs 3]
                                               [--data-dir ../shared/data/meld] [--out runs/meld-text]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

from grid import chosen, grid_arguments, mean_sd  # experiments/grid.py, beside this script

SHARED_MELD = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "meld"

# Setting name -> the `mmsent train` options it adds to the defaults.
SETTINGS: dict[str, list[str]] = {
    "alone": [],
    "alone-ungrouped": ["--group-by-length", "false"],
    "alone-lr1e-4": ["--encoder-learning-rate", "1e-4"],
    "past1": ["--context-past", "1", "--max-tokens", "128"],
    "past2": ["--context-past", "2", "--max-tokens", "128"],
    "past4": ["--context-past", "4", "--max-tokens", "192"],
    "past2-future1": ["--context-past", "2", "--context-future", "1", "--max-tokens", "160"],
    "past4-future2": ["--context-past", "4", "--context-future", "2", "--max-tokens", "256"],
    "past2-lr5e-5": ["--context-past", "2", "--max-tokens", "128", "--encoder-learning-rate", "5e-5"],
    "past2-balanced": ["--context-past", "2", "--max-tokens", "128", "--class-weights", "balanced"],
    "past2-noweights": ["--context-past", "2", "--max-tokens", "128", "--class-weights", "none"],
    "past2-nosmoothing": ["--context-past", "2", "--max-tokens", "128", "--label-smoothing", "0"],
    # MiniLM has 6 layers: the top 4, 2 or 1 trained on stored outputs of the ones below ("alone": all 6).
    "top4": ["--train-top-layers", "4"],
    "top2": ["--train-top-layers", "2"],
    "top1": ["--train-top-layers", "1"],
}
METRICS = (("emotion", "weighted_f1"), ("emotion", "macro_f1"), ("sentiment", "weighted_f1"))


def run_once(name: str, seed: int, args: argparse.Namespace) -> dict:
    """One training run's per-epoch history and training seconds (read back if it already finished)."""
    folder = args.out / name / f"{args.epochs}-epochs" / f"seed-{seed}"
    history_file, done = folder / "output" / "history.json", folder / "done.json"
    if not done.is_file():
        command = [sys.executable, "-m", "mmsent", "train", "--data-dir", str(args.data_dir), "--modalities", "text",
                   "--epochs", str(args.epochs), "--seed", str(seed), "--resume", "false",
                   "--model-dir", str(folder / "model"), "--output-data-dir", str(folder / "output"),
                   "--tensorboard-dir", str(folder / "tensorboard"), "--checkpoint-dir", str(folder / "checkpoints"),
                   "--keep-checkpoints", "1", *SETTINGS[name]]  # fmt: skip
        folder.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        with (folder / "train.log").open("w") as log:
            status = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT).returncode
        if status != 0:
            raise SystemExit(f"{name} seed {seed}: mmsent train exited {status}; see {folder / 'train.log'}")
        done.write_text(json.dumps({"wall_seconds": time.monotonic() - started}))
    history = json.loads(history_file.read_text())
    timings = json.loads((folder / "output" / "timings.json").read_text())
    return {"history": history, "wall_seconds": json.loads(done.read_text())["wall_seconds"],
            "setup_seconds": sum(timings["setup_seconds"].values()), "stored_mb": sum(timings.get("stored_bytes", {}).values()) / 2**20}


def score(entry: dict, task: str, metric: str) -> float:
    return entry["validation"][task][metric]


def table(results: dict[str, list[dict]]) -> str:
    head = ("| setting | seeds | emotion wF1 (last) | emotion macro F1 | sentiment wF1 | emotion wF1 (best epoch) "
            "| emotion wF1 by epoch | train min/run | s/epoch | up-front s | stored MB |")  # fmt: skip
    lines = [head, "|" + "---|" * 2 + "---:|" * 9]
    for name, runs in results.items():
        last = [run["history"][-1] for run in runs]
        best = [max(run["history"], key=lambda e: score(e, "emotion", "weighted_f1")) for run in runs]
        cells = [mean_sd([score(e, task, metric) for e in last]) for task, metric in METRICS]
        epochs = len(runs[0]["history"])
        curve = " / ".join(f"{statistics.mean(score(r['history'][i], 'emotion', 'weighted_f1') for r in runs):.3f}"
                           for i in range(epochs))  # fmt: skip
        minutes = statistics.mean(sum(e["train"]["seconds"] for e in r["history"]) for r in runs) / 60
        up_front, stored = (statistics.mean(r[key] for r in runs) for key in ("setup_seconds", "stored_mb"))
        lines.append(f"| {name} | {len(runs)} | {' | '.join(cells)} | {mean_sd([score(e, 'emotion', 'weighted_f1') for e in best])} "
                     f"| {curve} | {minutes:.1f} | {minutes * 60 / epochs:.0f} | {up_front:.0f} | {stored:.0f} |")  # fmt: skip
    return "\n".join(lines)


def main() -> None:
    parser = grid_arguments(__doc__.split("\n\n")[0], SETTINGS, default="alone,past2,past2-future1", epochs=3)
    parser.add_argument("--data-dir", type=Path, default=SHARED_MELD)
    parser.add_argument("--out", type=Path, default=Path("runs/meld-text"))
    args = parser.parse_args()
    names, seeds = chosen(parser, args, SETTINGS)
    if not (args.data_dir / "train_sent_emo.csv").is_file():
        parser.error(f"no MELD CSVs in {args.data_dir}: give --data-dir")
    results = {}
    for name in names:
        results[name] = [run_once(name, seed, args) for seed in seeds]
        print(f"{name}: done", file=sys.stderr, flush=True)
    print(f"MELD dev, text only, {args.epochs} epochs, seeds {args.seeds}; mean ± sd over seeds\n")
    print(table(results))


if __name__ == "__main__":
    main()
