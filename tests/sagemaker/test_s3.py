"""S3 transfers against moto's server over HTTP: what changed is uploaded, what did not is not, and a
download never writes outside its folder."""

from __future__ import annotations

import pytest

from mmsent.sagemaker.s3 import (CHECKSUM_KEY, BucketError, S3UriError, check_bucket, download_prefix, parse_s3_uri,
                                 upload_file, upload_files)  # fmt: skip

from tests.sagemaker.conftest import BUCKET


@pytest.mark.parametrize("uri, parsed", [
    ("s3://my-bucket/runs/train/", ("my-bucket", "runs/train/")),
    ("s3://my.bucket.2", ("my.bucket.2", "")),
    ("s3://my-bucket/", ("my-bucket", "")),
])  # fmt: skip
def test_parse_s3_uri(uri, parsed):
    assert parse_s3_uri(uri) == parsed


@pytest.mark.parametrize("uri", ["my-bucket/x", "s3://", "s3://My_Bucket/x", "s3://ab/x", "s3://a..b/x",
                                 "s3://-bucket/x", "https://my-bucket.s3.amazonaws.com/x", "s3://192.168.1.1/x",
                                 "s3://sthree-data/x", "s3://data-s3alias/x", "s3://xn--data/x"])  # fmt: skip
def test_parse_s3_uri_refuses_what_s3_would(uri):
    with pytest.raises(S3UriError, match="not an s3://bucket/prefix URI"):
        parse_s3_uri(uri)


def test_an_unchanged_file_is_not_uploaded_again_a_changed_one_is(aws, tmp_path):
    s3 = aws[1]["s3"]
    clip = tmp_path / "dia1_utt0.mp4"
    clip.write_bytes(b"a" * 1000)
    assert upload_file(s3, clip, BUCKET, "s3test/dia1_utt0.mp4") is True
    assert upload_file(s3, clip, BUCKET, "s3test/dia1_utt0.mp4") is False
    clip.write_bytes(b"b" * 1000)  # same size, other bytes: the checksum tells
    assert upload_file(s3, clip, BUCKET, "s3test/dia1_utt0.mp4") is True
    head = s3.head_object(Bucket=BUCKET, Key="s3test/dia1_utt0.mp4")
    assert len(head["Metadata"][CHECKSUM_KEY]) == 64
    assert s3.get_object(Bucket=BUCKET, Key="s3test/dia1_utt0.mp4")["Body"].read() == b"b" * 1000


def test_upload_files_in_parallel_reports_each_key(aws, tmp_path):
    s3 = aws[1]["s3"]
    files = []
    for i in range(20):
        (tmp_path / f"c{i}.mp4").write_bytes(bytes([i]) * (i + 1))
        files.append((tmp_path / f"c{i}.mp4", f"many/c{i}.mp4"))
    assert upload_files(s3, files, BUCKET, workers=4, progress=False) == {key: True for _, key in files}
    (tmp_path / "c3.mp4").write_bytes(b"changed")
    again = upload_files(s3, files, BUCKET, workers=4, progress=False)
    assert [key for key, uploaded in again.items() if uploaded] == ["many/c3.mp4"]


def test_check_bucket(aws):
    s3 = aws[1]["s3"]
    check_bucket(s3, BUCKET, "us-east-1")
    with pytest.raises(BucketError, match="bucket absent-bucket does not exist"):
        check_bucket(s3, "absent-bucket", "us-east-1")
    with pytest.raises(BucketError, match=f"bucket {BUCKET} is in us-east-1, the job would run in eu-west-1"):
        check_bucket(s3, BUCKET, "eu-west-1")


def test_download_prefix_keeps_the_paths_below_it(aws, tmp_path):
    s3 = aws[1]["s3"]
    for key in ("logs/run/events.1", "logs/run/sub/events.2", "logs/other", "logs/run/folder/"):
        s3.put_object(Bucket=BUCKET, Key=key, Body=key.encode())
    assert download_prefix(s3, BUCKET, "logs/run/", tmp_path / "out") == 2
    assert (tmp_path / "out" / "sub" / "events.2").read_text() == "logs/run/sub/events.2"
    assert sorted(p.relative_to(tmp_path / "out").as_posix() for p in (tmp_path / "out").rglob("*") if p.is_file()) == [
        "events.1", "sub/events.2"]  # fmt: skip


def test_download_prefix_refuses_a_key_that_climbs_out(aws, tmp_path):
    s3 = aws[1]["s3"]
    s3.put_object(Bucket=BUCKET, Key="climb/../../escaped.txt", Body=b"x")
    with pytest.raises(S3UriError, match="refusing to write 'climb/../../escaped.txt' outside"):
        download_prefix(s3, BUCKET, "climb/", tmp_path / "out" / "deep")
    assert not (tmp_path / "escaped.txt").exists() and not (tmp_path / "out" / "escaped.txt").exists()
