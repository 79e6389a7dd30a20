"""Modality dropout on the built-in sample: how a fused model does with and without the transcript.

Each setting is `mmsent train` on the built-in sample (`make demo`'s data) with the setting's
options, once per seed. Each model is then scored with `mmsent evaluate` on the test split of a
second, larger sample (another seed, so clips the model never saw): once with every modality, once
with text absent from every item, as a user's clip without its transcript is. The sample's own test
split holds 90 clips, too few to tell settings apart; 1000 clips put the sampling error near 0.015.
Runs go to OUT/SETTING/E-epochs/seed-S (a run already finished there is read back, not repeated).

`--text-cue emotion` runs the same on the sample whose transcripts name their emotion without noise
(`mmsent sample --text-cue emotion`, written into OUT for training and scoring both): text alone
then identifies the emotion, so a model trained with it always present can lean on it alone. On the
default sample no single modality suffices, and any model learns to combine the other two.

    .venv/bin/python experiments/modality_dropout.py [--settings p0,p0.3] [--seeds 1,2,3] [--epochs 5]
                                                     [--text-cue theme|emotion] [--eval-size 1000] [--out FOLDER]
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

# Setting name -> the `mmsent train` options it adds to the defaults.
SETTINGS: dict[str, list[str]] = {
    "p0": ["--modality-dropout", "0"],
    "p0.3": ["--modality-dropout", "0.3"],
    "p0.5": ["--modality-dropout", "0.5"],
    "p0-unnormed": ["--modality-dropout", "0", "--feature-norm", "false"],
    "p0.3-unnormed": ["--modality-dropout", "0.3", "--feature-norm", "false"],
    "p0.3-text": ["--modality-dropout", "0.3", "--modality-dropout-on", "text"],
    "p0.5-text": ["--modality-dropout", "0.5", "--modality-dropout-on", "text"],
    "p0-lr2e-3": ["--modality-dropout", "0", "--learning-rate", "2e-3"],
    "p0.3-lr2e-3": ["--modality-dropout", "0.3", "--learning-rate", "2e-3"],
}
EVAL_SEED = 1  # the larger sample's seed; the training sample is seed 0
# Condition -> the folder its report goes to, and the `mmsent evaluate` options it adds.
CONDITIONS: dict[str, tuple[str, list[str]]] = {
    "all modalities": ("eval-all", []),
    "text hidden": ("eval-no-text", ["--absent", "text"]),
}


def mmsent(*args: str, log: Path) -> None:
    with log.open("w") as out:
        status = subprocess.run([sys.executable, "-m", "mmsent", *args], stdout=out, stderr=subprocess.STDOUT).returncode
    if status != 0:
        raise SystemExit(f"mmsent {args[0]} exited {status}; see {log}")


def eval_data(args: argparse.Namespace) -> Path:
    """The larger sample whose test split scores every model (written once)."""
    folder = args.out / f"eval-sample-{args.eval_size}"
    if not (folder / "sample.json").is_file():
        args.out.mkdir(parents=True, exist_ok=True)
        mmsent("sample", "--out", str(folder), "--seed", str(EVAL_SEED), "--train-size", "1", "--dev-size", "1",
               "--test-size", str(args.eval_size), "--text-cue", args.text_cue, log=args.out / "eval-sample.log")  # fmt: skip
    return folder


def train_data(args: argparse.Namespace) -> list[str]:
    """`mmsent train`'s data options: the built-in sample (as `make demo`), or the same sample (seed 0,
    default sizes) with the other text cue, written once into OUT and read at the built-in sample's
    frame settings."""
    if args.text_cue == "theme":
        return []
    folder = args.out / "train-sample"
    if not (folder / "sample.json").is_file():
        args.out.mkdir(parents=True, exist_ok=True)
        mmsent("sample", "--out", str(folder), "--text-cue", args.text_cue, log=args.out / "train-sample.log")
    return ["--data-dir", str(folder), "--num-frames", "4", "--frame-size", "64"]


def run_once(name: str, seed: int, data: Path, args: argparse.Namespace) -> dict:
    """One run's test emotion weighted F1 under each condition, and its training minutes."""
    folder = args.out / name / f"{args.epochs}-epochs" / f"seed-{seed}"
    done = folder / "done.json"
    if not done.is_file():
        folder.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        mmsent("train", "--epochs", str(args.epochs), "--seed", str(seed), "--resume", "false",
               "--model-dir", str(folder / "model"), "--output-data-dir", str(folder / "output"),
               "--tensorboard-dir", str(folder / "tensorboard"), "--checkpoint-dir", str(folder / "checkpoints"),
               "--keep-checkpoints", "1", *train_data(args), *SETTINGS[name], log=folder / "train.log")  # fmt: skip
        minutes = (time.monotonic() - started) / 60
        scores = {}
        for condition, (report_folder, options) in CONDITIONS.items():
            out = folder / report_folder
            mmsent("evaluate", "--model-dir", str(folder / "model"), "--data-dir", str(data), "--out", str(out),
                   *options, log=folder / f"{out.name}.log")  # fmt: skip
            scores[condition] = json.loads((out / "report.json").read_text())["emotion"]["weighted_f1"]
        done.write_text(json.dumps({"train_minutes": minutes, "emotion_weighted_f1": scores}))
    return json.loads(done.read_text())


