"""`make image-check`: the SageMaker job's Python environment, reproduced here, and the job run in it.

The local toolkit run (`mmsent launch --local`) uses this repository's venv, whose torch is not the
training image's. This check builds a venv holding exactly the image's framework packages (its
Python, torch, torchvision, torchaudio and numpy, from PyPI; the toolkit too), installs the job's
generated requirements.txt into it as the toolkit does (`pip install -r requirements.txt`), fails if
that changed torch, torchvision or torchaudio, moved numpy to another major version or left a
conflict (`pip check`), then runs `mmsent launch --local` on the built-in sample inside that venv,
end to end: model dir written, output/success.

It cannot check what only the image has: its CUDA build of torch (PyPI's is another build of the
same version), its OS libraries, the other packages AWS installs beside these (fastai, spacy, the
SageMaker SDK). The venvs are kept under .cache/image-venvs (a few GB each, downloaded once).

    python tools/image_check.py [--framework-version 2.10.0]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
from importlib import metadata
from pathlib import Path

from mmsent.sagemaker.images import DEFAULT_FRAMEWORK_VERSION, FRAMEWORK_IMAGES, FrameworkImage
from mmsent.sagemaker.package import build_sourcedir

ROOT = Path(__file__).resolve().parents[1]
WATCHED = ("torch", "torchvision", "torchaudio", "numpy")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--framework-version", default=DEFAULT_FRAMEWORK_VERSION, choices=sorted(FRAMEWORK_IMAGES))
    parser.add_argument("--venvs", type=Path, default=ROOT / ".cache" / "image-venvs", help="where the image venvs are kept")
    args = parser.parse_args()
    image = FRAMEWORK_IMAGES[args.framework_version]
    print(f"== pytorch-training {args.framework_version}: Python {image.python}, torch {image.torch}, "
          f"torchvision {image.torchvision}, torchaudio {image.torchaudio}, numpy {image.numpy}", flush=True)  # fmt: skip
    python = image_venv(image, args.venvs / args.framework_version)
    before = versions(python)
    problems: list[str] = []
    with tempfile.TemporaryDirectory(prefix="image-check-") as tmp:
        sourcedir = build_sourcedir(Path(tmp) / "sourcedir.tar.gz", args.framework_version)
        with tarfile.open(sourcedir) as archive:
            requirements = archive.extractfile("requirements.txt").read().decode()
        (Path(tmp) / "requirements.txt").write_text(requirements)
        print("== requirements.txt, as the job installs it:\n" + requirements, flush=True)
        install = subprocess.run([python, "-m", "pip", "install", "-r", str(Path(tmp) / "requirements.txt")],
                                 capture_output=True, text=True)  # fmt: skip
        print(install.stdout[-3000:] + install.stderr[-3000:], flush=True)
        if install.returncode != 0:
            problems.append(f"pip install -r requirements.txt failed (exit {install.returncode})")
        if "dependency conflicts" in install.stderr or "incompatible" in install.stderr:
            problems.append("pip reported a dependency conflict while installing requirements.txt")
        after = versions(python)
        for name in WATCHED:
            changed = before[name] != after[name] if name != "numpy" else before[name].split(".")[0] != after[name].split(".")[0]
            if changed:
                problems.append(f"installing requirements.txt changed {name} {before[name]} -> {after[name]}")
        check = subprocess.run([python, "-m", "pip", "check"], capture_output=True, text=True)
        print("== pip check: " + (check.stdout.strip() or check.stderr.strip()), flush=True)
        if check.returncode != 0:
            problems.append("pip check found broken requirements")

        job = Path(tmp) / "job"
        print(f"== mmsent launch --local --python {python}", flush=True)
        run = subprocess.run([sys.executable, "-m", "mmsent", "launch", "--local", "--python", str(python),
                              "--framework-version", args.framework_version, "--local-dir", str(job), "--job-name", "image-check",
                              "--", "--epochs", "1", "--max-train-samples", "32", "--num-workers", "0"])  # fmt: skip
        model_files = {p.name for p in (job / "model").iterdir()} if (job / "model").is_dir() else set()
        if run.returncode != 0 or not (job / "output" / "success").is_file():
            problems.append(f"the job failed (exit {run.returncode}); output/failure: "
                            + ((job / "output" / "failure").read_text()[-1500:] if (job / "output" / "failure").is_file() else "none"))  # fmt: skip
        elif not {"model.pth", "config.json", "labels.json", "metrics.json"} <= model_files:
            problems.append(f"the job's model dir lacks files: it holds {sorted(model_files)}")

    print(f"\n== image check, pytorch-training {args.framework_version} (Python {image.python}):")
    print(json.dumps({"framework packages": after, "problems": problems}, indent=2))
    print("PASSED" if not problems else "FAILED")
    return 0 if not problems else 1


def image_venv(image: FrameworkImage, folder: Path, toolkit: bool = True) -> str:
    """A venv with the image's Python and framework packages (and the training toolkit, with `toolkit`);
    made once, then reused. An image's numpy given as a major version alone ("2") installs its newest."""
    python = folder / "bin" / "python"
    stamp = folder / ".image-packages"
    wanted = [f"{name}=={version}" for name, version in image.framework_packages.items()]
    numpy = f"numpy=={image.numpy}" if "." in image.numpy else f"numpy>={image.numpy},<{int(image.numpy) + 1}"
    wanted += [numpy] + ([f"sagemaker-training=={metadata.version('sagemaker-training')}"] if toolkit else [])
    if stamp.is_file() and stamp.read_text().split() == wanted:
        return str(python)
    interpreter = find_python(image.python)
    shutil.rmtree(folder, ignore_errors=True)
    subprocess.run([interpreter, "-m", "venv", str(folder)], check=True)
    subprocess.run([python, "-m", "pip", "install", "--quiet", "--upgrade", "pip"], check=True)
    print(f"installing {' '.join(wanted)} into {folder} (a few GB, once)", flush=True)
    subprocess.run([python, "-m", "pip", "install", "--quiet", *wanted], check=True)
    stamp.write_text("\n".join(wanted) + "\n")
    return str(python)


def layered_venv(base_python: str, folder: Path) -> str:
    """A fresh venv of `base_python`'s interpreter that sees `base_python`'s venv beneath its own packages (a
    .pth file): what pip installs goes into this one, the image's packages stay as they are, and a check can
    start from the image's packages alone without copying gigabytes of them."""
    base_python = Path(base_python)
    version = subprocess.run([str(base_python), "-c", "import sys; print(f'{sys.version_info[0]}.{sys.version_info[1]}')"],
                             capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    subprocess.run([find_python(version), "-m", "venv", str(folder)], check=True)
    beneath = base_python.parents[1] / "lib" / f"python{version}" / "site-packages"
    (folder / "lib" / f"python{version}" / "site-packages" / "_image_packages.pth").write_text(f"{beneath}\n")
    return str(folder / "bin" / "python")


def find_python(version: str) -> str:
    """A working python3.X: on PATH, else one that pyenv installed but does not put on PATH."""
    candidates = [shutil.which(f"python{version}")]
    candidates += sorted(str(p) for p in (Path.home() / ".pyenv" / "versions").glob(f"{version}.*/bin/python{version}"))
    for candidate in filter(None, candidates):
        if subprocess.run([candidate, "--version"], capture_output=True).returncode == 0:
            return candidate
    raise SystemExit(f"image check: no working python{version} (the image's Python) on PATH or under ~/.pyenv; install it first")


def versions(python: str) -> dict[str, str]:
    code = f"import json; from importlib import metadata; print(json.dumps({{n: metadata.version(n) for n in {WATCHED!r}}}))"
    return json.loads(subprocess.run([python, "-c", code], capture_output=True, text=True, check=True).stdout)


if __name__ == "__main__":
    sys.exit(main())
