"""`mmsent transform` and `mmsent transforms results` against moto's S3 and SageMaker server on 127.0.0.1.

moto records a transform job (and calls it Completed at once) but runs nothing. So these tests play the
job's part themselves, as SageMaker's documentation describes it: each input object (or, with SplitType
Line, each line, passed through InputFilter) sent to the real handler (input_fn, predict_fn, output_fn,
with SAGEMAKER_BATCH=true as in a transform container), the answer joined to the input record and passed
through OutputFilter, and written to the output prefix as the input's key plus `.out`. What this cannot
show: the service's own JSONPath engine, its retries, and the image (make torchserve-check serves the same
archive through the real inference stack).
"""

from __future__ import annotations

import csv
import io
import json
import re
import shutil
import tarfile

import pytest

from mmsent.sagemaker.s3 import parse_s3_uri
from tests.cli import mmsent
from tests.sagemaker.conftest import BUCKET, ROLE, printed_requests
from tests.sagemaker.test_launch_moto import _keys


def _transform(env, *args: str):
    return mmsent("transform", "--role", ROLE, "--bucket", BUCKET, *args, env=env)


def _select(record: dict, path: str) -> dict:
    """A JSONPath union of keys, `$['a','b']`: the form mmsent's filters take."""
    match = re.fullmatch(r"\$\[('[A-Za-z]+'(?:,'[A-Za-z]+')*)\]", path)
    assert match, path
    return {key: record[key] for key in re.findall(r"'([A-Za-z]+)'", match.group(1))}


def _play(clients, name: str, model_dir, monkeypatch) -> None:
    """Do what SageMaker would do with the transform job named `name` (see the module's docstring)."""
    from mmsent.inference import handler

    monkeypatch.setenv("SAGEMAKER_BATCH", "true")
    job = clients["sagemaker"].describe_transform_job(TransformJobName=name)
    model = handler.model_fn(str(model_dir))
    content_type, accept = job["TransformInput"]["ContentType"], job["TransformOutput"]["Accept"]

    def invoke(body) -> dict:
        answer, kind = handler.output_fn(handler.predict_fn(handler.input_fn(body, content_type), model), accept)
        assert kind == "application/json"
        return json.loads(answer)

    s3, processing = clients["s3"], job.get("DataProcessing", {})
    bucket, prefix = parse_s3_uri(job["TransformInput"]["DataSource"]["S3DataSource"]["S3Uri"])
    out_bucket, out_prefix = parse_s3_uri(job["TransformOutput"]["S3OutputPath"])
    assert bucket == BUCKET
    for key in [k for k in _keys(s3) if k.startswith(prefix)]:
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        if job["TransformInput"]["SplitType"] == "Line":
            records = [json.loads(line) for line in body.decode().splitlines() if line.strip()]
            joined = [r | {"SageMakerOutput": invoke(json.dumps(_select(r, processing["InputFilter"])))} for r in records]
            output = "".join(json.dumps(_select(j, processing["OutputFilter"])) + "\n" for j in joined)
        else:
            output = json.dumps(invoke(body))
        s3.put_object(Bucket=out_bucket, Key=out_prefix + key[len(prefix) :] + ".out", Body=output.encode())


def _rows(path) -> dict[str, dict]:
    with open(path, newline="") as handle:
        return {row["item"].rsplit("/", 1)[-1]: row for row in csv.DictReader(handle)}


def _assert_same_predictions(got, expected) -> None:
    assert got.keys() == expected.keys()
    for name, row in got.items():
        for column, value in row.items():
            if column.startswith("p_"):
                assert float(value) == pytest.approx(float(expected[name][column]), abs=1e-5), (name, column)
            elif column != "item":
                assert value == expected[name][column], (name, column)


@pytest.fixture
def broken_clips(sample_dir, tmp_path):
    """A folder of the sample's train clips, the ones broken on purpose among them (truncated, empty, no audio)."""
    folder = tmp_path / "clips"
    (folder / "more").mkdir(parents=True)
    clips = sorted((sample_dir / "train" / "train_splits").glob("*.mp4"))[:14]
    for position, clip in enumerate(clips):
        shutil.copy(clip, folder / ("more" if position % 2 else "") / clip.name)
    (folder / ".DS_Store").write_bytes(b"\0")  # hidden: not a clip
    return folder


