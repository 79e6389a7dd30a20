"""The AWS Deep Learning Containers PyTorch training image for a region and an instance type, and
the framework packages each image holds (what the job's requirements.txt must leave as they are).

Sources, read 2026-11-28:
- the SageMaker Python SDK's image table, `sagemaker/core/image_uri_config/pytorch.json` in PyPI's
  sagemaker-core 2.27.0 (2026-10-21): training versions up to 2.10.0 (py313), with their registries;
- aws/deep-learning-containers, `pytorch/training/docker/<version>/py3/<cuda>/Dockerfile.gpu`: the
  Python, torch, torchvision and torchaudio versions each image installs. Their numpy: 1.26.4 in
  the py311/py312 images; unpinned (2.x) since the SDK allowed numpy 2 (sagemaker-python-sdk
  pull request 5465, 2026-01), which the py313 images need (numpy 1.x has no Python 3.13 build).
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from mmsent.errors import SettingsError


@dataclass(frozen=True)
class FrameworkImage:
    """What one PyTorch training image provides, as its Dockerfile installs it."""

    python: str  # e.g. "3.13"
    torch: str
    torchvision: str
    torchaudio: str
    numpy: str  # the version the image-check venv installs; requirements keep its major version

    @property
    def py_version(self) -> str:
        """The image tag's Python part: py313."""
        return "py" + self.python.replace(".", "")

    @property
    def framework_packages(self) -> dict[str, str]:
        return {"torch": self.torch, "torchvision": self.torchvision, "torchaudio": self.torchaudio}


# The newest training image: transformers 5 needs torch >= 2.6, so 2.5.1 and older cannot run the job.
DEFAULT_FRAMEWORK_VERSION = "2.10.0"
FRAMEWORK_IMAGES: dict[str, FrameworkImage] = {
    "2.10.0": FrameworkImage(python="3.13", torch="2.10.0", torchvision="0.25.0", torchaudio="2.10.0", numpy="2.4.6"),
    "2.8.0": FrameworkImage(python="3.12", torch="2.8.0", torchvision="0.23.0", torchaudio="2.8.0", numpy="1.26.4"),
    # The former default: kept so `make image-check FRAMEWORK=2.5.1` shows why it had to go.
    "2.5.1": FrameworkImage(python="3.11", torch="2.5.1", torchvision="0.20.1", torchaudio="2.5.1", numpy="1.26.4"),
}
# The AWS PyTorch *inference* image that `mmsent deploy` serves from (TorchServe with the
# sagemaker-pytorch-inference toolkit, which calls mmsent's handler): the newest inference version in
# sagemaker-core 2.27.0's pytorch.json is 2.6.0 (py312), on the same registry accounts as training.
# Its packages from aws/deep-learning-containers `pytorch/inference/docker/2.6/py3/Dockerfile.cpu`
# (and cu124/Dockerfile.gpu): Python 3.12.12, torch 2.6.0, torchvision 0.21.0, torchaudio 2.6.0;
# numpy is installed unpinned there (2.x in a build of that Python): requirements keep major 2.
DEFAULT_INFERENCE_VERSION = "2.6.0"
INFERENCE_IMAGES: dict[str, FrameworkImage] = {
    "2.6.0": FrameworkImage(python="3.12", torch="2.6.0", torchvision="0.21.0", torchaudio="2.6.0", numpy="2"),
}
_DEFAULT_ACCOUNT = "763104351884"
# The DLC registries outside the default account (pytorch.json, training 2.10.0), in the partitions
# whose registry domain is known here (aws, aws-cn, aws-us-gov); elsewhere pass --image-uri.
DLC_ACCOUNTS: dict[str, str] = {
    "af-south-1": "626614931356",
    "ap-east-1": "871362719292",
    "ap-east-2": "975050140332",
    "ap-northeast-3": "364406365360",
    "ap-south-2": "772153158452",
    "ap-southeast-3": "907027046896",
    "ap-southeast-4": "457447274322",
    "ap-southeast-5": "550225433462",
    "ap-southeast-6": "633930458069",
    "ap-southeast-7": "590183813437",
    "ca-west-1": "204538143572",
    "cn-north-1": "727897471807",
    "cn-northwest-1": "727897471807",
    "eu-central-2": "380420809688",
    "eu-south-1": "692866216735",
    "eu-south-2": "503227376785",
    "il-central-1": "780543022126",
    "me-central-1": "914824155844",
    "me-south-1": "217643126080",
    "me-west-1": "124382933778",
    "mx-central-1": "637423239942",
    "us-gov-east-1": "446045086412",
    "us-gov-west-1": "442386744353",
}
# GPUs per instance where a type has more than one (the SDK's instance_gpu_info.json; p6 from
# AWS's instance type pages: p6-b200.48xlarge 8 B200, p6e-gb200.36xlarge 4 GB200). Every other
# GPU type has one.
_MULTI_GPU: dict[str, int] = {
    "ml.p2.8xlarge": 8, "ml.p2.16xlarge": 16, "ml.p3.8xlarge": 4, "ml.p3.16xlarge": 8, "ml.p3dn.24xlarge": 8,
    "ml.p4d.24xlarge": 8, "ml.p4de.24xlarge": 8, "ml.p5.48xlarge": 8, "ml.p5e.48xlarge": 8, "ml.p5en.48xlarge": 8,
    "ml.p6-b200.48xlarge": 8, "ml.p6e-gb200.36xlarge": 4,
    "ml.g4dn.12xlarge": 4, "ml.g5.12xlarge": 4, "ml.g5.24xlarge": 4, "ml.g5.48xlarge": 8, "ml.g6.12xlarge": 4,
    "ml.g6.24xlarge": 4, "ml.g6.48xlarge": 8, "ml.g6e.12xlarge": 4, "ml.g6e.24xlarge": 4, "ml.g6e.48xlarge": 8,
}  # fmt: skip
INSTANCE_TYPE = re.compile(r"^ml\.[a-z0-9-]+\.[a-z0-9]+$")


