"""`mmsent jobs`: list, describe, stop, and pull a job's model and TensorBoard logs back."""

from __future__ import annotations

import tarfile
from pathlib import Path

from mmsent.sagemaker.s3 import download_prefix, parse_s3_uri


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
        model_dir = out / "model"
        model_dir.mkdir(exist_ok=True)
        with tarfile.open(archive) as tar:
            tar.extractall(model_dir, filter="data")  # refuses absolute paths, .. and links out
        found["model"] = model_dir
    tensorboard = job.get("TensorBoardOutputConfig", {}).get("S3OutputPath")
    if tensorboard:
        bucket, prefix = parse_s3_uri(tensorboard)
        if download_prefix(s3, bucket, prefix, out / "tensorboard"):
            found["tensorboard"] = out / "tensorboard"
    return found
