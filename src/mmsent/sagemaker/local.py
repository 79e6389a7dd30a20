"""The SageMaker container contract, locally and without Docker, through the real training toolkit.

`prepare_tree` lays out an /opt/ml-style tree in a folder —

    input/config/hyperparameters.json   the job's hyperparameters, JSON-encoded strings as the service writes them
    input/config/inputdataconfig.json   one entry per channel
    input/config/resourceconfig.json    one host (localhost)
    input/data/<channel>/               the channel's files (links to the local folders)
    model/  output/  checkpoints/

— `run_toolkit` runs PyPI's `sagemaker-training` (the toolkit inside SageMaker's training images) on it with
SAGEMAKER_BASE_DIR, and `job_outcome` reads what it left. The toolkit unpacks sourcedir.tar.gz, installs its requirements.txt, renders
the hyperparameters as command-line arguments, sets the SM_* variables, runs our entry point, and
writes output/success or output/failure: what runs here is what runs in the training image.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from mmsent.sagemaker.package import ENTRY_POINT

# The service names hosts algo-1, algo-2, ...; the toolkit waits until every host name resolves,
# and outside the service's network only one does without changing /etc/hosts.
CURRENT_HOST = "localhost"


def prepare_tree(base: Path, sourcedir: Path, channels: dict[str, Path], hyperparameters: dict[str, str],
                 input_mode: str = "File") -> Path:
    """Write the /opt/ml-style tree under `base` (which must not hold one already)."""
    base = Path(base).resolve()
    config = base / "input" / "config"
    if config.exists():
        raise FileExistsError(f"{base}: already holds a job's tree; choose another --local-dir")
    config.mkdir(parents=True)
    for folder in ("model", "output", "checkpoints", "input/data"):
        (base / folder).mkdir(parents=True, exist_ok=True)
    for name, source in channels.items():
        (base / "input" / "data" / name).symlink_to(Path(source).resolve(), target_is_directory=True)
    contract = {
        "sagemaker_program": ENTRY_POINT,
        "sagemaker_submit_directory": str(Path(sourcedir).resolve()),
        "sagemaker_container_log_level": 20,
    }
    rendered = {k: json.dumps(v) for k, v in contract.items()} | hyperparameters
    (config / "hyperparameters.json").write_text(json.dumps(rendered, indent=2))
    (config / "inputdataconfig.json").write_text(json.dumps({
        name: {"TrainingInputMode": input_mode, "S3DistributionType": "FullyReplicated", "RecordWrapperType": "None"}
        for name in channels
    }, indent=2))  # fmt: skip
    (config / "resourceconfig.json").write_text(json.dumps({
        "current_host": CURRENT_HOST,
        "hosts": [CURRENT_HOST],
        "current_instance_type": "local",
        "current_group_name": "homogeneousCluster",
        "instance_groups": [{"instance_group_name": "homogeneousCluster", "instance_type": "local", "hosts": [CURRENT_HOST]}],
        "network_interface_name": "lo",
    }, indent=2))  # fmt: skip
    return base


def run_toolkit(base: Path, job_name: str, extra_env: dict[str, str] | None = None, python: str = sys.executable) -> int:
    """Run the training toolkit on a prepared tree under `python` (which has sagemaker-training);
    its exit status. Output streams through."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SM_")}
    env |= {
        "SAGEMAKER_BASE_DIR": str(base),
        "TRAINING_JOB_NAME": job_name,
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        "PYTHONUNBUFFERED": "1",
    } | (extra_env or {})
    command = [python, "-c", "from sagemaker_training.trainer import train; train()"]
    return subprocess.run(command, env=env, cwd=base).returncode


def job_outcome(base: Path) -> tuple[str, str]:
    """("Completed", "") or ("Failed", reason), from output/success or output/failure as the service reads them."""
    output = Path(base) / "output"
    if (output / "failure").is_file():
        return "Failed", (output / "failure").read_text(errors="replace")
    if (output / "success").is_file():
        return "Completed", ""
    return "Failed", "the toolkit wrote neither output/success nor output/failure"
