"""Data-pipeline benchmark: loaders per clip, then training epochs, side by side on the same clips.

Writes clips shaped like MELD's (1280x720 H.264 with B-frames, as broadcast encodes have them,
24 fps, 2-6 s, AAC 48 kHz stereo; textured, moving content), lays them out as a MELD dataset, and
measures, each in its own process (so peak memory is its own):

Loaders, ms per clip (median of --repeats passes over every clip):
  - reference: what the public tutorials' loader does: OpenCV reads the first 30 frames (resized
    to 224, scaled to 0..1), an ffmpeg subprocess (imageio-ffmpeg's binary) writes a 16 kHz wav,
    which is read back and turned into a log-mel;
  - bare decode: demux and decode every packet, convert nothing, with FFmpeg's frame+slice threads
    and with slice threads only: the faster is the floor for any loader that decodes the whole
    clip, as sampling evenly across it must;
  - mmsent decode, exact frames: `decode_clip(skip_nonref=False)` (the nearest frame to each target; the
    non-reference frames that cannot be one are not decoded) plus the item's tensors;
  - mmsent decode: `decode_clip` (non-reference frames skipped) plus the item's tensors;
  - mmsent cache read: the same item from the memory-mapped media cache.
Where our decode's time goes, ms per clip, each stage alone: open and probe, demux, video decode
(non-reference frames skipped, and every frame), converting the 16 sampled frames, audio decode and
resampling, the log-mel; and how many clips the decode passes over twice (a sampled frame more than
two frames from its target; the exact pass's nearest-frame check), per kind of clip: these clips and
the built-in sample's. `--compare SRC` runs the decode rows again with mmsent imported from another
source tree (a checkout of an earlier commit), side by side.
Training (the real `train()`, default model, 16 frames at 112 px, batch 8, no loader workers),
seconds per epoch: decoding every epoch, from the media cache, and from the cache with cached
frozen-backbone outputs; plus the up-front cost (cache build, frozen outputs) and the total for a
10-epoch run each way (up-front + 10 x the mean epoch). Once with every layer of the text encoder
fine-tuned, with only its top 4 (the default) and top 2 layers trained on its lower layers' stored
outputs (--train-top-layers), and with it frozen too.

Run: make bench   (or .venv/bin/python benchmarks/bench_pipeline.py [--clips 24] [--repeats 3]
                   [--loaders-only | --training-only] [--compare ../old/src])
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import wave
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import av
import numpy as np
import torch

from mmsent.config import DataConfig, MediaConfig
from mmsent.data.meld import write_meld_csv
from mmsent.data.sample import encode_clip

LOADERS = ("reference", "bare_auto", "bare_slice", "decode_every_frame", "decode", "cache_read")
TRAINING_MODES = ("decode", "media_cache", "cached_outputs")
# Training settings: label -> (frozen backbones, the text encoder's top layers trained: 0 for every layer).
FREEZE = {"text every layer fine-tuned": ("video", "0"), "text top 4 layers (the default)": ("video", "4"),
          "text top 2 layers": ("video", "2"), "text frozen": ("video,text", "0")}  # fmt: skip


# ---------------------------------------------------------------------------------------------
# The clips and the dataset around them


def make_dataset(root: Path, train_clips: int, dev_clips: int, seed: int = 0, size: tuple[int, int] = (1280, 720),
                 workers: int = 1) -> Path:
    """MELD.Raw-shaped train and dev splits of clips 2 to 6 s long, `size` (width, height) pixels,
    encoded by `workers` processes: what each clip shows is drawn in order from `seed`, whatever their number."""
    width, height = size
    rng = np.random.default_rng(seed)
    emotions = ["neutral", "joy", "surprise", "anger", "sadness", "disgust", "fear"]
    sentiments = {"neutral": "neutral", "joy": "positive", "surprise": "positive"}
    jobs = []
    for split, count, folder in (("train", train_clips, "train_splits"), ("dev", dev_clips, "dev_splits_complete")):
        clips = root / split / folder
        clips.mkdir(parents=True)
        rows = []
        for i in range(count):
            seconds = float(rng.uniform(2, 6))
            texture = rng.integers(0, 255, (height // 8 + 8, width // 8 + 8, 3), dtype=np.uint8)
            jobs.append((clips / f"dia{i}_utt0.mp4", seconds, texture, width, height))
            emotion = emotions[i % len(emotions)]
            rows.append({"Sr No.": i + 1, "Utterance": f"Line number {i} of the benchmark, said with {emotion}.",
                         "Speaker": "Ross", "Emotion": emotion, "Sentiment": sentiments.get(emotion, "negative"),
                         "Dialogue_ID": i, "Utterance_ID": 0, "Season": 1, "Episode": 1,
                         "StartTime": "00:00:01,000", "EndTime": "00:00:04,000"})  # fmt: skip
        write_meld_csv(root / split / f"{split}_sent_emo.csv", rows)
    if workers > 1:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            list(pool.map(_write_clip, jobs, chunksize=4))
    else:
        for job in jobs:
            _write_clip(job)
    return root


def _write_clip(job: tuple[Path, float, np.ndarray, int, int]) -> None:
    path, seconds, texture, width, height = job
    frames = round(seconds * 24)
    # A textured background that drifts: motion estimation and residuals cost what real video costs.
    texture = texture.repeat(8, 0).repeat(8, 1)
    video = np.stack([np.roll(texture, (k, 2 * k), axis=(0, 1))[:height, :width] for k in range(frames)])
    t = np.arange(round(seconds * 48_000)) / 48_000
    audio = np.stack([0.2 * np.sin(2 * np.pi * 220 * t), 0.2 * np.sin(2 * np.pi * 330 * t)]).astype(np.float32)
    encode_clip(path, video, 24, audio, 48_000, crf=23, preset="veryfast")


# ---------------------------------------------------------------------------------------------
# Loaders (each run in a child process)


def reference_item(path: Path, workdir: Path) -> tuple[torch.Tensor, torch.Tensor]:
    import cv2
    import imageio_ffmpeg
    import torchaudio

    capture = cv2.VideoCapture(str(path))
    frames = []
    while len(frames) < 30 and capture.isOpened():
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(cv2.resize(frame, (224, 224)) / 255.0)
    capture.release()
    frames += [np.zeros((224, 224, 3))] * (30 - len(frames))
    video = torch.FloatTensor(np.array(frames)).permute(0, 3, 1, 2)
    wav = workdir / f"{path.stem}.wav"
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-i", str(path), "-vn", "-acodec", "pcm_s16le", "-ar", "16000",
                    "-ac", "1", str(wav)], check=True, capture_output=True)  # fmt: skip
    with wave.open(str(wav)) as handle:
        samples = np.frombuffer(handle.readframes(handle.getnframes()), dtype=np.int16).astype(np.float32) / 32768
    wav.unlink()
    mel = torchaudio.transforms.MelSpectrogram(sample_rate=16000, n_mels=64, n_fft=1024, hop_length=512)
    spectrogram = mel(torch.from_numpy(samples).unsqueeze(0))
    spectrogram = (spectrogram - spectrogram.mean()) / spectrogram.std()
    spectrogram = torch.nn.functional.pad(spectrogram, (0, max(0, 300 - spectrogram.shape[2])))[:, :, :300]
    return video, spectrogram


def bare_decode(path: Path, threads: str) -> None:
    with av.open(str(path)) as container:
        container.streams.video[0].thread_type = threads
        for packet in container.demux():
            packet.decode()


def run_loader(name: str, root: Path, repeats: int) -> dict:
    from mmsent.data.cache import build_cache
    from mmsent.data.dataset import MeldDataset
    from mmsent.data.layout import find_splits
    from mmsent.data.media import decode_clip, frames_to_tensor, log_mel

    media = MediaConfig()
    files = find_splits(root)["train"]
    paths = sorted(files.clip_dir.glob("*.mp4"))
    workdir = _scratch(root)
    if name == "reference":
        step = lambda i: reference_item(paths[i], workdir)  # noqa: E731
    elif name == "bare_auto":
        step = lambda i: bare_decode(paths[i], "AUTO")  # noqa: E731
    elif name == "bare_slice":
        step = lambda i: bare_decode(paths[i], "SLICE")  # noqa: E731
    elif name in ("decode", "decode_every_frame"):

        def step(i: int) -> None:
            clip = decode_clip(paths[i], media, skip_nonref=name == "decode")
            frames_to_tensor(clip.frames), log_mel(clip.waveform, media)
    else:
        cache = build_cache({"train": files}, media, workdir / "cache", workers=1, progress=False, say=lambda *a: None)
        dataset = MeldDataset.from_split(files, None, DataConfig(media=media, modalities=("audio", "video")), cache["train"])
        step = dataset.__getitem__
    runs = []
    for _ in range(repeats):
        started = time.perf_counter()
        for i in range(len(paths)):
            step(i)
        runs.append((time.perf_counter() - started) / len(paths))
    return {"ms_per_clip": 1000 * statistics.median(runs), "peak_rss_mb": _peak_rss_mb()}


def run_stages(root: Path, repeats: int) -> dict:
    """Each stage of our decode alone, ms per clip (median of `repeats` passes), opened as our decode opens
    (media._open); each pass that opens the clip has the open's cost taken off, so the stages add up to about
    the whole. Frame conversion is what converting 16 frames as they are decoded adds to the decode. Then
    the clips decoded twice."""
    from mmsent.data import media
    from mmsent.data.media import decode_clip, frames_to_tensor, log_mel, resize_and_crop

    cfg = MediaConfig()
    paths = sorted((root / "train" / "train_splits").glob("*.mp4"))
    decoded = {path: decode_clip(path, cfg) for path in paths}

    def demux(path: Path) -> None:
        with media._open(path, True) as container:
            for _ in container.demux():
                pass

    def video(path: Path, skip: bool, convert: bool = False) -> None:
        with media._open(path, skip) as container:
            stream = container.streams.video[0]
            stream.thread_type = "SLICE"
            if skip:
                stream.codec_context.skip_frame = "NONREF"
            every = max(1, round(float(container.duration / av.time_base) * float(stream.average_rate) / cfg.num_frames))
            reformatter, count = media.VideoReformatter(), 0
            for packet in container.demux(stream):
                for frame in packet.decode():
                    count += 1
                    if convert and count % every == 0:
                        resize_and_crop(frame, cfg.frame_size, reformatter)

    def audio(path: Path) -> None:
        with media._open(path, True) as container:
            resampler = av.AudioResampler(format="flt", layout="mono", rate=cfg.sample_rate)
            for packet in container.demux(container.streams.audio[0]):
                for frame in packet.decode():
                    for out in resampler.resample(frame):
                        np.frombuffer(out.planes[0], dtype=np.float32, count=out.samples)

    def timed(step) -> float:
        runs = []
        for _ in range(repeats):
            started = time.perf_counter()
            for path in paths:
                step(path)
            runs.append(1000 * (time.perf_counter() - started) / len(paths))
        return statistics.median(runs)

    open_ms = timed(lambda p: media._open(p, True).close())
    video_ms = timed(lambda p: video(p, True))
    stages = {
        "open and probe": open_ms,
        "demux every packet, no decode": timed(demux) - open_ms,
        "video decode, non-reference frames skipped": video_ms - open_ms,
        "video decode, every frame": timed(lambda p: video(p, False)) - open_ms,
        "frame conversion (16 frames scaled, cropped)": timed(lambda p: video(p, True, convert=True)) - video_ms,
        "audio decode + resample to 16 kHz mono": timed(audio) - open_ms,
        "log-mel + frame tensor": timed(lambda p: (log_mel(decoded[p].waveform, cfg), frames_to_tensor(decoded[p].frames))),
    }
    return {"stages": stages, "second_passes": {"720p H.264 with B-frames (these clips)": _second_passes(paths, media),
                                                 "built-in sample (128x96, broken ones among them)": _second_passes(_sample_clips(root), media)}}


def _sample_clips(root: Path) -> list[Path]:
    from mmsent.data.sample import SampleConfig, write_sample

    folder = Path(tempfile.mkdtemp(dir=root.parent)) / "sample"
    write_sample(folder, SampleConfig(train_size=30, dev_size=1, test_size=1), workers=1, progress=False)
    return sorted((folder / "train").rglob("*.mp4"))


def _second_passes(paths: list[Path], media) -> dict:
    """Clips, those a decode opens, and how many of those it opens a second time: decode_clip as training
    calls it (non-reference frames skipped) and the exact pass."""
    passes = []
    original = media._decode_open
    media._decode_open = lambda *args, **kwargs: passes.append(1) or original(*args, **kwargs)
    try:
        counts = {"clips": len(paths), "opened": sum(map(_opens, paths))}
        for label, skip in (("twice, non-reference skipped", True), ("twice, exact", False)):
            passes.clear()
            for path in paths:
                media.decode_clip(path, MediaConfig(), skip_nonref=skip)
            counts[label] = len(passes) - counts["opened"]
        return counts
    finally:
        media._decode_open = original


def _opens(path: Path) -> bool:
    if not path.is_file() or not path.stat().st_size:
        return False
    try:
        av.open(str(path)).close()
        return True
    except (av.FFmpegError, OSError, ValueError):
        return False


# ---------------------------------------------------------------------------------------------
# Training epochs (each run in a child process)


def run_training(mode: str, freeze: str, top: str, root: Path) -> dict:
    from mmsent.config import ModelConfig, TrainConfig
    from mmsent.data.layout import find_splits
    from mmsent.training.loop import RunPaths, train

    out = _scratch(root)
    cache_dir = None if mode == "decode" else out / "cache"
    paths = RunPaths(out / "model", out / "tb", out / "output", out / "checkpoints", cache_dir)
    cfg = TrainConfig(epochs=2, batch_size=8, num_workers=0, cache_embeddings=mode == "cached_outputs", log_every=1000)
    data_cfg = DataConfig(media=MediaConfig())
    model_cfg = ModelConfig(freeze=tuple(freeze.split(",")), train_top_layers=int(top))
    _quietly(lambda: train(find_splits(root), data_cfg, model_cfg, cfg, paths))
    history = json.loads((out / "output" / "history.json").read_text())
    setup = json.loads((out / "output" / "timings.json").read_text())["setup_seconds"]
    epochs = [entry["train"]["seconds"] for entry in history]
    return {"epoch_seconds": epochs, "setup_seconds": sum(setup.values()), "peak_rss_mb": _peak_rss_mb()}


def _scratch(root: Path) -> Path:
    """A fresh folder beside the dataset, inside the parent's temporary directory, so that a
    child's outputs (about 1 GB of model and checkpoints a training run) go when the parent ends."""
    return Path(tempfile.mkdtemp(dir=root.parent))


