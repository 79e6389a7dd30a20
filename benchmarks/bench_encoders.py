"""What each audio and video encoder costs per clip: forward milliseconds and peak memory, side by side.

Real-size architectures, randomly initialised (the shape, not the weights, sets the cost; no weights
download here), each as mmsent builds it (`SpeechEncoder`, `ClipEncoder`, `VideoEncoder`,
`AudioEncoder`), frozen and in eval mode, on a batch of `--batch` clips of the inputs the dataset
yields: a 4 s waveform at 16 kHz (or its log-mel) and the sampled frames at the size each video model
takes. Each row gives the mean milliseconds per clip over `--repeats` batches after one warm-up,
the process's peak resident memory growth while running it (CPU) or the peak CUDA memory, and the
one-time cost of running it over MELD's 13,708 clips (the frozen-output cache), extrapolated.

    .venv/bin/python benchmarks/bench_encoders.py [--batch 4] [--repeats 3] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

import torch

MELD_CLIPS = 13_708  # train 9,989 + dev 1,109 + test 2,610

# name, modality, transformers config class and settings (None: mmsent's own encoder), (frames, size)
ENCODERS = (
    ("audio CNN (default)", "audio", None, {}),
    ("wav2vec 2.0 base", "audio", "Wav2Vec2Config", {}),
    ("HuBERT base", "audio", "HubertConfig", {}),
    ("WavLM base", "audio", "WavLMConfig", {}),
    ("R3D-18 (default), 16x112", "video", None, {}),
    ("VideoMAE base, 16x224", "video", "VideoMAEConfig", {}),
    ("TimeSformer base, 8x224", "video", "TimesformerConfig", {}),
)


def build(modality: str, config_name: str | None, settings: dict, folder: Path):
    """The encoder as mmsent builds it, and its input batch's shape for one clip."""
    import transformers

    from mmsent.config import MediaConfig
    from mmsent.model.encoders import AudioEncoder, ClipEncoder, SpeechEncoder, VideoEncoder

    media = MediaConfig()
    if config_name is None:
        if modality == "audio":
            return AudioEncoder((16, 32, 64, 128), 128, 0.0, True), [(media.n_mels, media.mel_frames)]
        return VideoEncoder("none", 128, 0.0, True), [(3, media.num_frames, media.frame_size, media.frame_size)]
    config = getattr(transformers, config_name)(**settings)
    transformers.AutoModel.from_config(config).save_pretrained(folder)
    if modality == "audio":
        transformers.Wav2Vec2FeatureExtractor().save_pretrained(folder)
        return SpeechEncoder(str(folder), 128, 0.0, True), [(media.audio_samples,), ()]
    size = config.image_size
    transformers.VideoMAEImageProcessor(size={"shortest_edge": size}, crop_size={"height": size, "width": size}).save_pretrained(folder)
    return ClipEncoder(str(folder), 128, 0.0, True), [(3, config.num_frames, size, size)]


def measure(encoder: torch.nn.Module, shapes: list[tuple], batch: int, repeats: int, device: torch.device) -> tuple[float, float]:
    """(milliseconds per clip, peak memory growth in MB)."""
    encoder = encoder.to(device).eval()
    inputs = [torch.randn(batch, *shape, device=device) if shape else torch.full((batch,), 64_000, device=device)
              for shape in shapes]  # fmt: skip
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    with torch.no_grad():
        encoder.features(*inputs)  # warm-up
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        started = time.perf_counter()
        for _ in range(repeats):
            encoder.features(*inputs)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
    seconds = (time.perf_counter() - started) / (repeats * batch)
    peak = (torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - before)  # fmt: skip
    return seconds * 1000, peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    print(f"{device}, {torch.get_num_threads()} torch threads, batch {args.batch}, {args.repeats} repeats; "
          "memory: " + ("peak CUDA allocation" if device.type == "cuda" else "growth of peak RSS (order of runs matters)"))
    print(f"{'encoder':<28} {'params (M)':>10} {'ms/clip':>9} {'peak MB':>8} {'MELD once (min)':>16}")
    with tempfile.TemporaryDirectory() as scratch:
        for number, (name, modality, config_name, settings) in enumerate(ENCODERS):
            torch.manual_seed(0)
            encoder, shapes = build(modality, config_name, settings, Path(scratch) / str(number))
            params = sum(p.numel() for p in encoder.backbone.parameters()) / 1e6
            ms, peak = measure(encoder, shapes, args.batch, args.repeats, device)
            print(f"{name:<28} {params:>10.1f} {ms:>9.1f} {peak:>8.0f} {ms * MELD_CLIPS / 60_000:>16.1f}", flush=True)
            del encoder


if __name__ == "__main__":
    main()