def best_possible(text_cue: str) -> dict[str, float]:
    """The weighted F1 of the Bayes-optimal classifier under each condition: it knows the sample's
    codes, class shares and noise, and reads each clip's cues exactly: no model beats it but by chance."""
    import itertools

    import numpy as np
    from sklearn.metrics import f1_score

    from mmsent.data.sample import CUES, EMOTION_SHARES, SampleConfig
    from mmsent.labels import EMOTIONS

    noise = SampleConfig().cue_noise
    text_noise = noise if text_cue == "theme" else 0.0
    codes = [(CUES[e][0] if text_cue == "theme" else EMOTIONS.index(e), CUES[e][1], CUES[e][2]) for e in EMOTIONS]
    values = (3 if text_cue == "theme" else len(EMOTIONS), 3, 3)  # text, audio, video
    shares = np.array([EMOTION_SHARES[e] for e in EMOTIONS])

    def likelihoods(observed: tuple[int, ...], read: tuple[int, ...]) -> np.ndarray:
        noises = (text_noise, noise, noise)
        return shares * np.array([np.prod([(1 - noises[m]) * (observed[m] == code[m]) + noises[m] / values[m] for m in read])
                                  for code in codes])  # fmt: skip

    scores = {}
    for condition, read in (("all modalities", (0, 1, 2)), ("text hidden", (1, 2))):
        truths, guesses, weights = [], [], []
        for observed in itertools.product(*(range(v) for v in values)):
            guess = int(np.argmax(likelihoods(observed, read)))
            truths += range(len(EMOTIONS))
            guesses += [guess] * len(EMOTIONS)
            weights += list(likelihoods(observed, (0, 1, 2)))  # how often each emotion shows these cues
        scores[condition] = f1_score(truths, guesses, average="weighted", sample_weight=weights)
    return scores


def table(results: dict[str, list[dict]], seeds: list[int]) -> str:
    lines = ["| setting | " + " | ".join(f"{c} (seeds {', '.join(map(str, seeds))})" for c in CONDITIONS)
             + " | mean: " + " | mean: ".join(CONDITIONS) + " | train min/run |",
             "|---|" + "---:|" * (2 * len(CONDITIONS) + 1)]  # fmt: skip
    for name, runs in results.items():
        each = [" / ".join(f"{r['emotion_weighted_f1'][c]:.3f}" for r in runs) for c in CONDITIONS]
        means = [mean_sd([r["emotion_weighted_f1"][c] for r in runs]) for c in CONDITIONS]
        minutes = statistics.mean(r["train_minutes"] for r in runs)
        lines.append(f"| {name} | {' | '.join(each)} | {' | '.join(means)} | {minutes:.1f} |")
    return "\n".join(lines)


def main() -> None:
    parser = grid_arguments(__doc__.split("\n\n")[0], SETTINGS, default="p0,p0.3", epochs=5)
    parser.add_argument("--eval-size", type=int, default=1000)
    parser.add_argument("--text-cue", choices=("theme", "emotion"), default="theme",
                        help="the sample's text cue (mmsent sample --text-cue); emotion: the transcript alone is exact")
    parser.add_argument("--out", type=Path, help="default: runs/modality-dropout, or runs/modality-dropout-emotion-text")
    args = parser.parse_args()
    args.out = args.out or Path("runs/modality-dropout" + ("" if args.text_cue == "theme" else f"-{args.text_cue}-text"))
    names, seeds = chosen(parser, args, SETTINGS)
    data = eval_data(args)
    results = {}
    for name in names:
        results[name] = [run_once(name, seed, data, args) for seed in seeds]
        print(f"{name}: done", file=sys.stderr, flush=True)
    print(f"Test emotion weighted F1 on {args.eval_size} unseen sample clips (text cue: {args.text_cue}), {args.epochs} "
          "epochs; mean ± sd over seeds\n")  # fmt: skip
    print(table(results, seeds))
    print("\nBest possible (Bayes-optimal, reading every cue exactly): "
          + ", ".join(f"{condition} {score:.3f}" for condition, score in best_possible(args.text_cue).items()))  # fmt: skip


if __name__ == "__main__":
    main()
