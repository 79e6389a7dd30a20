"""`mmsent jobs`: list, describe, stop, and pull a job's model and TensorBoard logs back."""

from __future__ import annotations

import shutil
import tarfile
import tempfile
import zlib
from pathlib import Path

from mmsent.sagemaker.s3 import download_prefix, parse_s3_uri
from mmsent.errors import MmsentError


class PullError(MmsentError, ValueError):
    """A pulled archive that cannot be used; the message says why, and that nothing was replaced."""


def list_jobs(sagemaker, name_contains: str | None, limit: int) -> list[dict]:
    kwargs = {"MaxResults": min(limit, 100), "SortBy": "CreationTime", "SortOrder": "Descending"}
    if name_contains:
        kwargs["NameContains"] = name_contains
    return sagemaker.list_training_jobs(**kwargs)["TrainingJobSummaries"][:limit]


def format_jobs(jobs: list[dict]) -> str:
    if not jobs:
        return "no training jobs"
    width = max(len(j["TrainingJobName"]) for j in jobs)
    lines = [f"{'job':<{width}}  {'status':<10}  created"]
    for job in jobs:
        lines.append(f"{job['TrainingJobName']:<{width}}  {job['TrainingJobStatus']:<10}  {job['CreationTime']:%Y-%m-%d %H:%M}")
    return "\n".join(lines)


def pull(session, job_name: str, out: Path) -> dict[str, Path]:
    """Download model.tar.gz, unpack it into OUT/model (a model dir), and the TensorBoard logs into OUT/tensorboard."""
    job = session.client("sagemaker").describe_training_job(TrainingJobName=job_name)
    s3 = session.client("s3")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    found: dict[str, Path] = {}
    artifacts = job.get("ModelArtifacts", {}).get("S3ModelArtifacts")
    if artifacts:
        bucket, key = parse_s3_uri(artifacts)
        archive = out / "model.tar.gz"
        s3.download_file(bucket, key, str(archive))
        found["model"] = unpack_model(archive, out / "model")
    tensorboard = job.get("TensorBoardOutputConfig", {}).get("S3OutputPath")
    if tensorboard:
        bucket, prefix = parse_s3_uri(tensorboard)
        if download_prefix(s3, bucket, prefix, out / "tensorboard"):
            found["tensorboard"] = out / "tensorboard"
    return found


def unpack_model(archive: Path, model_dir: Path) -> Path:
    """Unpack model.tar.gz into a folder beside `model_dir`, check that it loads as a model dir, and
    only then put it in place: a bad archive (a member outside, a link out, cut short, not a model)
    is a PullError and an earlier pull stays as it was."""
    from mmsent.model_dir import ModelDirError, load_model_dir

    staging = Path(tempfile.mkdtemp(prefix=".model-", dir=model_dir.parent))
    try:
        with tarfile.open(archive) as tar:
            tar.extractall(staging, filter="data")  # refuses absolute paths, .. and links out
        load_model_dir(staging)
    except (tarfile.TarError, EOFError, zlib.error, OSError, ModelDirError) as problem:
        shutil.rmtree(staging, ignore_errors=True)
        raise PullError(f"{archive}: not a usable model archive ({problem}); {model_dir} is left as it was") from None
    previous = model_dir.with_name(f".{model_dir.name}-previous") if model_dir.exists() else None
    if previous is not None:
        shutil.rmtree(previous, ignore_errors=True)
        model_dir.rename(previous)
    staging.rename(model_dir)
    if previous is not None:
        shutil.rmtree(previous)
    return model_dir
