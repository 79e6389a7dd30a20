"""`mmsent deploy` and `mmsent endpoints`: a model dir as a SageMaker real-time or serverless endpoint.

model.tar.gz holds the model dir at its top (SageMaker unpacks it to /opt/ml/model) and `code/`:
`inference.py` (the module the PyTorch inference toolkit imports by default; it re-exports
mmsent.inference.handler's model_fn, input_fn, predict_fn, output_fn), the `mmsent` package as
source, a requirements.txt the container installs first (only what the handler imports, pinned to
the inference image's own torch, torchvision and torchaudio) and `wheels/`, from which it installs
them without the package index (sagemaker/wheels.py). Three resources follow, each named
after the endpoint: a Model (image + archive + role), an EndpointConfig (one variant: instances, or
serverless memory), and the Endpoint.
"""

from __future__ import annotations

import re
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path

from mmsent.errors import SettingsError
from mmsent.inference.asr import PACKED_ASR_FOLDER
from mmsent.inference.predict import Predictor
from mmsent.model_dir import CARD, CONFIG, ENCODER_FILES, LABELS, METRICS, WEIGHTS, load_model_dir
from mmsent.sagemaker.images import ENDPOINT_INSTANCES, gpus_per_instance, inference_image, unknown_instance_type
from mmsent.sagemaker.package import add_bytes, add_code, conflicts_with, write_tar_gz
from mmsent.sagemaker.request import is_service_name
from mmsent.sagemaker.wheels import WHEELS_FOLDER, inference_requirements, requirements_file

ENTRY_MODULE = "inference.py"
_ENTRY_SCRIPT = '''"""What SageMaker's PyTorch inference toolkit imports: mmsent's handler functions."""
from mmsent.inference.handler import input_fn, model_fn, output_fn, predict_fn  # noqa: F401
'''
SERVERLESS_MEMORY_MB = (1024, 2048, 3072, 4096, 5120, 6144)  # the sizes SageMaker serverless offers
SERVERLESS_MAX_CONCURRENCY = 5
# Graviton (arm64) families: ml.c7g, ml.m6gd, ml.c6gn... The AWS PyTorch inference image mmsent names, and
# the wheels it packs, are x86_64 (the arm64 image is another repository): such an endpoint would never start.
ARM_INSTANCE = re.compile(r"^ml\.[a-z]+\d+g[a-z]*\.")


@dataclass(frozen=True)
class EndpointSettings:
    endpoint_name: str
    role_arn: str
    image_uri: str
    model_data_url: str  # s3:// of model.tar.gz
    region: str
    instance_type: str | None = "ml.g5.xlarge"  # None with serverless
    instance_count: int = 1
    serverless_memory_mb: int | None = None

    def __post_init__(self) -> None:
        if not is_service_name(self.endpoint_name, 63):
            raise SettingsError(f"--endpoint-name {self.endpoint_name!r}: 1 to 63 letters, digits and hyphens, "
                             "starting with a letter or digit")  # fmt: skip
        if not self.role_arn.startswith("arn:"):
            raise SettingsError(f"--role {self.role_arn!r} is not an IAM role ARN (arn:aws:iam::ACCOUNT:role/NAME)")
        if self.serverless_memory_mb is not None:
            if self.serverless_memory_mb not in SERVERLESS_MEMORY_MB:
                raise SettingsError(f"--serverless {self.serverless_memory_mb}: memory must be one of "
                                 f"{', '.join(map(str, SERVERLESS_MEMORY_MB))} MB")  # fmt: skip
        elif self.instance_type is None:
            raise SettingsError("--instance-type is required without --serverless")
        elif problem := unknown_instance_type(self.instance_type, ENDPOINT_INSTANCES):
            raise SettingsError(f"--{problem}")
        elif problem := arm_instance(self.instance_type):
            raise SettingsError(problem)
        if self.instance_count < 1:
            raise SettingsError(f"--instance-count must be at least 1, got {self.instance_count}")


