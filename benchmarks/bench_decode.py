"""Decode benchmark: clips per second of mmsent's one-pass decode on clips shaped like MELD's.

MELD's clips are 1280x720 H.264 at about 24 fps, 2-6 s long, with 48 kHz stereo AAC. This writes
such clips (moving, textured content, so the codec does real work), then times, side by side in
one run on the same clips:
  - bare decode: demux and decode every packet, convert nothing (the floor for any loader that
    covers the whole clip, as sampling evenly across it must);
  - mmsent decode: `decode_clip` with the default settings (16 frames at 112x112, 4 s of 16 kHz audio);
  - mmsent item: decode plus the tensors a Dataset item carries (normalised frames, log-mel).

Run: .venv/bin/python benchmarks/bench_decode.py [--clips 12] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import av
import numpy as np
import torch

from mmsent.config import MediaConfig
from mmsent.data.media import decode_clip, frames_to_tensor, log_mel
from mmsent.data.sample import encode_clip


def make_meld_like_clips(folder: Path, count: int, seed: int = 0) -> list[Path]:
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(count):
        seconds = float(rng.uniform(2, 6))
        frames = round(seconds * 24)
        # A textured background that drifts, so motion estimation and residuals cost what real video costs.
        texture = rng.integers(0, 255, (720 // 8 + 8, 1280 // 8 + 8, 3), dtype=np.uint8).repeat(8, 0).repeat(8, 1)
        video = np.stack([np.roll(texture, (k, 2 * k), axis=(0, 1))[:720, :1280] for k in range(frames)])
        t = np.arange(round(seconds * 48_000)) / 48_000
        audio = np.stack([0.2 * np.sin(2 * np.pi * 220 * t), 0.2 * np.sin(2 * np.pi * 330 * t)]).astype(np.float32)
        path = folder / f"dia{i}_utt0.mp4"
        encode_clip(path, video, 24, audio, 48_000, crf=23, preset="veryfast")
        paths.append(path)
    return paths


def bare_decode(path: Path) -> None:
    with av.open(str(path)) as container:
        container.streams.video[0].thread_type = "AUTO"
        for packet in container.demux():
            packet.decode()


def time_per_clip(fn, paths: list[Path], repeats: int) -> float:
    """Median over repeats of the mean seconds per clip."""
    runs = []
    for _ in range(repeats):
        start = time.perf_counter()
        for path in paths:
            fn(path)
        runs.append((time.perf_counter() - start) / len(paths))
    return statistics.median(runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clips", type=int, default=12)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    cfg = MediaConfig()
    with tempfile.TemporaryDirectory() as tmp:
        paths = make_meld_like_clips(Path(tmp), args.clips)
        seconds = sum(decode_clip(p, cfg).duration for p in paths) / len(paths)
        print(f"{len(paths)} clips, 1280x720 H.264 24 fps + AAC 48 kHz stereo, mean {seconds:.1f} s; "
              f"torch threads {torch.get_num_threads()}")  # fmt: skip
        bare = time_per_clip(bare_decode, paths, args.repeats)
        ours = time_per_clip(lambda p: decode_clip(p, cfg), paths, args.repeats)

        def item(path: Path) -> None:
            clip = decode_clip(path, cfg)
            frames_to_tensor(clip.frames), log_mel(clip.waveform, cfg)

        full = time_per_clip(item, paths, args.repeats)
    print(f"{'loader':<28}{'ms/clip':>10}{'clips/s':>10}{'vs bare':>10}")
    for name, value in (("bare decode (floor)", bare), ("mmsent decode_clip", ours), ("mmsent item (+tensors)", full)):
        print(f"{name:<28}{1000 * value:>10.1f}{1 / value:>10.2f}{value / bare:>9.2f}x")


if __name__ == "__main__":
    main()