def _quietly(fn):
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()):
        return fn()


def _peak_rss_mb() -> float:
    """This process's peak resident memory (VmHWM: unlike getrusage's maximum, it does not carry
    over the parent's peak across exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


# ---------------------------------------------------------------------------------------------
# The parent: make the clips, run every child, print the tables


def child(args: list[str], src: str | None = None) -> dict:
    """A step in its own process; with `src`, mmsent imported from that source tree instead."""
    env = os.environ | ({"PYTHONPATH": str(Path(src).resolve())} if src else {})
    result = subprocess.run([sys.executable, __file__, "--child", *args], capture_output=True, text=True, env=env)
    if result.returncode != 0:
        raise SystemExit(f"benchmark step {args} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clips", type=int, default=24, help="training clips (4 more make the validation split)")
    parser.add_argument("--repeats", type=int, default=3, help="passes over the clips in each loader's process")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of every loader, interleaved: the shared machine's "
                        "load drifts between rounds, so loaders compared are measured close together")  # fmt: skip
    parser.add_argument("--loaders-only", action="store_true", help="loaders and stages, no training")
    parser.add_argument("--training-only", action="store_true", help="training, no loaders or stages")
    parser.add_argument("--compare", action="append", default=[], metavar="SRC",
                        help="also run the decode rows with mmsent from this source tree (e.g. a worktree's src/)")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, *rest = args.child
        root = Path(rest[-1])
        if kind == "loader":
            result = run_loader(rest[0], root, int(rest[1]))
        elif kind == "stages":
            result = run_stages(root, int(rest[0]))
        else:
            result = run_training(rest[0], rest[1], rest[2], root)
        print(json.dumps(result))
        return

    rows = [] if args.training_only else [(name, None) for name in LOADERS] + [
        (name, src) for src in args.compare for name in ("decode_every_frame", "decode")]  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        root = make_dataset(Path(tmp) / "meld", args.clips, 4)
        clips = sorted((root / "train" / "train_splits").glob("*.mp4"))
        seconds = statistics.mean(float(av.open(str(p)).duration / av.time_base) for p in clips)
        print(f"{len(clips)} clips, 1280x720 H.264 (x264 veryfast, B-frames) 24 fps + AAC 48 kHz stereo, mean {seconds:.1f} s; "
              f"{torch.get_num_threads()} torch threads\n")  # fmt: skip
        measured: dict[tuple[str, str | None], list[dict]] = {row: [] for row in rows}
        for _ in range(args.rounds):
            for name, src in rows:
                measured[(name, src)].append(child(["loader", name, str(args.repeats), str(root)], src))
        loaders = {row: {"ms_per_clip": statistics.median(r["ms_per_clip"] for r in runs), "peak_rss_mb": max(r["peak_rss_mb"] for r in runs)}
                   for row, runs in measured.items()}  # fmt: skip
        stages = None if args.training_only else child(["stages", str(args.repeats), str(root)])
        training = {} if args.loaders_only else {(label, mode): child(["train", mode, freeze, top, str(root)])
                                                 for label, (freeze, top) in FREEZE.items() for mode in TRAINING_MODES}  # fmt: skip
    checks = [] if args.training_only else print_loaders(rows, loaders, stages, full=not args.loaders_only)
    if not args.loaders_only:
        checks += print_training(training, args.clips)
    print("\ntargets (ratios measured above):")
    for text, ratio, target in checks:
        print(f"  {text}: {ratio:.2f}x (target >= {target:.3g}x) {'met' if ratio >= target else 'NOT met'}")


def print_loaders(rows: list, loaders: dict, stages: dict, full: bool) -> list[tuple[str, float, float]]:
    """The loaders' and stages' tables; returns their targets (text, ratio, target), the data cost of
    a 10-epoch run among them where `full` (the training rows come with it)."""
    print(f"{'loader':<56}{'ms/clip':>10}{'vs floor':>10}{'peak MB':>10}")
    bare = min(loaders[("bare_auto", None)]["ms_per_clip"], loaders[("bare_slice", None)]["ms_per_clip"])
    names = {"reference": "reference (OpenCV 30 frames + ffmpeg wav)", "bare_auto": "bare decode, every packet, frame+slice threads",
             "bare_slice": "bare decode, every packet, slice threads",
             "decode_every_frame": "mmsent decode, exact frames", "decode": "mmsent decode (NONREF skipped)",
             "cache_read": "mmsent media cache read"}  # fmt: skip
    for name, src in rows:
        r = loaders[(name, src)]
        label = names[name] + (f" [{src}]" if src else "")
        print(f"{label:<56}{r['ms_per_clip']:>10.1f}{r['ms_per_clip'] / bare:>9.2f}x{r['peak_rss_mb']:>10.0f}")

    print(f"\n{'where our decode goes (each stage alone)':<56}{'ms/clip':>10}")
    for stage, ms in stages["stages"].items():
        print(f"{stage:<56}{ms:>10.1f}")
    print("\nclips decoded twice (opened: clips a decode opens at all)")
    for kind, counts in stages["second_passes"].items():
        print(f"  {kind}: " + ", ".join(f"{key} {value}" for key, value in counts.items()))

    ms = {name: loaders[(name, None)]["ms_per_clip"] for name in LOADERS}
    checks = [("bare-decode floor / our decode (ours no slower than the floor)", bare / ms["decode"], 1),
              ("bare-decode floor / our exact decode (target: within 1.2x of the floor)", bare / ms["decode_every_frame"], 1 / 1.2)]  # fmt: skip
    if full:
        checks += [("data cost of a 10-epoch run, reference / ours (decode once + 10 cache reads)",
                    10 * ms["reference"] / (ms["decode"] + 10 * ms["cache_read"]), 6),
                   ("our decode / cache read", ms["decode"] / ms["cache_read"], 50)]  # fmt: skip
    return checks


def print_training(training: dict, clips: int) -> list[tuple[str, float, float]]:
    """The training table; returns its targets (text, ratio, target)."""
    print(f"\n{'training (' + str(clips) + ' clips)':<44}{'epoch s':>10}{'up-front s':>12}{'10 epochs s':>13}{'peak MB':>10}")
    epoch = {key: statistics.mean(r["epoch_seconds"]) for key, r in training.items()}
    for label in FREEZE:
        for mode in TRAINING_MODES:
            r = training[(label, mode)]
            print(f"{label + ', ' + mode.replace('_', ' '):<44}{epoch[(label, mode)]:>10.2f}{r['setup_seconds']:>12.1f}"
                  f"{r['setup_seconds'] + 10 * epoch[(label, mode)]:>13.1f}{r['peak_rss_mb']:>10.0f}")  # fmt: skip
    checks = [(f"epoch decoding / epoch from cached outputs, {label}", epoch[(label, "decode")] / epoch[(label, "cached_outputs")], 50)
              for label in FREEZE]  # fmt: skip
    for partly in ("text top 4 layers (the default)", "text top 2 layers"):
        checks.append((f"epoch from cached outputs, every text layer fine-tuned / {partly} on stored states",
                       epoch[("text every layer fine-tuned", "cached_outputs")] / epoch[(partly, "cached_outputs")], 3))  # fmt: skip
    return checks


if __name__ == "__main__":
    main()
