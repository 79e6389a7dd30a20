"""`mmsent launch --local`: the job's container contract, run through PyPI's real sagemaker-training toolkit."""

from __future__ import annotations

import json
import tarfile
from importlib import metadata

import pytest

from mmsent.training.checkpoint import CheckpointFolder
from tests.cli import mmsent, mmsent_process


@pytest.mark.slow
def test_local_job_trains_through_the_toolkit_and_writes_what_the_service_would(sample_dir, tmp_path, tiny):
    base = tmp_path / "job"
    torch_before = metadata.version("torch")
    # A process of its own: the toolkit and the job it starts write to the process's own stdout and stderr.
    result = mmsent_process("launch", "--local", "--data-dir", str(sample_dir), "--local-dir", str(base), "--job-name", "local-1",
                            "--", "--epochs", "1", "--max-train-samples", "16", *tiny,
                            "--cache-dir", str(tmp_path / "instance-disk" / "cache"))  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "local job local-1: Completed" in result.stdout
    # The toolkit pip-installs the job's requirements.txt into this Python: it must pin what is
    # installed here, not the training image's torch (which it once installed over this venv's).
    assert metadata.version("torch") == torch_before
    with tarfile.open(base / "sourcedir.tar.gz") as archive:
        requirements = archive.extractfile("requirements.txt").read().decode().splitlines()
    assert requirements[0] == f"torch=={torch_before.split('+')[0]}"
    # The job built its media cache at start-up (on the instance's disk) and trained from it.
    assert json.loads((tmp_path / "instance-disk" / "cache" / "manifest.json").read_text())["splits"]["train"]["complete"]
    # The toolkit rendered the hyperparameters as arguments and ran our packaged entry point.
    assert "Invoking script with the following command" in result.stdout + result.stderr
    assert "-- mmsent_train.py --audio-seconds 2 --batch-size 8 --cache-dir " in (result.stdout + result.stderr).replace("\n", " ")
    hyperparameters = json.loads((base / "input" / "config" / "hyperparameters.json").read_text())
    assert json.loads(hyperparameters["sagemaker_program"]) == "mmsent_train.py"
    assert sorted(p.name for p in (base / "input" / "data").iterdir()) == ["test", "train", "validation"]
    assert (base / "output" / "success").is_file() and not (base / "output" / "failure").exists()
    assert {"model.pth", "config.json", "labels.json", "metrics.json"} <= {p.name for p in (base / "model").iterdir()}
    assert any((base / "output" / "tensorboard").glob("events.out.tfevents.*"))  # SM_OUTPUT_DIR/tensorboard
    assert (base / "output" / "data" / "history.json").is_file()  # SM_OUTPUT_DATA_DIR
    assert [p.name for p in (base / "checkpoints").glob("*.pt")] == ["checkpoint-0002-0000000.pt"]  # CheckpointConfig's LocalPath
    # Inside a job, wall-clock checkpoints are on by default: the stop signal may never reach the script.
    _, payload = CheckpointFolder(base / "checkpoints", keep=2).newest_valid()
    assert payload["configs"]["train"]["checkpoint_every_minutes"] == 10.0


@pytest.mark.slow
def test_a_failing_job_reports_failure_with_its_reason(sample_dir, tmp_path):
    base = tmp_path / "job"
    # A relative --local-dir, as the README's default (runs/JOB) is: the toolkit gets it made absolute.
    result = mmsent_process("launch", "--local", "--data-dir", str(sample_dir), "--local-dir", "job",
                            "--", "--epochs", "1", "--cache-dir", "/dev/null/cache", cwd=tmp_path)  # fmt: skip
    assert result.returncode == 1
    assert (base / "output" / "failure").is_file()
    assert "cannot write the media cache" in result.stdout + result.stderr
    sources = (base / "sourcedir.tar.gz").stat().st_mtime_ns
    again = mmsent("launch", "--local", "--data-dir", str(sample_dir), "--local-dir", str(base))
    assert again.returncode == 2 and "already holds a job's tree" in again.stderr
    assert (base / "sourcedir.tar.gz").stat().st_mtime_ns == sources  # the earlier job's files are left as they were