def test_dry_run_of_a_csv_prints_the_model_and_the_job_and_creates_nothing(aws, tiny_model_dir, sample_dir):
    env, clients = aws
    before, models = _keys(clients["s3"]), clients["sagemaker"].list_models()["Models"]
    result = _transform(env, "--model-dir", str(tiny_model_dir), "--csv", str(sample_dir / "dev" / "dev_sent_emo.csv"),
                        "--clips-dir", str(sample_dir / "dev" / "dev_splits_complete"), "--job-name", "dev-rows",
                        "--instance-type", "ml.m5.xlarge", "--instance-count", "2", "--no-wheels", "--dry-run")  # fmt: skip
    assert result.returncode == 0, result.stderr
    model, job = printed_requests(result.stdout)
    assert model["ModelName"] == job["ModelName"] == job["TransformJobName"] == "dev-rows"
    environment = model["PrimaryContainer"]["Environment"]
    assert environment["SAGEMAKER_PROGRAM"] == "inference.py"
    # TorchServe's own 6.5 MB limit raised to the job's payload, which the largest row (a clip inlined) decided.
    assert environment["TS_MAX_REQUEST_SIZE"] == str(job["MaxPayloadInMB"] * 2**20) and job["MaxPayloadInMB"] == 6
    assert job["TransformInput"] | {"DataSource": None} == {"DataSource": None, "ContentType": "application/json",
                                                             "SplitType": "Line", "CompressionType": "None"}  # fmt: skip
    assert job["TransformInput"]["DataSource"]["S3DataSource"]["S3Uri"] == f"s3://{BUCKET}/mmsent/transforms/dev-rows/input/"
    assert job["DataProcessing"] == {"InputFilter": "$['text','media','speaker','past','future']", "JoinSource": "Input",
                                     "OutputFilter": "$['name','labels','issues','SageMakerOutput']"}  # fmt: skip
    assert job["BatchStrategy"] == "SingleRecord" and job["MaxConcurrentTransforms"] == 1
    assert job["TransformResources"] == {"InstanceType": "ml.m5.xlarge", "InstanceCount": 2}
    assert "10 rows" in result.stderr and "would upload 3 files" in result.stderr  # the archive and a part file per instance
    assert _keys(clients["s3"]) == before
    assert clients["sagemaker"].list_models()["Models"] == models


@pytest.mark.parametrize("args, message", [
    (["--instance-type", "ml.fake.huge"], "not one SageMaker offers for batch transform jobs"),
    (["--instance-type", "ml.c7g.xlarge"], "'ml.c7g.xlarge': not one SageMaker offers for batch transform jobs"),  # arm64
    (["--max-payload-mb", "101"], "--max-payload-mb 101: SageMaker takes 1 to 100 MB"),
    (["--max-payload-mb", "30", "--max-concurrent", "4"], "--max-concurrent 4 x --max-payload-mb 30 = 120 MB"),
    (["--max-payload-mb", "1"], "big.mp4 is 1.5 MB as a request; give at least 2"),
    (["--job-name", "under_score"], "--job-name 'under_score': 1 to 63 letters"),
    (["--invocation-timeout", "3601"], "--invocation-timeout 3601: 1 to 3600 seconds"),
    (["--out", "answers.txt", "--wait"], "must end in .csv or .jsonl"),
    (["--out", "answers.csv"], "--out reads the answers once the job is done: give it with --wait"),
    (["--input-uri", "s3://elsewhere/clips/"], "--clips-dir is a local folder to upload; --input-uri is clips already in S3"),
    (["--asr-model", "no-whisper"], "--asr-model no-whisper: no such folder"),  # packed as deploy packs it
])  # fmt: skip
def test_bad_settings_are_refused_before_anything_is_created(aws, tiny_model_dir, tmp_path, args, message):
    env, clients = aws
    clips = tmp_path / "clips"
    clips.mkdir()
    (clips / "big.mp4").write_bytes(b"\0" * 1_500_000)
    before, models = _keys(clients["s3"]), clients["sagemaker"].list_models()["Models"]
    result = _transform(env, "--model-dir", str(tiny_model_dir), "--clips-dir", str(clips), "--no-wheels", *args)
    assert result.returncode == 2 and message in result.stderr, result.stderr
    assert _keys(clients["s3"]) == before
    assert clients["sagemaker"].list_models()["Models"] == models