def arm_instance(instance_type: str) -> str | None:
    """Why the packed archive cannot run on `instance_type` (a Graviton one), or None."""
    if ARM_INSTANCE.match(instance_type):
        return (f"--instance-type {instance_type} is a Graviton (arm64) instance: mmsent packs for the x86_64 PyTorch "
                "inference image; choose an x86 type (ml.c5, ml.m5, ml.g5...)")
    return None


def build_model_archive(model_dir: Path, destination: Path, framework_version: str, asr_model: Path | None = None,
                        wheels: Path | None = None) -> Path:  # fmt: skip
    """model.tar.gz: the model dir's files at the top, code/ beside them, and a speech-recognition
    model's folder as asr/ where one is given (the endpoint then transcribes clips sent without text,
    with no hub access). `wheels` (wheels.fetch_wheels' folder) go in as code/wheels/, and the endpoint
    installs from them alone; without, it installs from the package index. The model dir (and the ASR
    model) are loaded first, so a folder that would fail in the endpoint fails here."""
    model_dir = Path(model_dir)
    if asr_model is None:
        load_model_dir(model_dir)
    elif not Path(asr_model).is_dir():
        raise SettingsError(f"--asr-model {asr_model}: no such folder (deploy packs a saved speech-recognition model's folder)")
    else:
        Predictor(model_dir, device="cpu", workers=1, asr_model=str(asr_model))  # what the endpoint's model_fn loads
    image = inference_image(framework_version)
    requirements = inference_requirements(image)
    if conflicts := conflicts_with(image, f"pytorch-inference {framework_version}", requirements):
        raise SettingsError(f"pytorch-inference {framework_version} cannot run the handler's requirements:\n  " + "\n  ".join(conflicts))

    def fill(archive: tarfile.TarFile) -> None:
        for name in (WEIGHTS, CONFIG, LABELS):
            add_bytes(archive, name, (model_dir / name).read_bytes())
        for name in (CARD, METRICS):  # what produced the model, where training wrote them
            if (model_dir / name).is_file():
                add_bytes(archive, name, (model_dir / name).read_bytes())
        for folder in ENCODER_FILES:  # each encoder's config and tokenizer or processor
            for path in sorted((model_dir / folder).rglob("*")) if (model_dir / folder).is_dir() else []:
                if path.is_file():
                    add_bytes(archive, path.relative_to(model_dir).as_posix(), path.read_bytes())
        for path in sorted(Path(asr_model).rglob("*")) if asr_model is not None else []:
            if path.is_file():
                add_bytes(archive, f"{PACKED_ASR_FOLDER}/{path.relative_to(asr_model).as_posix()}", path.read_bytes())
        add_code(archive, "code/", ENTRY_MODULE, _ENTRY_SCRIPT, requirements_file(requirements, wheels is not None))
        for path in sorted(Path(wheels).glob("*.whl")) if wheels is not None else []:
            add_bytes(archive, f"code/{WHEELS_FOLDER}/{path.name}", path.read_bytes())

    return write_tar_gz(destination, fill)


def endpoint_requests(settings: EndpointSettings, stamp: str | None = None) -> dict[str, dict]:
    """The CreateModel, CreateEndpointConfig and CreateEndpoint requests, in the order they are sent.
    Model and config names carry a time stamp, so a redeploy never collides with what serves now."""
    stamp = stamp or time.strftime("%Y%m%d-%H%M%S")
    base = settings.endpoint_name[: 63 - len(stamp) - 1]
    model_name, config_name = f"{base}-{stamp}", f"{base}-{stamp}"
    variant: dict = {"VariantName": "AllTraffic", "ModelName": model_name}
    if settings.serverless_memory_mb is not None:
        variant["ServerlessConfig"] = {"MemorySizeInMB": settings.serverless_memory_mb, "MaxConcurrency": SERVERLESS_MAX_CONCURRENCY}
    else:
        variant |= {"InitialInstanceCount": settings.instance_count, "InstanceType": settings.instance_type}
    return {
        "create_model": model_request(model_name, settings.role_arn, settings.image_uri, settings.model_data_url,
                                      settings.region, settings.instance_type),
        "create_endpoint_config": {"EndpointConfigName": config_name, "ProductionVariants": [variant]},
        "create_endpoint": {"EndpointName": settings.endpoint_name, "EndpointConfigName": config_name},
    }  # fmt: skip


def model_request(name: str, role_arn: str, image_uri: str, model_data_url: str, region: str, instance_type: str | None,
                  environment: dict[str, str] | None = None) -> dict:
    """The CreateModel request for an archive build_model_archive packed: the inference image runs its code/
    (an endpoint's model and a batch transform job's alike), with `environment` added to the container's."""
    container_environment = {
        "SAGEMAKER_PROGRAM": ENTRY_MODULE,
        "SAGEMAKER_SUBMIT_DIRECTORY": "/opt/ml/model/code",
        "SAGEMAKER_REGION": region,
        "SAGEMAKER_CONTAINER_LOG_LEVEL": "20",
        # Model-server workers, each a whole copy of the model: TorchServe's default is one per vCPU (on a
        # CPU or serverless endpoint, many copies that share the same cores and memory). One per GPU on a
        # GPU instance (model_fn places each on the GPU it is given), else one.
        "SAGEMAKER_MODEL_SERVER_WORKERS": str(model_server_workers(instance_type)),
    } | (environment or {})
    return {"ModelName": name, "ExecutionRoleArn": role_arn,
            "PrimaryContainer": {"Image": image_uri, "ModelDataUrl": model_data_url, "Environment": container_environment}}


def model_server_workers(instance_type: str | None) -> int:
    """Copies of the model an instance serves from: one per GPU, else one (serverless: None)."""
    return max(1, gpus_per_instance(instance_type or ""))


def create_endpoint(sagemaker, requests: dict[str, dict]) -> None:
    """Send the three requests. An endpoint of that name already serving is moved to the new
    config (UpdateEndpoint) instead: a redeploy, without a moment offline."""
    sagemaker.create_model(**requests["create_model"])
    sagemaker.create_endpoint_config(**requests["create_endpoint_config"])
    name = requests["create_endpoint"]["EndpointName"]
    if name in {e["EndpointName"] for e in list_endpoints(sagemaker, name)}:
        sagemaker.update_endpoint(**requests["create_endpoint"])
    else:
        sagemaker.create_endpoint(**requests["create_endpoint"])


def follow_status(describe, key: str, label: str, finished, poll_seconds: float = 30.0, say=print) -> dict:
    """`describe()` every `poll_seconds`, saying "LABEL: STATUS" whenever its `key` changes, until
    `finished(status)`: the last answer (an endpoint's, a transform job's)."""
    status = None
    while True:
        answer = describe()
        if answer[key] != status:
            status = answer[key]
            say(f"{label}: {status}")
        if finished(status):
            return answer
        time.sleep(poll_seconds)


def wait_in_service(sagemaker, name: str, poll_seconds: float = 30.0, say=print) -> dict:
    return follow_status(lambda: sagemaker.describe_endpoint(EndpointName=name), "EndpointStatus", f"endpoint {name}",
                         lambda status: status not in ("Creating", "Updating", "SystemUpdating", "RollingBack"),
                         poll_seconds, say)  # fmt: skip


def list_endpoints(sagemaker, name_contains: str | None = None) -> list[dict]:
    found = []
    for page in sagemaker.get_paginator("list_endpoints").paginate(**({"NameContains": name_contains} if name_contains else {})):
        found += page["Endpoints"]
    return found


def delete_endpoint(sagemaker, name: str) -> list[str]:
    """The endpoint, its config and the config's models: what `deploy` created for it."""
    endpoint = sagemaker.describe_endpoint(EndpointName=name)
    config_name = endpoint["EndpointConfigName"]
    config = sagemaker.describe_endpoint_config(EndpointConfigName=config_name)
    sagemaker.delete_endpoint(EndpointName=name)
    sagemaker.delete_endpoint_config(EndpointConfigName=config_name)
    deleted = [f"endpoint {name}", f"endpoint config {config_name}"]
    for variant in config["ProductionVariants"]:
        sagemaker.delete_model(ModelName=variant["ModelName"])
        deleted.append(f"model {variant['ModelName']}")
    return deleted

