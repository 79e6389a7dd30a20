"""The GPU path in one prepared run: AMP training and resume, torchrun with NCCL, throughput, memory, encoders.

Everything runs through the real `mmsent train` (subprocesses, as a user runs it) except the memory
levers, which time one optimizer step in this process. It makes its own data. Prints one summary
table and writes it as JSON to OUT/gpu_check.json.

  1. amp_resume   the built-in sample at 16 frames of 112 px, for bf16 (where supported) and fp16 with
                  GradScaler: an uninterrupted run, and one SIGTERM'd mid-epoch 1 then resumed; same
                  best epoch and test emotion weighted F1 within AMP_TOLERANCE; the checkpoint's scaler state.
  2. torchrun     `torchrun --standalone --nproc-per-node N` (N = GPUs; NCCL) with --cache-dir, one epoch:
                  one model dir, validation gathered over every dev item. On one GPU torchrun would make a
                  world of one, which exercises no NCCL collective: reported as skipped, never as tested.
  3. throughput   MELD-shaped data (bench_pipeline's 720p H.264 clips, made here on every core, once): training samples/s for
                  (a) decoding every epoch with --num-workers 0, 4, 8, (b) the media cache, (c) cached
                  frozen outputs with every layer of the text encoder fine-tuned, (d) as (c) with only its top 4
                  layers trained on its lower layers' stored outputs (the default MiniLM's default), under AMP;
                  GPU busy % over the training epoch
                  (nvidia-smi, 5 samples/s) and peak GPU memory (torch, from the run's timings.json).
  4. memory       peak GPU memory of one optimizer step at batch 16 with and without AMP, and batch 4
                  with 4 accumulation steps (the out-of-memory remedies).
  5. encoders     a wav2vec2 and a VideoMAE of base size (random weights, no download) as --audio-model and
                  --video-model, frozen, their outputs computed once into the cache, under AMP: one epoch,
                  then `mmsent predict` from its model dir; the one-time frozen-output seconds and peak memory.

  --cpu-dry-run   every step on the CPU at tiny sizes (two gloo processes instead of NCCL, AMP a no-op,
                  no GPU readings, one epoch where the GPU run has two, throughput's (c) alone, no prediction
                  after the encoders' epoch):
                  the suite runs it, so the script cannot rot between GPU sessions.
  --text-model    the text encoder; where the offline default is not installed (a bare GPU image),
                  --random-text-init DIR builds one of DIR's architecture (config + tokenizer files,
                  no weights) with random weights: it costs what the trained one costs.

    make gpu-check                                      # see benchmarks/README.md for the lent GPU machine
    python benchmarks/gpu_check.py --cpu-dry-run --out /tmp/gpu-check
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import torch

from bench_pipeline import make_dataset  # MELD-shaped 720p clips (this folder is on the path)

AMP_TOLERANCE = 0.02  # test emotion weighted F1, resumed vs uninterrupted: GPU kernels are not bitwise deterministic
CPU_TOLERANCE = 1e-6  # on the CPU a resumed run repeats the uninterrupted one


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for gpu_check.json")
    parser.add_argument("--work", type=Path, help="folder for the data and the runs (default: OUT/work)")
    parser.add_argument("--cpu-dry-run", action="store_true", help="every step on the CPU at tiny sizes")
    parser.add_argument("--clips", type=int, help="MELD-shaped training clips for the throughput step (default: 1000; dry run 12)")
    parser.add_argument("--text-model", default="default", help="text encoder (default: the offline MiniLM)")
    parser.add_argument("--random-text-init", type=Path, help="build a randomly initialised text encoder of this folder's "
                        "architecture (config.json + tokenizer files) and use it")
    parser.add_argument("--only", default="amp_resume,torchrun,throughput,memory,encoders", help="steps to run, comma-separated")
    args = parser.parse_args()
    check = GpuCheck(args)
    for step in args.only.split(","):
        started = time.monotonic()
        check.results[step] = getattr(check, step)()
        check.results[step]["seconds"] = round(time.monotonic() - started, 1)
        check.save()
    print(check.table())


class GpuCheck:
    def __init__(self, args: argparse.Namespace) -> None:
        self.dry = args.cpu_dry_run
        if not self.dry and not torch.cuda.is_available():
            raise SystemExit("no CUDA device: run on a GPU machine, or with --cpu-dry-run")
        self.report = args.out.resolve()
        self.report.mkdir(parents=True, exist_ok=True)
        self.out = (args.work or args.out / "work").resolve()  # data, runs, checkpoints: GBs on a GPU
        self.out.mkdir(parents=True, exist_ok=True)
        self.clips = args.clips or (12 if self.dry else 1000)
        self.gpus = 2 if self.dry else torch.cuda.device_count()
        self.text_model = args.text_model
        if args.random_text_init is not None:
            self.text_model = str(random_text_encoder(args.random_text_init, self.out / "text-model"))
        self.results: dict = {"device": "cpu (dry run)" if self.dry else torch.cuda.get_device_name(0),
                              "torch": torch.__version__, "gpus": self.gpus}  # fmt: skip
        # The built-in sample at MELD-like frames (16 x 112 px) on a GPU; tiny on the CPU.
        self.media = ["--num-frames", "2", "--frame-size", "32", "--audio-seconds", "2"] if self.dry else \
            ["--num-frames", "16", "--frame-size", "112"]  # fmt: skip
        self.common = ["--text-model", self.text_model, "--log-every", "1", "--batch-size", "8" if self.dry else "16"]

    # ------------------------------------------------------------------ steps

    def sample(self) -> Path:
        """The built-in sample (small in the dry run), written once."""
        from mmsent.data.sample import SampleConfig, write_sample

        sample = self.out / "sample"
        if not (sample / "sample.json").is_file():
            size = SampleConfig(train_size=32, dev_size=10, test_size=10, seed=7) if self.dry else SampleConfig()
            write_sample(sample, size, progress=False)
        return sample

    def amp_resume(self) -> dict:
        from mmsent.training.precision import computes_bf16

        sample = self.sample()
        dtypes = ["fp32 (CPU: AMP is a no-op)"] if self.dry else (["bf16", "fp16"] if computes_bf16(torch.device("cuda")) else ["fp16"])
        results = {}
        for dtype in dtypes:
            amp = [] if self.dry else ["--amp", "true", "--amp-dtype", dtype]
            args = ["--data-dir", str(sample), "--epochs", "1" if self.dry else "2", "--num-workers", "0" if self.dry else "4",
                    *self.media, *self.common, *amp]  # fmt: skip
            name = dtype.split()[0]
            whole = self.out / f"amp-{name}-whole"
            run = train(args, whole)
            broken = self.out / f"amp-{name}-resumed"
            stopped = train(args, broken, sigterm_at="epoch 1/")
            checkpoint = newest_checkpoint(broken / "checkpoints")
            scaler = torch.load(checkpoint, map_location="cpu", weights_only=True)["scaler"]
            resumed = train(args, broken)
            expected, got = (json.loads((r / "model" / "metrics.json").read_text()) for r in (whole, broken))
            f1 = (expected["test"]["emotion"]["weighted_f1"], got["test"]["emotion"]["weighted_f1"])
            tolerance = CPU_TOLERANCE if self.dry else AMP_TOLERANCE
            results[name] = {
                "uninterrupted_exit": run.returncode, "sigterm_exit": stopped.returncode, "resumed_exit": resumed.returncode,
                "resumed_from_checkpoint": "resumed from" in resumed.stderr + resumed.stdout,
                "best_epoch": [expected["best_epoch"], got["best_epoch"]], "test_emotion_weighted_f1": [round(v, 4) for v in f1],
                "scaler_state": {k: float(v) if isinstance(v, (int, float)) else str(v) for k, v in scaler.items()} or "none (no loss scaling)",
                "ok": run.returncode == 0 and stopped.returncode == 128 + signal.SIGTERM and resumed.returncode == 0
                      and expected["best_epoch"] == got["best_epoch"] and abs(f1[0] - f1[1]) <= tolerance
                      and (dtype != "fp16" or "scale" in scaler),
            }  # fmt: skip
        return results

    def torchrun(self) -> dict:
        if self.gpus < 2:
            return {"processes": self.gpus, "backend": "nccl", "skipped": "one GPU: torchrun would make a world of one, "
                    "which runs no NCCL collective", "ok": True}  # fmt: skip
        sample = self.out / "sample"
        folder = self.out / "torchrun"
        # With the media cache, as a job that decodes once runs: local rank 0 builds it, the others read it, and
        # every rank serves the frozen video backbone's outputs from one store (identical frozen weights).
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(self.gpus),
                   "-m", "mmsent", "train", "--data-dir", str(sample), "--epochs", "1", "--num-workers", "0" if self.dry else "2",
                   "--cache-dir", str(self.out / "torchrun-cache"), *self.media, *self.common, *run_folders(folder)]  # fmt: skip
        done = subprocess.run(command, capture_output=True, text=True)
        metrics_file = folder / "model" / "metrics.json"
        validated = None
        if metrics_file.is_file():
            matrix = json.loads(metrics_file.read_text())["validation"]["emotion"]["confusion_matrix"]
            validated = int(np.sum(matrix))
        dev_rows = sum(1 for _ in (sample / "dev" / "dev_sent_emo.csv").open(encoding="utf-8")) - 1
        backend = "gloo" if self.dry else "nccl"
        return {"processes": self.gpus, "backend": backend, "exit": done.returncode, "validation_items": validated,
                "dev_rows": dev_rows, "model_dir": metrics_file.is_file(), "ok": done.returncode == 0 and validated == dev_rows,
                **({"stderr_tail": done.stderr[-2000:]} if done.returncode else {})}  # fmt: skip

    def throughput(self) -> dict:
        data = self.out / "meld-shaped"
        if not (data / "done").is_file():
            shutil.rmtree(data, ignore_errors=True)  # a run stopped while writing it
            make_dataset(data, self.clips, 4 if self.dry else 64, size=(160, 90) if self.dry else (1280, 720),
                         workers=os.cpu_count() or 1)  # fmt: skip
            (data / "done").write_text("ok\n")
        subset = str(min(self.clips, 8 if self.dry else 256))
        cache = self.out / "media-cache"
        runs = {f"decode every epoch, {w} workers": ["--num-workers", str(w), "--max-train-samples", subset]
                for w in (() if self.dry else (0, 4, 8))}  # fmt: skip
        workers = "0" if self.dry else "8"
        if not self.dry:  # the dry run trains once, the run that builds the cache and serves frozen outputs from it
            runs["media cache"] = ["--num-workers", workers, "--cache-dir", str(cache), "--cache-embeddings", "false"]
        runs["media cache + cached frozen outputs, text fine-tuned"] = ["--num-workers", workers, "--cache-dir", str(cache),
                                                                        "--train-top-layers", "0"]  # every layer  # fmt: skip
        if not self.dry:  # (d): the text encoder's top 4 layers on its lower layers' stored outputs, under AMP too
            runs["media cache + cached frozen outputs, text top 4 layers"] = [
                "--num-workers", workers, "--cache-dir", str(cache), "--train-top-layers", "4", "--amp", "true"]  # fmt: skip
        results = {}
        for name, extra in runs.items():
            folder = self.out / ("throughput-" + re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-"))
            sampler = GpuSampler(enabled=not self.dry)
            with sampler:
                done = train(["--data-dir", str(data), "--epochs", "1", *self.media, *self.common, *extra], folder,
                             on_line=sampler.mark)  # fmt: skip
            history = json.loads((folder / "output" / "history.json").read_text()) if done.returncode == 0 else None
            timings = json.loads((folder / "output" / "timings.json").read_text()) if done.returncode == 0 else {}
            items = int(extra[extra.index("--max-train-samples") + 1]) if "--max-train-samples" in extra else self.clips
            seconds = history[0]["train"]["seconds"] if history else None
            results[name] = {"exit": done.returncode, "train_items": items, "epoch_seconds": seconds,
                             "samples_per_second": round(items / seconds, 1) if seconds else None,
                             "gpu_busy_percent": sampler.busy_during_training(),
                             "peak_gpu_memory_mb": round(timings["peak_gpu_memory_mb"]) if "peak_gpu_memory_mb" in timings else None,
                             "setup_seconds": timings.get("setup_seconds")}  # fmt: skip
        fed = results["media cache + cached frozen outputs, text fine-tuned"]["gpu_busy_percent"]
        return {"runs": results, "target": "GPU busy >= 90% in (c)",
                "ok": all(r["exit"] == 0 for r in results.values()) and (self.dry or (fed is not None and fed >= 90))}  # fmt: skip

    def memory(self) -> dict:
        from mmsent.config import MediaConfig, ModelConfig
        from mmsent.model.fusion import MultimodalSentimentModel
        from mmsent.training.precision import choose_precision

        device = torch.device("cpu" if self.dry else "cuda")
        media = MediaConfig(num_frames=2, frame_size=32, audio_seconds=2.0) if self.dry else MediaConfig()
        model = MultimodalSentimentModel(ModelConfig(text_model=self.text_model)).to(device).train()
        optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
        results = {}
        big, small = (4, 1) if self.dry else (16, 4)  # the same three shapes, smaller on the CPU
        for name, batch_size, steps, amp in ((f"batch {big}, fp32", big, 1, False), (f"batch {big}, --amp", big, 1, True),
                                             (f"batch {small} x {big // small} accumulation, fp32", small, big // small, False)):  # fmt: skip
            precision = choose_precision(amp, device)
            scaler = precision.scaler()
            optimizer.zero_grad(set_to_none=True)
            if device.type == "cuda":
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats()
            for _ in range(steps):
                batch = synthetic_batch(batch_size, media, device)
                with precision.autocast():
                    logits = model(batch)
                    loss = sum(torch.nn.functional.cross_entropy(v.float(), batch[k]) for k, v in logits.items())
                scaler.scale(loss / steps).backward()
            scaler.step(optimizer)
            scaler.update()
            peak = torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else None
            results[name] = {"precision": precision.name, "peak_gpu_memory_mb": round(peak) if peak else None}
        return {"steps": results, "ok": all(torch.isfinite(p).all() for p in model.parameters())}

    # ------------------------------------------------------------------ output

    def encoders(self) -> dict:
        """Transformers audio and video encoders (random weights: base size on a GPU, tiny in the dry run),
        frozen and served from the cache, under AMP on a GPU: one epoch trains, and its model dir predicts."""
        sample = self.sample()
        audio, video = (random_media_encoder(kind, self.out / f"encoder-{kind}", tiny=self.dry) for kind in ("wav2vec2", "videomae"))
        amp = [] if self.dry else ["--amp", "true"]
        run_dir = self.out / "encoders"
        args = ["--data-dir", str(sample), "--epochs", "1", "--num-workers", "0" if self.dry else "4", "--audio-seconds",
                "2" if self.dry else "4", *self.common, "--audio-model", str(audio), "--video-model", str(video),
                "--cache-dir", str(self.out / "encoders-cache"), *amp]  # fmt: skip
        run = train(args, run_dir)
        clip = next((sample / "dev" / "dev_splits_complete").glob("*.mp4"))
        # The dry run leaves prediction to the suite (test_pretrained_encoders predicts from such a model dir).
        predicted = subprocess.CompletedProcess([], 0) if self.dry else subprocess.run(
            [sys.executable, "-m", "mmsent", "predict", "--model-dir", str(run_dir / "model"), str(clip), "--json",
             "--num-workers", "0"], capture_output=True, text=True)  # fmt: skip
        metrics = json.loads((run_dir / "model" / "metrics.json").read_text()) if run.returncode == 0 else {}
        timings = run_dir / "output" / "timings.json"
        setup = json.loads(timings.read_text()) if timings.is_file() else {}
        return {"exit": run.returncode, "predict_exit": predicted.returncode,
                "validation_emotion_weighted_f1": round(metrics.get("validation", {}).get("emotion", {}).get("weighted_f1", 0.0), 4),
                "frozen_outputs_seconds": round(setup.get("setup_seconds", {}).get("frozen_outputs", 0.0), 1),
                "peak_gpu_memory_mb": round(setup.get("peak_gpu_memory_mb", 0.0)),
                "ok": run.returncode == 0 and predicted.returncode == 0 and "computing the frozen audio" in run.stdout}  # fmt: skip

    def save(self) -> None:
        (self.report / "gpu_check.json").write_text(json.dumps(self.results, indent=2, default=str) + "\n")

    def table(self) -> str:
        r = self.results
        lines = [f"gpu check on {r['device']} (torch {r['torch']}, {r['gpus']} GPU(s)); JSON: {self.report / 'gpu_check.json'}", "",
                 "| step | result | ok |", "|---|---|---|"]  # fmt: skip
        for name, run in r.get("amp_resume", {}).items():
            if isinstance(run, dict):
                lines.append(f"| AMP {name}: resume after SIGTERM | best epoch {run['best_epoch']}, test emotion wF1 "
                             f"{run['test_emotion_weighted_f1']}, scaler {run['scaler_state']} | {run['ok']} |")  # fmt: skip
        if "torchrun" in r and "skipped" in r["torchrun"]:
            lines.append(f"| torchrun ({r['torchrun']['backend']}) | skipped: {r['torchrun']['skipped']} | - |")
        elif "torchrun" in r:
            t = r["torchrun"]
            lines.append(f"| torchrun x{t['processes']} ({t['backend']}), --cache-dir | exit {t['exit']}, validation "
                         f"{t['validation_items']} of {t['dev_rows']} items | {t['ok']} |")  # fmt: skip
        for name, run in r.get("throughput", {}).get("runs", {}).items():
            lines.append(f"| {name} | {run['samples_per_second']} samples/s, GPU busy {run['gpu_busy_percent']}%, "
                         f"peak {run['peak_gpu_memory_mb']} MB | {run['exit'] == 0} |")  # fmt: skip
        for name, run in r.get("memory", {}).get("steps", {}).items():
            lines.append(f"| one step, {name} | {run['precision']}, peak {run['peak_gpu_memory_mb']} MB | {r['memory']['ok']} |")
        if "encoders" in r:
            e = r["encoders"]
            lines.append(f"| wav2vec2 + VideoMAE (random), frozen, cached | exit {e['exit']}, frozen outputs "
                         f"{e['frozen_outputs_seconds']} s, peak {e['peak_gpu_memory_mb']} MB, predict exit {e['predict_exit']} | {e['ok']} |")  # fmt: skip
        lines.append("")
        lines += [f"{step}: {r[step]['seconds']} s" for step in ("amp_resume", "torchrun", "throughput", "memory", "encoders") if step in r]
        return "\n".join(lines)


# ---------------------------------------------------------------------- helpers


def run_folders(out: Path) -> list[str]:
    return ["--model-dir", str(out / "model"), "--tensorboard-dir", str(out / "tensorboard"),
            "--output-data-dir", str(out / "output"), "--checkpoint-dir", str(out / "checkpoints")]  # fmt: skip


def train(args: list[str], folder: Path, sigterm_at: str | None = None, on_line=None) -> subprocess.CompletedProcess:
    """`mmsent train ARGS` into `folder`'s four run folders. `sigterm_at`: SIGTERM once a progress line
    containing it has been printed twice (mid-epoch). `on_line(line)` sees each output line as it comes."""
    command = [sys.executable, "-m", "mmsent", "train", *args, *run_folders(folder)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines, seen = [], 0
    for line in process.stdout:
        lines.append(line)
        if on_line is not None:
            on_line(line)
        if sigterm_at is not None and sigterm_at in line and " train " in line:
            seen += 1
            if seen == 2:
                process.send_signal(signal.SIGTERM)
                sigterm_at = None
    process.wait()
    output = "".join(lines)
    return subprocess.CompletedProcess(command, process.returncode, output, output)


def newest_checkpoint(folder: Path) -> Path:
    found = sorted(folder.glob("checkpoint-*.pt"))
    if not found:
        raise RuntimeError(f"no checkpoint in {folder}")
    return found[-1]


class GpuSampler:
    """nvidia-smi's GPU utilisation, 5 times a second, and the span of the training epoch (from the
    first training progress line to the first validation line) to average it over."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.samples: list[tuple[float, float]] = []
        self.start = self.end = None
        self.process = None

    def __enter__(self):
        if self.enabled:
            self.process = subprocess.Popen(["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits",
                                             "-lms", "200"], stdout=subprocess.PIPE, text=True)  # fmt: skip
            threading.Thread(target=self._read, daemon=True).start()
        return self

    def _read(self) -> None:
        for line in self.process.stdout:
            values = [float(v) for v in line.split(",") if v.strip().replace(".", "", 1).isdigit()]
            if values:
                self.samples.append((time.monotonic(), float(np.mean(values))))

    def mark(self, line: str) -> None:
        if self.start is None and " train " in line and "epoch 1/" in line:
            self.start = time.monotonic()
        if self.start is not None and self.end is None and "validation" in line:
            self.end = time.monotonic()

    def __exit__(self, *exc) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait()

    def busy_during_training(self) -> float | None:
        if not self.enabled or self.start is None:
            return None
        end = self.end or time.monotonic()
        inside = [value for at, value in self.samples if self.start <= at <= end]
        return round(float(np.mean(inside)), 1) if inside else None


