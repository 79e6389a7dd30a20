"""The training image: its URI, GPU detection, and whether its packages can run the job's requirements."""

from __future__ import annotations

import json
from importlib import metadata

import pytest

from mmsent.sagemaker.images import (
    _DEFAULT_ACCOUNT, DEFAULT_FRAMEWORK_VERSION, DLC_ACCOUNTS, FRAMEWORK_IMAGES, gpus_per_instance, training_image_uri,
)  # fmt: skip
from mmsent.sagemaker.package import image_conflicts, image_requirements


def test_image_for_region_and_instance():
    assert training_image_uri("us-west-2", "ml.g5.xlarge") == "763104351884.dkr.ecr.us-west-2.amazonaws.com/pytorch-training:2.10.0-gpu-py313"
    assert training_image_uri("af-south-1", "ml.m5.xlarge").startswith("626614931356.dkr.ecr.af-south-1.amazonaws.com/pytorch-training:2.10.0-cpu")
    assert training_image_uri("ap-southeast-6", "ml.g5.xlarge").startswith("633930458069.dkr.ecr.ap-southeast-6.amazonaws.com/")
    assert ".amazonaws.com.cn/" in training_image_uri("cn-north-1", "ml.p3.2xlarge")
    assert training_image_uri("us-east-1", "ml.g5.xlarge", "2.5.1").endswith(":2.5.1-gpu-py311")


@pytest.mark.parametrize(("bad", "message"), [
    ({"framework_version": "2.3.0"}, "--framework-version '2.3.0': mmsent knows the packages of"),
    ({"region": "us-iso-east-1"}, "region us-iso-east-1: its registry domain is not known to mmsent; pass --image-uri"),
])  # fmt: skip
def test_an_unknown_framework_version_or_partition_is_refused(bad, message):
    arguments = {"region": "us-east-1", "instance_type": "ml.g5.xlarge"} | bad
    with pytest.raises(ValueError, match=message):
        training_image_uri(**arguments)


def test_gpu_instances_by_family_letter_as_the_sdk_decides():
    assert (gpus_per_instance("ml.g5.12xlarge"), gpus_per_instance("ml.g5.xlarge"), gpus_per_instance("ml.c5.xlarge")) == (4, 1, 0)
    assert gpus_per_instance("ml.p6-b200.48xlarge") == 8 and gpus_per_instance("ml.p6e-gb200.36xlarge") == 4
    # A family newer than any table here is still a GPU family: the GPU image, one GPU at least.
    assert gpus_per_instance("ml.g7e.xlarge") == 1 and training_image_uri("us-east-1", "ml.g7e.xlarge").endswith("-gpu-py313")
    assert (gpus_per_instance("ml.trn1.32xlarge"), gpus_per_instance("ml.inf2.xlarge"), gpus_per_instance("ml.m7i.large")) == (0, 0, 0)


def _sdk_training_images() -> dict:
    """The SageMaker SDK's own table (sagemaker-core's pytorch.json), read as data: importing the SDK is not needed."""
    files = metadata.files("sagemaker-core") or []
    (path,) = [f for f in files if str(f).endswith("image_uri_config/pytorch.json")]
    return json.loads(path.locate().read_text())["training"]


def test_the_default_image_and_its_registries_match_the_sdk_table():
    sdk = _sdk_training_images()
    # The newest training image the SDK knows is our default: a newer SDK in the dev extra with a
    # newer image fails here, so the default is reconsidered (image_conflicts says if it can run the job).
    newest = max(sdk["versions"], key=lambda v: tuple(int(p) for p in v.split(".")))
    assert DEFAULT_FRAMEWORK_VERSION == newest
    entry = sdk["versions"][DEFAULT_FRAMEWORK_VERSION]
    assert entry["repository"] == "pytorch-training"
    assert [FRAMEWORK_IMAGES[DEFAULT_FRAMEWORK_VERSION].py_version] == entry["py_versions"]
    known = {region: account for region, account in entry["registries"].items() if "-iso" not in region and not region.startswith("eusc-")}
    assert {region: DLC_ACCOUNTS.get(region, _DEFAULT_ACCOUNT) for region in known} == known
    assert set(DLC_ACCOUNTS) <= set(known)


def test_the_default_image_satisfies_every_torch_bound_of_the_job_requirements():
    # Each package requirements.txt names, read from its installed metadata (extras included):
    # transformers 5 declares torch>=2.6, so an image with torch 2.5.1 cannot load the text encoder.
    assert image_conflicts(DEFAULT_FRAMEWORK_VERSION) == []
    old = image_conflicts("2.5.1")
    assert any(c.startswith("transformers ") and "needs torch>=2.6" in c and "has torch 2.5.1" in c for c in old), old


def test_requirements_pin_the_images_framework_and_keep_its_numpy_major():
    lines = image_requirements(DEFAULT_FRAMEWORK_VERSION)
    assert lines[:4] == ["torch==2.10.0", "torchvision==0.25.0", "torchaudio==2.10.0", "numpy>=2,<3"]
    assert image_requirements("2.5.1")[:4] == ["torch==2.5.1", "torchvision==0.20.1", "torchaudio==2.5.1", "numpy>=1,<2"]
    names = [line.split("=")[0].split("<")[0].split(">")[0] for line in lines]
    assert "sentence-transformers" in names and "transformers" in names
    assert "pandas" not in names and "boto3" not in names  # training imports neither; the image has boto3
    assert all("==" in line for line in lines if not line.startswith("numpy"))  # nothing floats
