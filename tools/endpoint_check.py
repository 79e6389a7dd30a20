"""`make endpoint-check`: an endpoint's cold start, measured from the unpacked archive to its first answer.

A SageMaker endpoint instance unpacks model.tar.gz into /opt/ml/model, the PyTorch inference toolkit
installs code/requirements.txt (`pip install -r`, before TorchServe starts), then a worker imports
`inference`, calls model_fn and answers its first request; a serverless endpoint must answer /ping within
minutes of a cold start. This check packs a model dir as `mmsent deploy` does (its wheels included),
unpacks it into an /opt/ml/model-style folder, and in a venv holding the inference image's Python, torch,
torchvision, torchaudio and numpy (PyPI's builds, made once under .cache/image-venvs) times the stages
below; then the same for the archive as deploy packed it before ("before": every training dependency in
requirements.txt, installed from the package index), side by side:

    install   pip install -r code/requirements.txt (from the packed wheels; the package index is cut off)
    load      a fresh interpreter: code/ on the path, `import inference`, model_fn
    predict   input_fn + predict_fn + output_fn on a clip of the built-in sample

It fails when the "after" total passes --target-seconds (60) or any stage fails. What it cannot show: the
image's own CUDA build of torch, its OS and the other packages AWS installs there, TorchServe's own start-up
(`make torchserve-check` runs that), the download of model.tar.gz from S3.

    python tools/endpoint_check.py [--model-dir DIR] [--target-seconds 60]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import textwrap
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from image_check import image_venv, layered_venv  # noqa: E402  (the same venv recipe as the training image's)

from mmsent.sagemaker.deploy import build_model_archive  # noqa: E402
from mmsent.sagemaker.images import DEFAULT_INFERENCE_VERSION, INFERENCE_IMAGES  # noqa: E402
from mmsent.sagemaker.package import requirements_for  # noqa: E402
from mmsent.sagemaker.wheels import fetch_wheels, inference_requirements  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
# pip with no package index to reach (a closed port, no configured mirror): an endpoint without internet access.
OFFLINE_PIP = {"PIP_CONFIG_FILE": "/dev/null", "PIP_INDEX_URL": "http://127.0.0.1:9/simple", "PIP_FIND_LINKS": ""}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", type=Path, help="the model dir to pack (default: a one-epoch model of the built-in sample)")
    parser.add_argument("--framework-version", default=DEFAULT_INFERENCE_VERSION, choices=sorted(INFERENCE_IMAGES))
    parser.add_argument("--target-seconds", type=float, default=60.0)
    parser.add_argument("--venvs", type=Path, default=ROOT / ".cache" / "image-venvs", help="where the image venvs are kept")
    args = parser.parse_args()
    image = INFERENCE_IMAGES[args.framework_version]
    print(f"== pytorch-inference {args.framework_version}: Python {image.python}, torch {image.torch}, "
          f"torchvision {image.torchvision}, torchaudio {image.torchaudio}, numpy {image.numpy}", flush=True)  # fmt: skip
    base = image_venv(image, args.venvs / f"inference-{args.framework_version}", toolkit=False)
    rows, problems = {}, []
    with tempfile.TemporaryDirectory(prefix="endpoint-check-") as tmp:
        tmp = Path(tmp)
        sample, model_dir = _sample_and_model(tmp, args.model_dir)
        clip = next(p for p in sorted((sample / "train").rglob("*.mp4")) if p.stat().st_size > 0)
        wheels = fetch_wheels(inference_requirements(image), image, ROOT / ".cache")
        after = build_model_archive(model_dir, tmp / "after" / "model.tar.gz", args.framework_version, wheels=wheels)
        # Before: the archive as deploy packed it until the handler's requirements were split from training's:
        # every training dependency in requirements.txt, installed from the package index as the endpoint starts.
        before = build_model_archive(model_dir, tmp / "before" / "model.tar.gz", args.framework_version)
        training = "\n".join(requirements_for(image)) + "\n"
        for name, archive, requirements, offline in (("before: training's requirements, from the index", before, training, False),
                                                     ("after: the handler's, from the packed wheels", after, None, True)):  # fmt: skip
            print(f"== {name}: model.tar.gz {archive.stat().st_size / 1e6:.0f} MB", flush=True)
            rows[name] = {"archive MB": archive.stat().st_size / 1e6} | _cold_start(base, archive, requirements, offline, clip,
                                                                                   tmp / name.split(":")[0], problems)  # fmt: skip
    after_total = sum(v for k, v in rows[name].items() if k != "archive MB")
    if not problems and after_total > args.target_seconds:
        problems.append(f"{after_total:.1f} s from the unpacked archive to the first answer: over the {args.target_seconds:.0f} s target")
    print("\n== endpoint check, pytorch-inference", args.framework_version)
    print("| archive | MB | install s | load s | predict s | total s |\n|---|---:|---:|---:|---:|---:|")
    for name, row in rows.items():
        total = sum(v for k, v in row.items() if k != "archive MB")
        cells = " | ".join(f"{row[k]:.1f}" if k in row else "-" for k in ("install", "load", "predict"))
        print(f"| {name} | {row['archive MB']:.0f} | {cells} | {total:.1f} |")
    print(f"target: the 'after' total under {args.target_seconds:.0f} s")
    print(json.dumps({"problems": problems}, indent=2))
    print("PASSED" if not problems else "FAILED")
    return 0 if not problems else 1


def _cold_start(base: str, archive: Path, requirements: str | None, offline: bool, clip: Path, folder: Path,
                problems: list[str]) -> dict[str, float]:  # fmt: skip
    """Unpack `archive` into folder/opt/ml/model (its requirements.txt replaced by `requirements` when given),
    install them into a copy of the image venv `base`, then answer `clip` in a fresh interpreter: the seconds."""
    python = layered_venv(base, folder / "venv")  # one per archive: each install starts from the image's packages alone
    model = folder / "opt" / "ml" / "model"
    with tarfile.open(archive) as unpacking:
        unpacking.extractall(model, filter="data")
    if requirements is not None:
        (model / "code" / "requirements.txt").write_text(requirements)
    # The toolkit's own command (torchserve.py, _install_requirements); offline: no index reachable, as in a VPC
    # without internet access.
    env = os.environ | (OFFLINE_PIP if offline else {})
    timings = {}
    started = time.monotonic()
    install = subprocess.run([python, "-m", "pip", "install", "--disable-pip-version-check", "-r", str(model / "code" / "requirements.txt")],
                             capture_output=True, text=True, env=env)  # fmt: skip
    timings["install"] = time.monotonic() - started
    if install.returncode != 0:
        problems.append(f"{archive}: pip install -r requirements.txt failed: {install.stderr.strip().splitlines()[-1:]}")
        return timings
    answer = subprocess.run([python, "-c", _WORKER.format(code=str(model / "code"), model=str(model), clip=str(clip))],
                            capture_output=True, text=True, cwd=folder)  # fmt: skip
    if answer.returncode != 0:
        problems.append(f"{archive}: the handler failed: {answer.stderr.strip()[-1500:]}")
        return timings
    report = json.loads(answer.stdout.strip().splitlines()[-1])
    print(f"   first answer: {report['emotion']} (from {clip.name})", flush=True)
    return timings | {"load": report["load"], "predict": report["predict"]}


# What a TorchServe worker does first, timed: code/ on the path, `inference` imported, model_fn, one request.
_WORKER = textwrap.dedent("""
    import json, sys, time
    started = time.monotonic()
    sys.path.insert(0, {code!r})
    import inference
    model = inference.model_fn({model!r})
    loaded = time.monotonic()
    data = inference.input_fn(open({clip!r}, "rb").read(), "video/mp4")
    body, _ = inference.output_fn(inference.predict_fn(data, model), "application/json")
    done = time.monotonic()
    print(json.dumps({{"load": loaded - started, "predict": done - loaded, "emotion": json.loads(body)["predictions"][0]["emotion"]}}))
""")


def _sample_and_model(folder: Path, model_dir: Path | None) -> tuple[Path, Path]:
    """The built-in sample (small) and, unless one is given, a model dir trained on it for one epoch."""
    from mmsent.data.sample import SampleConfig, write_sample

    sample = write_sample(folder / "sample", SampleConfig(train_size=32, dev_size=10, test_size=10, seed=7), progress=False)
    if model_dir is not None:
        return sample, model_dir
    run = folder / "run"
    subprocess.run([sys.executable, "-m", "mmsent", "train", "--data-dir", str(sample), "--epochs", "1", "--num-workers", "0",
                    "--model-dir", str(run / "model"), "--output-data-dir", str(run / "output"),
                    "--tensorboard-dir", str(run / "tensorboard"), "--checkpoint-dir", str(run / "checkpoints")], check=True)  # fmt: skip
    return sample, run / "model"


if __name__ == "__main__":
    sys.exit(main())
