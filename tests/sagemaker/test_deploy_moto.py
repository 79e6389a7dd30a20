"""`mmsent deploy` and `mmsent endpoints` against moto's S3 and SageMaker server on 127.0.0.1, and
the packed model.tar.gz answering a request from its own code/ alone."""

from __future__ import annotations

import json
import subprocess
import sys
import tarfile
import textwrap

import pytest

from mmsent.sagemaker.deploy import EndpointSettings, endpoint_requests
from tests.inference.test_predict import _good_clips
from tests.sagemaker.conftest import BUCKET, ROLE, printed_requests
from tests.sagemaker.test_launch_moto import _keys
from tests.cli import mmsent


@pytest.fixture(scope="module")
def aws(aws, endpoint_wheel_cache):  # noqa: F811
    """moto, with the cache folder where the session downloaded the wheels deploy packs (as a user's cache holds them)."""
    env, clients = aws
    return env | {"MMSENT_CACHE_DIR": str(endpoint_wheel_cache)}, clients


def _deploy(env, *args: str):
    return mmsent("deploy", "--role", ROLE, "--bucket", BUCKET, *args, env=env)


def test_dry_run_prints_three_requests_and_creates_nothing(aws, tiny_model_dir):  # noqa: F811
    env, clients = aws
    before = _keys(clients["s3"])
    result = _deploy(env, "--model-dir", str(tiny_model_dir), "--endpoint-name", "emotions", "--serverless", "2048", "--dry-run")
    assert result.returncode == 0, result.stderr
    model, config, endpoint = printed_requests(result.stdout)
    assert model["PrimaryContainer"]["Image"] == "763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-inference:2.6.0-cpu-py312"
    assert model["PrimaryContainer"]["Environment"]["SAGEMAKER_PROGRAM"] == "inference.py"
    assert config["ProductionVariants"][0]["ServerlessConfig"]["MemorySizeInMB"] == 2048
    assert endpoint == {"EndpointName": "emotions", "EndpointConfigName": config["EndpointConfigName"]}
    assert _keys(clients["s3"]) == before
    assert clients["sagemaker"].list_endpoints()["Endpoints"] == []


@pytest.mark.parametrize("args, message", [
    (["--serverless", "1000"], "memory must be one of 1024"),
    (["--instance-type", "g5.xlarge"], "--instance type 'g5.xlarge' is not of the form ml.FAMILY.SIZE"),
    (["--instance-type", "ml.fake.huge"], "--instance type 'ml.fake.huge': not one SageMaker offers for endpoints"),
    (["--framework-version", "1.13"], "knows the inference image of 2.6.0 only"),
    (["--instance-type", "ml.c7g.xlarge"], "ml.c7g.xlarge is a Graviton (arm64) instance"),
])  # fmt: skip
def test_bad_settings_are_refused_before_any_call(aws, tiny_model_dir, args, message):  # noqa: F811
    env, clients = aws
    result = _deploy(env, "--model-dir", str(tiny_model_dir), "--endpoint-name", "emotions", *args)
    assert result.returncode == 2 and message in result.stderr, result.stderr
    assert clients["sagemaker"].list_models()["Models"] == []


def test_endpoint_names_follow_sagemakers_rule():
    settings = dict(role_arn=ROLE, image_uri="i", model_data_url="s3://b/k", region="us-east-1")
    for name in ("no_underscores", "x-" * 40 + "x"):  # the second: 81 characters, hyphens between
        with pytest.raises(ValueError, match="letters, digits and hyphens"):
            EndpointSettings(endpoint_name=name, **settings)
    requests = endpoint_requests(EndpointSettings(endpoint_name="x" * 63, **settings), stamp="20261128-120000")
    assert len(requests["create_model"]["ModelName"]) <= 63


@pytest.mark.slow
def test_deploy_list_invoke_delete(aws, tiny_model_dir, sample_dir):  # noqa: F811
    env, clients = aws
    deployed = _deploy(env, "--model-dir", str(tiny_model_dir), "--endpoint-name", "emotions", "--instance-type",
                       "ml.m5.large", "--wait", "--poll-seconds", "0.1")  # fmt: skip
    assert deployed.returncode == 0, deployed.stderr
    (archive_key,) = [k for k in _keys(clients["s3"]) if k.startswith("mmsent/endpoints/emotions/")]
    assert archive_key.endswith("/model.tar.gz")
    described = clients["sagemaker"].describe_endpoint(EndpointName="emotions")
    assert described["EndpointStatus"] == "InService"

    listed = mmsent("endpoints", "list", env=env)
    assert listed.returncode == 0 and "emotions" in listed.stdout and "InService" in listed.stdout
    invoked = mmsent("endpoints", "invoke", "emotions", str(_good_clips(sample_dir)[0]), "--text", "hi", env=env)
    assert invoked.returncode == 0, invoked.stderr  # moto answers with its own canned body

    # A redeploy (UpdateEndpoint) is not tested: moto 5.2.5 does not implement UpdateEndpoint.

    deleted = mmsent("endpoints", "delete", "emotions", env=env)
    assert deleted.returncode == 0, deleted.stderr
    assert [line.split()[1] for line in deleted.stdout.splitlines()] == ["endpoint", "endpoint", "model"]
    assert clients["sagemaker"].list_endpoints()["Endpoints"] == []


@pytest.mark.slow  # a 130 MB archive packed, then loaded by a fresh interpreter
def test_the_packed_archive_answers_from_its_own_code(tiny_model_dir, sample_dir, tmp_path, endpoint_wheel_cache):
    from mmsent.sagemaker.deploy import build_model_archive

    (wheels,) = (endpoint_wheel_cache / "endpoint-wheels").iterdir()
    archive = build_model_archive(tiny_model_dir, tmp_path / "model.tar.gz", "2.6.0", wheels=wheels)
    unpacked = tmp_path / "opt-ml-model"
    with tarfile.open(archive) as tar:
        tar.extractall(unpacked, filter="data")
    # The archive says what produced the model: the model card and the metrics beside the weights.
    assert (unpacked / "README.md").read_text() == (tiny_model_dir / "README.md").read_text()
    assert (unpacked / "metrics.json").is_file()
    requirements = (unpacked / "code" / "requirements.txt").read_text().splitlines()
    # Installed from the packed wheels alone (pip reads --find-links relative to the file), only what the handler imports.
    assert requirements[:6] == ["--no-index", "--find-links wheels", "torch==2.6.0", "torchvision==0.21.0", "torchaudio==2.6.0", "numpy>=2,<3"]
    assert [line.split("==")[0] for line in requirements[6:]] == ["transformers", "av", "ftfy"]
    assert {p.name for p in (unpacked / "code" / "wheels").iterdir()} == {p.name for p in wheels.glob("*.whl")}
    # As the inference toolkit does: code/ first on the path, `inference` imported, the four functions called.
    script = textwrap.dedent(f"""
        import json, sys
        sys.path.insert(0, {str(unpacked / "code")!r})
        import inference, mmsent
        assert mmsent.__file__.startswith({str(unpacked / "code")!r}), mmsent.__file__
        model = inference.model_fn({str(unpacked)!r})
        data = inference.input_fn(open({str(_good_clips(sample_dir)[0])!r}, "rb").read(), "video/mp4")
        body, kind = inference.output_fn(inference.predict_fn(data, model), "application/json")
        print(json.loads(body)["predictions"][0]["emotion"])
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    from mmsent.labels import EMOTIONS

    assert result.stdout.strip() in EMOTIONS


@pytest.mark.slow  # a 130 MB archive packed, then loaded by a fresh interpreter
def test_an_archive_with_an_asr_model_transcribes_clips_sent_without_text(tiny_model_dir, tiny_whisper, sample_dir, tmp_path):
    from mmsent.sagemaker.deploy import build_model_archive

    archive = build_model_archive(tiny_model_dir, tmp_path / "model.tar.gz", "2.6.0", asr_model=tiny_whisper)
    unpacked = tmp_path / "opt-ml-model"
    with tarfile.open(archive) as tar:
        tar.extractall(unpacked, filter="data")
    assert sorted(p.name for p in (unpacked / "asr").iterdir()) == sorted(p.name for p in tiny_whisper.iterdir())
    script = textwrap.dedent(f"""
        import json, sys
        sys.path.insert(0, {str(unpacked / "code")!r})
        import inference
        model = inference.model_fn({str(unpacked)!r})
        data = inference.input_fn(open({str(_good_clips(sample_dir)[0])!r}, "rb").read(), "video/mp4")
        body, kind = inference.output_fn(inference.predict_fn(data, model), "application/json")
        print(json.dumps(json.loads(body)["predictions"][0]))
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    prediction = json.loads(result.stdout.strip().splitlines()[-1])
    assert prediction["transcribed"] is True and prediction["text"] and prediction["present"]["text"] is True


def test_deploy_refuses_an_asr_model_that_is_not_a_folder(aws, tiny_model_dir, tmp_path):  # noqa: F811
    from mmsent.errors import SettingsError
    from mmsent.sagemaker.deploy import build_model_archive

    with pytest.raises(SettingsError, match="--asr-model .*no-whisper: no such folder"):
        build_model_archive(tiny_model_dir, tmp_path / "model.tar.gz", "2.6.0", asr_model=tmp_path / "no-whisper")
    assert not (tmp_path / "model.tar.gz").exists()
    # Through the command: one line, and nothing uploaded or created.
    env, clients = aws
    before = _keys(clients["s3"])
    result = _deploy(env, "--model-dir", str(tiny_model_dir), "--endpoint-name", "emotions", "--asr-model", str(tmp_path / "no-whisper"))
    assert result.returncode == 2 and f"--asr-model {tmp_path / 'no-whisper'}: no such folder" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert _keys(clients["s3"]) == before and clients["sagemaker"].list_endpoints()["Endpoints"] == []


@pytest.mark.parametrize("placement, workers", [
    ({"instance_type": "ml.m5.xlarge"}, "1"),  # TorchServe's default would be one whole model copy per vCPU
    ({"instance_type": None, "serverless_memory_mb": 3072}, "1"),
    ({"instance_type": "ml.g5.12xlarge"}, "4"),  # one per GPU: each worker on the GPU the server gives it
])  # fmt: skip
def test_the_model_server_runs_one_worker_per_gpu_or_one(placement, workers):
    settings = dict(role_arn=ROLE, image_uri="i", model_data_url="s3://b/k", region="us-east-1", endpoint_name="emotions")
    environment = endpoint_requests(EndpointSettings(**settings, **placement))["create_model"]["PrimaryContainer"]["Environment"]
    assert environment["SAGEMAKER_MODEL_SERVER_WORKERS"] == workers


def test_model_fn_takes_the_model_servers_context_and_its_gpu():
    """The inference toolkit passes its context to a model_fn of two parameters (transformer._run_handler_function)."""
    import inspect

    from mmsent.inference import handler

    assert len(inspect.signature(handler.model_fn).parameters) == 2
    assert handler.worker_device(3, cuda=True) == "cuda:3" and handler.worker_device(None, cuda=True) == "cuda"
    assert handler.worker_device(3, cuda=False) == "cpu"