def synthetic_batch(size: int, media, device: torch.device) -> dict:
    from mmsent.labels import EMOTIONS, SENTIMENTS

    return {
        "input_ids": torch.randint(1000, 5000, (size, 40), device=device),
        "attention_mask": torch.ones(size, 40, dtype=torch.long, device=device),
        "target_mask": torch.ones(size, 40, dtype=torch.long, device=device),
        "text_present": torch.ones(size, dtype=torch.bool, device=device),
        "frames": torch.randn(size, 3, media.num_frames, media.frame_size, media.frame_size, device=device),
        "video_present": torch.ones(size, dtype=torch.bool, device=device),
        "log_mel": torch.randn(size, media.n_mels, media.mel_frames, device=device),
        "audio_present": torch.ones(size, dtype=torch.bool, device=device),
        "emotion": torch.randint(0, len(EMOTIONS), (size,), device=device),
        "sentiment": torch.randint(0, len(SENTIMENTS), (size,), device=device),
    }


def random_media_encoder(kind: str, destination: Path, tiny: bool) -> Path:
    """A wav2vec2 or VideoMAE model with random weights and its processor, as a hub folder: base size
    (transformers' config defaults: 95 M and 86 M parameters, 16 frames of 224 px), or tiny (2 frames of 32 px)."""
    import transformers as t

    if (destination / "config.json").is_file():
        return destination
    torch.manual_seed(0)
    small = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64} if tiny else {}
    if kind == "wav2vec2":
        convolutions = {"conv_dim": (32, 32, 32), "conv_stride": (5, 4, 4), "conv_kernel": (10, 8, 8),
                        "num_conv_pos_embeddings": 16, "num_conv_pos_embedding_groups": 2} if tiny else {}  # fmt: skip
        t.Wav2Vec2Model(t.Wav2Vec2Config(**small, **convolutions)).save_pretrained(destination)
        t.Wav2Vec2FeatureExtractor().save_pretrained(destination)
    else:
        config = t.VideoMAEConfig(**small, **({"image_size": 32, "num_frames": 2} if tiny else {}))
        t.VideoMAEModel(config).save_pretrained(destination)
        size = config.image_size
        t.VideoMAEImageProcessor(size={"shortest_edge": size}, crop_size={"height": size, "width": size}).save_pretrained(destination)
    return destination


def random_text_encoder(source: Path, destination: Path) -> Path:
    """A text encoder of `source`'s architecture with random weights, saved with its tokenizer."""
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    if not (destination / "config.json").is_file():
        torch.manual_seed(0)
        AutoModel.from_config(AutoConfig.from_pretrained(source)).save_pretrained(destination)
        AutoTokenizer.from_pretrained(source).save_pretrained(destination)
    return destination


if __name__ == "__main__":
    main()
