"""The AWS Deep Learning Containers PyTorch training image for a region and an instance type."""

from __future__ import annotations

import re

DEFAULT_FRAMEWORK_VERSION = "2.5.1"  # a PyTorch training image with Python 3.11, as mmsent needs
DEFAULT_PY_VERSION = "py311"
_DEFAULT_ACCOUNT = "763104351884"
# The DLC registries outside the default account, as AWS publishes them.
DLC_ACCOUNTS: dict[str, str] = {
    "af-south-1": "626614931356",
    "ap-east-1": "871362719292",
    "ap-east-2": "975050140332",
    "ap-northeast-3": "364406365360",
    "ap-south-2": "772153158452",
    "ap-southeast-3": "907027046896",
    "ap-southeast-4": "457447274322",
    "ap-southeast-5": "550225433462",
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
    "mx-central-1": "637423239942",
    "us-gov-east-1": "446045086412",
    "us-gov-west-1": "442386744353",
}
# Instance families with NVIDIA GPUs, and GPUs per size where a family has more than one.
GPU_FAMILIES: frozenset[str] = frozenset({"p3", "p3dn", "p4d", "p4de", "p5", "p5e", "p5en", "p6-b200", "g4dn", "g5", "g6", "g6e", "gr6"})
_MULTI_GPU: dict[str, int] = {
    "ml.p3.8xlarge": 4, "ml.p3.16xlarge": 8, "ml.p3dn.24xlarge": 8, "ml.p4d.24xlarge": 8, "ml.p4de.24xlarge": 8,
    "ml.p5.48xlarge": 8, "ml.p5e.48xlarge": 8, "ml.p5en.48xlarge": 8, "ml.g4dn.12xlarge": 4, "ml.g5.12xlarge": 4,
    "ml.g5.24xlarge": 4, "ml.g5.48xlarge": 8, "ml.g6.12xlarge": 4, "ml.g6.24xlarge": 4, "ml.g6.48xlarge": 8,
    "ml.g6e.12xlarge": 4, "ml.g6e.24xlarge": 4, "ml.g6e.48xlarge": 8,
}  # fmt: skip
INSTANCE_TYPE = re.compile(r"^ml\.[a-z0-9-]+\.[a-z0-9]+$")


def instance_family(instance_type: str) -> str:
    return instance_type.split(".")[1] if instance_type.count(".") == 2 else ""


def gpus_per_instance(instance_type: str) -> int:
    if instance_family(instance_type) not in GPU_FAMILIES:
        return 0
    return _MULTI_GPU.get(instance_type, 1)


def training_image_uri(region: str, instance_type: str, framework_version: str = DEFAULT_FRAMEWORK_VERSION,
                       py_version: str = DEFAULT_PY_VERSION) -> str:
    """e.g. 763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-training:2.5.1-gpu-py311"""
    account = DLC_ACCOUNTS.get(region, _DEFAULT_ACCOUNT)
    domain = "amazonaws.com.cn" if region.startswith("cn-") else "amazonaws.com"
    processor = "gpu" if gpus_per_instance(instance_type) else "cpu"
    return f"{account}.dkr.ecr.{region}.{domain}/pytorch-training:{framework_version}-{processor}-{py_version}"
