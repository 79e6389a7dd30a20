"""sourcedir.tar.gz: what a SageMaker training image downloads, unpacks into /opt/ml/code and runs.

It holds the `mmsent` package as source, the entry script the image runs (named by the
`sagemaker_program` hyperparameter), and a requirements.txt that the image's toolkit installs
first. The PyTorch training image already has torch, torchvision and torchaudio built for its
CUDA: reinstalling them would pull gigabytes and could break its CUDA build, so they are left out.
The archive is byte-for-byte reproducible (sorted, fixed times), so an unchanged one is not re-uploaded.
"""

from __future__ import annotations

import gzip
import io
import tarfile
from importlib import metadata
from pathlib import Path

import mmsent

ENTRY_POINT = "mmsent_train.py"
# Already in the PyTorch training image, matched to its CUDA; never reinstall them.
IMAGE_PROVIDES: frozenset[str] = frozenset({"torch", "torchvision", "torchaudio"})
# Tools for development only: not needed to train.
_NOT_FOR_TRAINING: frozenset[str] = frozenset({"boto3"})

_ENTRY_SCRIPT = '''"""Entry point run by the SageMaker training toolkit: `mmsent train` with the job's hyperparameters."""
import sys

from mmsent.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
'''


def image_requirements() -> list[str]:
    """mmsent's pinned dependencies, less what the training image provides."""
    lines = []
    for requirement in metadata.requires("mmsent") or []:
        if "extra ==" in requirement:
            continue
        name = requirement.split("=")[0].split("<")[0].split(">")[0].split("[")[0].strip().lower()
        if name not in IMAGE_PROVIDES and name not in _NOT_FOR_TRAINING:
            lines.append(requirement.strip())
    return lines


def build_sourcedir(destination: Path) -> Path:
    """Write sourcedir.tar.gz to `destination` (a file path) and return it."""
    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    package_root = Path(mmsent.__file__).resolve().parent
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        _add_bytes(archive, ENTRY_POINT, _ENTRY_SCRIPT.encode())
        _add_bytes(archive, "requirements.txt", ("\n".join(image_requirements()) + "\n").encode())
        for path in sorted(package_root.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
                _add_bytes(archive, f"mmsent/{path.relative_to(package_root).as_posix()}", path.read_bytes())
    # No name and mtime=0 in the gzip header too: the same sources give the same bytes.
    with destination.open("wb") as raw, gzip.GzipFile(filename="", fileobj=raw, mode="wb", mtime=0) as zipped:
        zipped.write(buffer.getvalue())
    return destination


def _add_bytes(archive: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    info.mtime = 0
    archive.addfile(info, io.BytesIO(data))
