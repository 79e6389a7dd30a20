"""What an endpoint installs before it serves, and the wheels `deploy` packs so that it needs no internet.

SageMaker's PyTorch inference toolkit runs `pip install -r /opt/ml/model/code/requirements.txt` on every
new instance before TorchServe starts (sagemaker-pytorch-inference-toolkit, torchserve.py:
`_install_requirements`), and a serverless endpoint must answer /ping within minutes of a cold start. So
the archive's requirements.txt names only what the handler imports beyond the inference image's own
packages (torch, torchvision, torchaudio, numpy): INFERENCE_PACKAGES, at mmsent's pinned versions; and
`--no-index --find-links wheels` makes pip install them, with their dependencies, from `code/wheels/`
(pip resolves a relative --find-links against the requirements file's folder), never from PyPI.

The wheels are downloaded once per set of requirements, for the image's Python on manylinux x86_64 (the
AWS PyTorch inference images' platform), into the cache folder (`MMSENT_CACHE_DIR`/endpoint-wheels).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from mmsent.errors import SettingsError
from mmsent.sagemaker.images import FrameworkImage
from mmsent.sagemaker.package import requirements_for

# What mmsent.inference.handler imports beyond the image's torch, torchvision, torchaudio and numpy (and the
# standard library): tests/sagemaker/test_wheels.py imports the handler in a fresh interpreter and checks
# that every distribution it loads is one of these, one of their dependencies, or the image's own.
INFERENCE_PACKAGES: tuple[str, ...] = ("transformers", "av", "ftfy")
WHEELS_FOLDER = "wheels"  # under code/ in model.tar.gz
# pip's platform tags for the inference images (x86_64, glibc 2.35 on Ubuntu 22.04): the newest first.
PLATFORMS: tuple[str, ...] = ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64", "manylinux_2_5_x86_64")
_COMPLETE = ".complete"


def inference_requirements(image: FrameworkImage) -> list[str]:
    """The image's torch, torchvision and torchaudio pinned (`==`, so pip leaves the image's build alone),
    numpy held to its major version, then INFERENCE_PACKAGES at the versions mmsent pins: training's rule
    (package.requirements_for) kept to what the handler imports."""
    return requirements_for(image, only=INFERENCE_PACKAGES)


def requirements_file(requirements: list[str], wheels: bool) -> str:
    """requirements.txt's text: from the packed wheels alone when `wheels`, else from the package index."""
    options = ["--no-index", f"--find-links {WHEELS_FOLDER}"] if wheels else []
    return "\n".join(options + requirements) + "\n"


def fetch_wheels(requirements: list[str], image: FrameworkImage, cache_dir: Path) -> Path:
    """The wheels of `requirements` beyond the image's framework packages, with every dependency, for the
    image's Python on x86_64 Linux: downloaded once (pip download) into a folder of the cache named by what
    it holds, then reused. A download that fails leaves nothing that a later one would take as done."""
    wanted = [line for line in requirements if canonicalize_name(Requirement(line).name) not in image.framework_packages]
    key = hashlib.sha256("\n".join([image.python, *PLATFORMS, *wanted]).encode()).hexdigest()[:16]
    folder = Path(cache_dir) / "endpoint-wheels" / key
    if (folder / _COMPLETE).is_file():
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=folder.parent))
    try:
        platforms = [option for platform in PLATFORMS for option in ("--platform", platform)]
        command = [sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check", "--only-binary=:all:",
                   "--python-version", image.python, "--implementation", "cp", *platforms, "--dest", str(staging), *wanted]  # fmt: skip
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            problem = (done.stderr.strip().splitlines() or ["no message"])[-1]
            raise SettingsError(f"could not download the endpoint's wheels ({' '.join(wanted)}) for Python {image.python}: "
                                f"{problem}. deploy needs the package index once for them; or pass --no-wheels, and the "
                                "endpoint installs them from PyPI as it starts (it then needs internet access)")  # fmt: skip
        (staging / _COMPLETE).write_text("\n".join(wanted) + "\n")
        try:
            os.replace(staging, folder)
        except OSError:  # another deploy finished the same set meanwhile
            if not (folder / _COMPLETE).is_file():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder
