"""What an endpoint installs before it serves: only what the handler imports, from wheels packed in the archive."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from mmsent.errors import SettingsError
from mmsent.sagemaker.images import DEFAULT_INFERENCE_VERSION, inference_image
from mmsent.sagemaker.wheels import INFERENCE_PACKAGES, PLATFORMS, fetch_wheels, inference_requirements, requirements_file
from tests.inference.test_predict import _good_clips

IMAGE = inference_image(DEFAULT_INFERENCE_VERSION)
TRAINING_ONLY = {"scikit-learn", "matplotlib", "tensorboard", "pandas", "boto3", "sentence-transformers", "waitress"}
# What the inference image installs beside its framework (aws/deep-learning-containers, pytorch/inference/docker/
# 2.6/py3/Dockerfile.cpu, and TorchServe's requirements): transformers and numpy use some of these when they are
# there (scipy, psutil, requests), none of them is needed.
IMAGE_EXTRAS = {"scipy", "psutil", "requests", "charset-normalizer", "idna", "urllib3", "packaging", "tqdm", "pyyaml"}


def _with_dependencies(names) -> set[str]:
    """The distributions `names` need to run, as their installed metadata says (extras left out)."""
    found, todo = set(), [canonicalize_name(n) for n in names]
    while todo:
        name = todo.pop()
        if name in found:
            continue
        found.add(name)
        for line in metadata.requires(name) or []:
            requirement = Requirement(line)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                todo.append(canonicalize_name(requirement.name))
    return found


def test_the_handler_loads_nothing_beyond_the_image_and_the_packed_requirements(tiny_model_dir, sample_dir):
    # A fresh interpreter, as a TorchServe worker: the handler imported, the model loaded, a clip answered.
    script = textwrap.dedent(f"""
        import json, sys
        from importlib import metadata
        from mmsent.inference import handler
        model = handler.model_fn({str(tiny_model_dir)!r})
        handler.predict_fn(handler.input_fn(open({str(_good_clips(sample_dir)[0])!r}, "rb").read(), "video/mp4"), model)
        owners = metadata.packages_distributions()
        print(json.dumps(sorted({{d for m in list(sys.modules) for d in owners.get(m.split(".")[0], [])}})))
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    loaded = {canonicalize_name(name) for name in json.loads(result.stdout.splitlines()[-1])}
    image = _with_dependencies([*IMAGE.framework_packages, "numpy", *IMAGE_EXTRAS])
    allowed = image | _with_dependencies(INFERENCE_PACKAGES) | {"mmsent"}
    assert loaded - allowed == set()
    assert loaded & TRAINING_ONLY == set()  # TensorBoard, scikit-learn, matplotlib...: training's, not the endpoint's
    assert {"transformers", "av", "ftfy"} <= loaded  # each packed one is needed


def test_requirements_name_only_the_images_framework_and_what_the_handler_imports():
    requirements = inference_requirements(IMAGE)
    assert requirements == ["torch==2.6.0", "torchvision==0.21.0", "torchaudio==2.6.0", "numpy>=2,<3",
                            f"transformers=={metadata.version('transformers')}", f"av=={metadata.version('av')}",
                            f"ftfy=={metadata.version('ftfy')}"]  # fmt: skip
    assert requirements_file(requirements, wheels=True).splitlines()[:3] == ["--no-index", "--find-links wheels", "torch==2.6.0"]
    assert requirements_file(requirements, wheels=False).splitlines()[0] == "torch==2.6.0"


def test_the_packed_wheels_hold_every_requirement_and_dependency_for_the_images_python(endpoint_wheel_cache, tmp_path):
    # What the endpoint's pip does with the index cut off, for the image's Python 3.12 on x86_64: resolve
    # everything beyond the image's torch from the wheels alone (dry run: nothing is installed here).
    (wheels,) = (endpoint_wheel_cache / "endpoint-wheels").iterdir()
    names = {path.name.split("-")[0].lower() for path in wheels.glob("*.whl")}
    assert {"transformers", "av", "ftfy", "tokenizers", "safetensors", "huggingface_hub"} <= names
    assert not names & {"torch", "torchvision", "torchaudio", "scikit_learn", "tensorboard"}
    needed = [line for line in inference_requirements(IMAGE) if Requirement(line).name not in IMAGE.framework_packages]
    (tmp_path / "requirements.txt").write_text("\n".join(needed) + "\n")
    platforms = [option for platform in PLATFORMS for option in ("--platform", platform)]
    resolved = subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--quiet", "--disable-pip-version-check",
                               "--no-index", "--find-links", str(wheels), "--only-binary=:all:", "--python-version", IMAGE.python,
                               "--implementation", "cp", *platforms, "--target", str(tmp_path / "target"),
                               "-r", str(tmp_path / "requirements.txt")], capture_output=True, text=True)  # fmt: skip
    assert resolved.returncode == 0, resolved.stderr[-3000:]


def test_a_download_that_fails_names_the_way_out_and_leaves_nothing_to_reuse(tmp_path, monkeypatch):
    # No package index to reach (a closed port, no other source): deploy stops with one line, and no folder of
    # the cache passes for a finished download.
    for name, value in {"PIP_CONFIG_FILE": "/dev/null", "PIP_INDEX_URL": "http://127.0.0.1:9/simple", "PIP_FIND_LINKS": "",
                        "PIP_RETRIES": "0", "PIP_TIMEOUT": "2", "PIP_NO_CACHE_DIR": "1"}.items():  # fmt: skip
        monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError, match="could not download the endpoint's wheels .* pass --no-wheels"):
        fetch_wheels(inference_requirements(IMAGE), IMAGE, tmp_path)
    assert list((tmp_path / "endpoint-wheels").iterdir()) == []