# The enumerations in SageMaker's API model that name the instance types a training job, an endpoint and a batch
# transform job may use, and how a message names those.
TRAINING_INSTANCES = "TrainingInstanceType"
ENDPOINT_INSTANCES = "ProductionVariantInstanceType"
TRANSFORM_INSTANCES = "TransformInstanceType"
_USES = {TRAINING_INSTANCES: "training jobs", ENDPOINT_INSTANCES: "endpoints", TRANSFORM_INSTANCES: "batch transform jobs"}


@functools.cache
def _sagemaker_model():
    import botocore.session

    return botocore.session.get_session().get_service_model("sagemaker")


def unknown_instance_type(instance_type: str, use: str) -> str | None:
    """Why SageMaker would refuse `instance_type` for `use` (one of the enumerations above), or
    None. The list is the enumeration in SageMaker's API model as botocore ships it (which botocore itself
    does not enforce): `ml.fake.huge` would otherwise reach the service after every upload."""
    import botocore

    if not INSTANCE_TYPE.match(instance_type):
        return f"instance type {instance_type!r} is not of the form ml.FAMILY.SIZE"
    if instance_type not in _sagemaker_model().shape_for(use).enum:
        return (f"instance type {instance_type!r}: not one SageMaker offers for {_USES[use]} (as its API model in botocore "
                f"{botocore.__version__} lists them; a newer botocore knows newer ones)")
    return None


def unknown_region(region: str) -> str | None:
    """Why `region` is not a SageMaker region (none of botocore's partitions lists it), or None."""
    import boto3

    session = boto3.Session()
    known = {r for p in session.get_available_partitions() for r in session.get_available_regions("sagemaker", partition_name=p)}
    if region not in known:
        return f"region {region!r}: not a region where SageMaker runs (botocore knows {len(known)}, e.g. us-east-1, eu-west-1)"
    return None


def instance_family(instance_type: str) -> str:
    return instance_type.split(".")[1] if instance_type.count(".") == 2 else ""


def gpus_per_instance(instance_type: str) -> int:
    """0 for CPU instances. A family starting with g or p has NVIDIA GPUs, as the SageMaker SDK
    decides it (image_uris._processor), so families newer than this table still get the GPU image."""
    family = instance_family(instance_type)
    if not family or family[0] not in "gp":
        return 0
    return _MULTI_GPU.get(instance_type, 1)


def framework_image(framework_version: str) -> FrameworkImage:
    if framework_version not in FRAMEWORK_IMAGES:
        raise SettingsError(f"--framework-version {framework_version!r}: mmsent knows the packages of "
                         f"{', '.join(FRAMEWORK_IMAGES)} only (its requirements.txt pins them)")  # fmt: skip
    return FRAMEWORK_IMAGES[framework_version]


def inference_image(framework_version: str) -> FrameworkImage:
    if framework_version not in INFERENCE_IMAGES:
        raise SettingsError(f"--framework-version {framework_version!r}: mmsent knows the inference image of "
                         f"{', '.join(INFERENCE_IMAGES)} only (its requirements.txt pins its packages)")  # fmt: skip
    return INFERENCE_IMAGES[framework_version]


def training_image_uri(region: str, instance_type: str, framework_version: str = DEFAULT_FRAMEWORK_VERSION) -> str:
    """e.g. 763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-training:2.10.0-gpu-py313"""
    return _image_uri("pytorch-training", framework_image(framework_version), region, instance_type, framework_version)


def inference_image_uri(region: str, instance_type: str | None, framework_version: str = DEFAULT_INFERENCE_VERSION) -> str:
    """e.g. 763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-inference:2.6.0-cpu-py312 (no
    instance type: serverless, which is CPU only)"""
    image = inference_image(framework_version)
    return _image_uri("pytorch-inference", image, region, instance_type or "", framework_version)


def _image_uri(repository: str, image: FrameworkImage, region: str, instance_type: str, framework_version: str) -> str:
    if "-iso" in region or region.startswith("eusc-"):
        raise SettingsError(f"region {region}: its registry domain is not known to mmsent; pass --image-uri")
    account = DLC_ACCOUNTS.get(region, _DEFAULT_ACCOUNT)
    domain = "amazonaws.com.cn" if region.startswith("cn-") else "amazonaws.com"
    processor = "gpu" if gpus_per_instance(instance_type) else "cpu"
    return f"{account}.dkr.ecr.{region}.{domain}/{repository}:{framework_version}-{processor}-{image.py_version}"
