"""`mmsent predict` latency and throughput on this CPU, beside the decode time alone.

Writes MELD-shaped clips (1280x720 H.264 with B-frames + AAC, 2 to 6 s, bench_pipeline's maker)
and a model dir of the default architecture (MiniLM text encoder, R3D-18 video at 16 frames of
112 px, the audio CNN; untrained weights cost what trained ones do), then measures, side by side
in one run:
  - decode alone: one clip at a time, what the model's inputs cost to make (p50, p95);
  - predict, one clip at a time: a request's latency, decode + tokenise + forward (p50, p95);
  - predict, batched over the folder: clips/s with the decode pool and batches of 16.

    .venv/bin/python benchmarks/bench_predict.py [--clips 24] [--workers 2]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from bench_pipeline import make_dataset
from mmsent.config import DataConfig, ModelConfig
from mmsent.inference.predict import Predictor, Request, decode_for_prediction
from mmsent.model.fusion import MultimodalSentimentModel
from mmsent.model_dir import save_model_dir
from mmsent.pretrained import load_tokenizer


def percentiles(seconds: list[float]) -> tuple[float, float]:
    return float(np.percentile(seconds, 50)) * 1000, float(np.percentile(seconds, 95)) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clips", type=int, default=24)
    parser.add_argument("--workers", type=int, default=2, help="decode processes for the batched run")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="mmsent-bench-predict-") as folder:
        root = make_dataset(Path(folder) / "data", args.clips, 1)
        clips = sorted((root / "train" / "train_splits").glob("*.mp4"))
        model_cfg, data_cfg = ModelConfig(), DataConfig()
        torch.manual_seed(0)
        model = MultimodalSentimentModel(model_cfg, pretrained=True)  # offline MiniLM; video weights "none"
        save_model_dir(Path(folder) / "model", model, data_cfg, model_cfg, load_tokenizer(model_cfg.text_model))
        predictor = Predictor(Path(folder) / "model", batch_size=16, workers=args.workers)
        text = "Oh my God, I can't believe you did that!"
        predictor.predict([Request(clip=clips[0], text=text)])  # warm-up: first-call allocations and lazy imports

        decode = []
        for clip in clips:
            started = time.perf_counter()
            decode_for_prediction(clip, data_cfg.media, True, True, None)
            decode.append(time.perf_counter() - started)
        single = []
        solo = Predictor(Path(folder) / "model", batch_size=1, workers=1)
        for clip in clips:
            started = time.perf_counter()
            solo.predict([Request(clip=clip, text=text)])
            single.append(time.perf_counter() - started)
        started = time.perf_counter()
        predictor.predict([Request(clip=clip, text=text) for clip in clips])
        batched = time.perf_counter() - started

    decode_p50, decode_p95 = percentiles(decode)
    single_p50, single_p95 = percentiles(single)
    print(f"{len(clips)} clips 1280x720, default model ({sum(p.numel() for p in model.parameters()) / 1e6:.1f}M parameters), "
          f"{torch.get_num_threads()} torch threads\n")
    print("| what | p50 ms | p95 ms | clips/s |")
    print("|---|---:|---:|---:|")
    print(f"| decode alone, one clip at a time | {decode_p50:.0f} | {decode_p95:.0f} | {1000 / decode_p50:.1f} |")
    print(f"| predict, one clip at a time | {single_p50:.0f} | {single_p95:.0f} | {1000 / single_p50:.1f} |")
    print(f"| predict, batched (16 per batch, {args.workers} decode processes) | | | {len(clips) / batched:.1f} |")
    print(f"\none-clip latency over decode alone: {single_p50 / decode_p50:.2f}x (p50); "
          f"batched throughput over one at a time: {len(clips) / batched / (1000 / single_p50):.2f}x")


if __name__ == "__main__":
    main()
