"""sourcedir.tar.gz: what a SageMaker training image downloads, unpacks into /opt/ml/code and runs.

It holds the `mmsent` package as source, the entry script the image runs (named by the
`sagemaker_program` hyperparameter), and a requirements.txt that the image's toolkit installs
first (`pip install -r requirements.txt`). The PyTorch training image already has torch,
torchvision and torchaudio built for its CUDA: replacing them would pull gigabytes and could break
its CUDA build, so requirements.txt pins them to the image's own versions, which pip leaves alone.
The archive is byte-for-byte reproducible (sorted, fixed times), so an unchanged one is not re-uploaded.
"""

from __future__ import annotations

import gzip
import io
import sys
import tarfile
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

import mmsent
from mmsent.sagemaker.images import DEFAULT_FRAMEWORK_VERSION, FrameworkImage, framework_image

ENTRY_POINT = "mmsent_train.py"
# Tools for development only: not needed to train (and the training image has boto3 already).
_NOT_FOR_TRAINING: frozenset[str] = frozenset({"boto3"})

_ENTRY_SCRIPT = '''"""Entry point run by the SageMaker training toolkit: `mmsent train` with the job's hyperparameters."""
import sys

from mmsent.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
'''


def image_requirements(framework_version: str = DEFAULT_FRAMEWORK_VERSION) -> list[str]:
    """requirements.txt for the training image of `framework_version`: its own torch, torchvision and
    torchaudio as `==` lines (so pip fails loudly rather than replace the image's CUDA build with a
    PyPI one; `==2.10.0` accepts the image's `2.10.0+cu130`, PEP 440 ignoring local labels), numpy
    held to the image's major version, then mmsent's own pinned dependencies."""
    return requirements_for(framework_image(framework_version))


def requirements_for(image: FrameworkImage, only: tuple[str, ...] | None = None) -> list[str]:
    """The rule of `image_requirements`, for any image (training or inference). `only`: of mmsent's own
    pinned dependencies, just these (what an endpoint's handler imports), each of which must be one."""
    major = int(image.numpy.split(".")[0])
    lines = [f"{name}=={version}" for name, version in image.framework_packages.items()]
    lines.append(f"numpy>={major},<{major + 1}")
    wanted = None if only is None else {canonicalize_name(name) for name in only}
    kept = set()
    for line in metadata.requires("mmsent") or []:
        requirement = Requirement(line)
        if requirement.marker is not None:  # an extra's: dev, bench, local
            continue
        name = canonicalize_name(requirement.name)
        if wanted is not None:
            keep = name in wanted
        else:
            keep = name not in image.framework_packages and name != "numpy" and name not in _NOT_FOR_TRAINING
        if keep:
            lines.append(str(requirement))
            kept.add(name)
    if wanted is not None and wanted - kept:
        raise ValueError(f"not among mmsent's dependencies: {', '.join(sorted(wanted - kept))}")
    return lines


def image_conflicts(framework_version: str) -> list[str]:
    """Lower bounds on the image's torch, torchvision, torchaudio or numpy (`torch>=2.6`) that the
    packages requirements.txt names declare in their installed metadata, extras included, and that
    the image's own versions fall below: each would fail the job at import, after it started."""
    return conflicts_with(framework_image(framework_version), f"pytorch-training {framework_version}")


def conflicts_with(image: FrameworkImage, name_of_image: str, requirements: list[str] | None = None) -> list[str]:
    """`image_conflicts` for any image and `requirements` (default: training's for it); `name_of_image`
    names it in the messages."""
    provided = image.framework_packages | {"numpy": image.numpy}
    conflicts = []
    for line in requirements if requirements is not None else requirements_for(image):
        package = Requirement(line)
        if canonicalize_name(package.name) in provided:
            continue
        for declared in metadata.requires(package.name) or []:
            bound = Requirement(declared)
            name = canonicalize_name(bound.name)
            lower = [spec for spec in bound.specifier if spec.operator in (">=", ">", "~=")]
            if name in provided and lower and not all(spec.contains(provided[name], prereleases=True) for spec in lower):
                conflicts.append(f"{package.name} {metadata.version(package.name)} needs {declared.split(';')[0]}; "
                                 f"{name_of_image} has {name} {provided[name]}")  # fmt: skip
    return sorted(set(conflicts))


def this_environment() -> FrameworkImage:
    """The torch, torchvision, torchaudio and numpy installed here, as an image would list them: a
    local job run under this Python must pin these, or the toolkit's `pip install -r requirements.txt`
    replaces this environment's torch with the training image's."""
    public = {name: metadata.version(name).split("+")[0] for name in ("torch", "torchvision", "torchaudio", "numpy")}
    return FrameworkImage(python=f"{sys.version_info.major}.{sys.version_info.minor}", **public)


def build_sourcedir(destination: Path, framework_version: str = DEFAULT_FRAMEWORK_VERSION,
                    image: FrameworkImage | None = None) -> Path:
    """Write sourcedir.tar.gz, for the training image of `framework_version` (or the packages of
    `image`, e.g. `this_environment()`), to `destination` (a file path)."""
    requirements = requirements_for(image or framework_image(framework_version))
    text = "\n".join(requirements) + "\n"
    return write_tar_gz(destination, lambda archive: add_code(archive, "", ENTRY_POINT, _ENTRY_SCRIPT, text))


def add_code(archive: tarfile.TarFile, prefix: str, entry_name: str, entry_script: str, requirements: str) -> None:
    """What an AWS image runs, under `prefix`: the entry script, requirements.txt (its text), the mmsent package as source."""
    add_bytes(archive, prefix + entry_name, entry_script.encode())
    add_bytes(archive, prefix + "requirements.txt", requirements.encode())
    package_root = Path(mmsent.__file__).resolve().parent
    for path in sorted(package_root.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
            add_bytes(archive, f"{prefix}mmsent/{path.relative_to(package_root).as_posix()}", path.read_bytes())


def write_tar_gz(destination: Path, fill) -> Path:
    """A .tar.gz of what `fill(archive)` adds, byte-for-byte reproducible: members with fixed times
    (add_bytes), and no name and mtime=0 in the gzip header too."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        fill(archive)
    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    # Level 1, not gzip's default 9: model weights barely compress at any level (a 134 MB R3D-18 state dict
    # to 0.929 of its size at 1, 0.926 at 9) while level 9 took 1.7x as long here.
    with destination.open("wb") as raw, gzip.GzipFile(filename="", fileobj=raw, mode="wb", mtime=0, compresslevel=1) as zipped:
        zipped.write(buffer.getvalue())
    return destination


def add_bytes(archive: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    info.mtime = 0
    archive.addfile(info, io.BytesIO(data))