def test_a_folder_of_clips_broken_ones_among_them_comes_back_as_predict_writes_it(aws, tiny_model_dir, broken_clips, tmp_path, monkeypatch):
    env, clients = aws
    created = _transform(env, "--model-dir", str(tiny_model_dir), "--clips-dir", str(broken_clips), "--job-name", "folder",
                         "--instance-type", "ml.m5.xlarge", "--no-wheels", "--wait", "--poll-seconds", "0.1",
                         "--out", str(tmp_path / "early.csv"))  # fmt: skip
    # moto completes the job at once without running it: --wait sees Completed, and every answer is missing, named.
    assert "transform job folder: Completed" in created.stdout
    assert created.returncode == 2 and "14 of 14 clips have no answer" in created.stderr, created.stderr
    assert not (tmp_path / "early.csv").exists()
    keys = _keys(clients["s3"])
    assert "mmsent/transforms/folder/model.tar.gz" in keys and "mmsent/transforms/folder/input/more/" + sorted(
        p.name for p in (broken_clips / "more").iterdir())[0] in keys  # fmt: skip
    assert not any(".DS_Store" in key for key in keys)

    _play(clients, "folder", tiny_model_dir, monkeypatch)
    read = mmsent("transforms", "results", "folder", "--out", str(tmp_path / "transform.csv"), env=env)
    assert read.returncode == 0, read.stderr
    clips = sorted(broken_clips.rglob("*.mp4"))
    predicted = mmsent("predict", *map(str, clips), "--model-dir", str(tiny_model_dir), "--num-workers", "0",
                       "--out", str(tmp_path / "predict.csv"), env=env)  # fmt: skip
    assert predicted.returncode == 0, predicted.stderr
    got, expected = _rows(tmp_path / "transform.csv"), _rows(tmp_path / "predict.csv")
    _assert_same_predictions(got, expected)
    # The broken clips are rows naming their issues (an endpoint answers 422 or 400; in a job that fails the job).
    empty = next(p.name for p in clips if p.stat().st_size == 0)
    assert got[empty]["issues"] == "empty_file" and got[empty]["present"] == ""
    assert {issue for row in got.values() for issue in row["issues"].split(",")} >= {"empty_file", "no_audio_stream", "corrupt_data"}


def test_a_meld_csv_with_a_missing_clip_comes_back_with_its_labels_and_metrics(aws, tiny_model_dir, sample_dir, tmp_path, monkeypatch):
    env, clients = aws
    split = sample_dir / "dev"
    created = _transform(env, "--model-dir", str(tiny_model_dir), "--csv", str(split / "dev_sent_emo.csv"), "--clips-dir",
                         str(split / "dev_splits_complete"), "--job-name", "rows", "--instance-type", "ml.m5.xlarge",
                         "--no-wheels")  # fmt: skip
    assert created.returncode == 0, created.stderr
    _play(clients, "rows", tiny_model_dir, monkeypatch)
    read = mmsent("transforms", "results", "rows", "--out", str(tmp_path / "transform.jsonl"), env=env)
    assert read.returncode == 0, read.stderr
    assert "metrics over 10 labelled rows" in read.stdout
    lines = [json.loads(line) for line in (tmp_path / "transform.jsonl").read_text().splitlines()]
    assert [line["name"] for line in lines] == [f"dia{d}_utt{u}.mp4" for d, u in _dialogue_turns(split / "dev_sent_emo.csv")]
    (missing,) = [line for line in lines if "missing" in line["issues"]]
    assert missing["present"] == {"text": True, "audio": False, "video": False}

    read_csv = mmsent("transforms", "results", "rows", "--out", str(tmp_path / "transform.csv"), env=env)
    assert read_csv.returncode == 0, read_csv.stderr
    predicted = mmsent("predict", "--csv", str(split / "dev_sent_emo.csv"), "--clips-dir", str(split / "dev_splits_complete"),
                       "--model-dir", str(tiny_model_dir), "--num-workers", "0", "--out", str(tmp_path / "predict.csv"), env=env)  # fmt: skip
    assert predicted.returncode == 0, predicted.stderr
    _assert_same_predictions(_rows(tmp_path / "transform.csv"), _rows(tmp_path / "predict.csv"))


def _dialogue_turns(path) -> list[tuple[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return [(row["Dialogue_ID"], row["Utterance_ID"]) for row in csv.DictReader(handle)]


def test_results_of_an_unfinished_or_failed_job_are_refused(aws):
    from mmsent.errors import SettingsError
    from mmsent.sagemaker.transform import read_results

    job = {"TransformJobName": "j", "TransformJobStatus": "Failed", "FailureReason": "ClientError: See job logs"}
    with pytest.raises(SettingsError, match="transform job j is Failed: ClientError: See job logs; no results"):
        read_results(aws[1]["s3"], job)


def _training_job_with_model(clients, name: str, model_dir) -> None:
    """A finished training job as the service leaves it: its model dir as model.tar.gz where ModelArtifacts says."""
    clients["sagemaker"].create_training_job(
        TrainingJobName=name, RoleArn=ROLE, AlgorithmSpecification={"TrainingImage": "image", "TrainingInputMode": "File"},
        OutputDataConfig={"S3OutputPath": f"s3://{BUCKET}/jobs/"}, StoppingCondition={"MaxRuntimeInSeconds": 3600},
        ResourceConfig={"InstanceType": "ml.m5.xlarge", "InstanceCount": 1, "VolumeSizeInGB": 10},
    )  # fmt: skip
    artifacts = clients["sagemaker"].describe_training_job(TrainingJobName=name)["ModelArtifacts"]["S3ModelArtifacts"]
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w:gz", compresslevel=1) as tar:
        for path in sorted(model_dir.rglob("*")):
            tar.add(path, arcname=str(path.relative_to(model_dir)), recursive=False)
    bucket, key = parse_s3_uri(artifacts)
    clients["s3"].put_object(Bucket=bucket, Key=key, Body=archive.getvalue())


def test_clips_already_in_s3_with_a_training_jobs_model(aws, tiny_model_dir, sample_dir):
    env, clients = aws
    clips = sorted((sample_dir / "dev" / "dev_splits_complete").glob("*.mp4"))[:3]
    for clip in clips:
        clients["s3"].put_object(Bucket=BUCKET, Key=f"in-s3/{clip.name}", Body=clip.read_bytes())
    _training_job_with_model(clients, "trained", tiny_model_dir)
    result = _transform(env, "--job", "trained", "--input-uri", f"s3://{BUCKET}/in-s3/", "--job-name", "in-s3",
                        "--instance-type", "ml.m5.xlarge", "--no-wheels", "--dry-run")  # fmt: skip
    assert result.returncode == 0, result.stderr
    model, job = printed_requests(result.stdout)
    assert job["TransformInput"]["DataSource"]["S3DataSource"]["S3Uri"] == f"s3://{BUCKET}/in-s3/"
    assert job["TransformInput"]["SplitType"] == "None" and "DataProcessing" not in job
    largest = max(clip.stat().st_size for clip in clips)
    assert f"3 clips, the largest request {largest / 1e6:.1f} MB" in result.stderr
    assert "would upload 1 files" in result.stderr  # the archive alone

    models = clients["sagemaker"].list_models()["Models"]
    empty = _transform(env, "--model-dir", str(tiny_model_dir), "--input-uri", f"s3://{BUCKET}/nothing-here/", "--no-wheels")
    assert empty.returncode == 2 and f"--input-uri s3://{BUCKET}/nothing-here/: no objects under it" in empty.stderr
    assert clients["sagemaker"].list_models()["Models"] == models


def test_a_job_name_in_use_is_refused_before_its_inputs_are_overwritten(aws, tiny_model_dir, broken_clips):
    env, clients = aws
    sagemaker, base = clients["sagemaker"], "mmsent/transforms/taken"
    sagemaker.create_model(ModelName="taken", ExecutionRoleArn=ROLE,
                           PrimaryContainer={"Image": "image", "ModelDataUrl": f"s3://{BUCKET}/{base}/model.tar.gz"})  # fmt: skip
    sagemaker.create_transform_job(
        TransformJobName="taken", ModelName="taken",
        TransformInput={"DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": f"s3://{BUCKET}/{base}/input/"}}},
        TransformOutput={"S3OutputPath": f"s3://{BUCKET}/{base}/output/"},
        TransformResources={"InstanceType": "ml.m5.xlarge", "InstanceCount": 1},
    )  # fmt: skip
    clients["s3"].put_object(Bucket=BUCKET, Key=f"{base}/input/clip.mp4", Body=b"the first job's input")
    before = _keys(clients["s3"])
    again = _transform(env, "--model-dir", str(tiny_model_dir), "--clips-dir", str(broken_clips), "--job-name", "taken",
                       "--instance-type", "ml.m5.xlarge", "--no-wheels")  # fmt: skip
    assert again.returncode == 2 and "a transform job of that name exists already" in again.stderr, again.stderr
    assert _keys(clients["s3"]) == before  # nothing uploaded: the first job's input is as it was
    assert clients["s3"].get_object(Bucket=BUCKET, Key=f"{base}/input/clip.mp4")["Body"].read() == b"the first job's input"
    # A model of the name without a job (deploy's, or a job's whose record is gone) is refused alike.
    sagemaker.create_model(ModelName="model-only", ExecutionRoleArn=ROLE, PrimaryContainer={"Image": "image"})
    model_only = _transform(env, "--model-dir", str(tiny_model_dir), "--clips-dir", str(broken_clips), "--job-name",
                            "model-only", "--instance-type", "ml.m5.xlarge", "--no-wheels")  # fmt: skip
    assert model_only.returncode == 2 and "a model of that name exists already" in model_only.stderr, model_only.stderr
