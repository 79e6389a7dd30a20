"""Jobs: the listing's table and unpacking a pulled model archive (the CLI's pull is in test_launch_moto)."""

from __future__ import annotations

import datetime
import tarfile

import pytest

from mmsent.sagemaker.jobs import PullError, format_jobs, unpack_model


def test_format_jobs_aligns_names_and_shows_when_there_are_none():
    created = datetime.datetime(2026, 11, 28, 9, 5)
    table = format_jobs([{"TrainingJobName": "mmsent-a", "TrainingJobStatus": "Completed", "CreationTime": created},
                         {"TrainingJobName": "mmsent-longer-name", "TrainingJobStatus": "InProgress",
                          "CreationTime": created}])  # fmt: skip
    assert table.splitlines() == [
        "job                 status      created",
        "mmsent-a            Completed   2026-11-28 09:05",
        "mmsent-longer-name  InProgress  2026-11-28 09:05",
    ]
    assert format_jobs([]) == "no training jobs"


def _archive(folder, tmp_path):
    archive = tmp_path / "model.tar.gz"
    with tarfile.open(archive, "w:gz", compresslevel=1) as tar:
        for path in sorted(folder.rglob("*")):
            tar.add(path, arcname=str(path.relative_to(folder)), recursive=False)
    return archive


def test_unpack_replaces_an_earlier_pull_only_with_a_model_that_loads(tiny_model_dir, tmp_path):
    archive = _archive(tiny_model_dir, tmp_path)
    target = tmp_path / "pulled" / "model"
    target.parent.mkdir()
    assert unpack_model(archive, target) == target
    assert (target / "model.pth").read_bytes() == (tiny_model_dir / "model.pth").read_bytes()
    (target / "marker").write_text("earlier pull")
    unpack_model(archive, target)  # a second pull replaces the first whole
    assert not (target / "marker").exists()

    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "readme.txt").write_text("not a model")
    (target / "marker").write_text("earlier pull")
    with pytest.raises(PullError, match="not a usable model archive .* is left as it was"):
        unpack_model(_archive(tmp_path / "notes", tmp_path), target)
    assert (target / "marker").read_text() == "earlier pull"
    assert sorted(p.name for p in target.parent.iterdir()) == ["model"]  # no staging or previous folder left
