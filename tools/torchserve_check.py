"""`make torchserve-check`: the packed model.tar.gz served by the real inference stack, as the container serves it.

The AWS PyTorch inference image starts `sagemaker_pytorch_serving_container.serving.main()` (its
entry point): the toolkit writes TorchServe's configuration, archives /opt/ml/model with
torch-model-archiver, installs code/requirements.txt (pip, before the server starts), then starts
TorchServe (a Java frontend) whose Python workers load `inference.py` through the toolkit's handler
service. This check runs exactly that, from PyPI's sagemaker-pytorch-inference, torchserve and
torch-model-archiver, with the Java runtime on PATH, in a venv layered on the one of the inference image's
Python and torch (tools/endpoint_check.py's), on 127.0.0.1:

- the archive `mmsent deploy` would upload, unpacked where SAGEMAKER_BASE_DIR points (/opt/ml in the image);
- the container's environment as `deploy` sets it (SAGEMAKER_PROGRAM, SAGEMAKER_MODEL_SERVER_WORKERS...);
- the package index cut off (the requirements install from the packed wheels);
- one difference: the toolkit writes its TorchServe configuration to /etc/sagemaker-ts.properties, here to
  a file of this run (the module's TS_CONFIG_FILE, set before it starts).

It times the start to the first successful GET /ping, sends a clip to POST /invocations and checks the
answer, then stops the server with SIGTERM as SageMaker does. What it cannot show: the image's CUDA build,
its OS, and the service's own checks around the container.

With --transform, the container is a batch transform job's instead (the Model environment `mmsent
transform` sets, with a 20 MB payload, and SAGEMAKER_BATCH=true as SageMaker sets it in a transform job):
a 10 MB request must pass TorchServe (whose own limit is 6.5 MB unless TS_MAX_REQUEST_SIZE raises it),
and an empty clip must be answered with its row (empty_file), not an error that would fail the job.
Without it, the endpoint's: TorchServe refuses the same 10 MB request (it closes the connection), as a
real-time endpoint's own 6 MB limit would.

    python tools/torchserve_check.py [--model-dir DIR] [--ping-timeout 300] [--transform]
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import textwrap
import time
import urllib.error
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from endpoint_check import OFFLINE_PIP, _sample_and_model  # noqa: E402
from image_check import image_venv, layered_venv  # noqa: E402

from mmsent.labels import EMOTIONS  # noqa: E402
from mmsent.sagemaker.deploy import EndpointSettings, build_model_archive, endpoint_requests  # noqa: E402
from mmsent.sagemaker.images import DEFAULT_INFERENCE_VERSION, INFERENCE_IMAGES  # noqa: E402
from mmsent.sagemaker.transform import TransformSettings, transform_requests  # noqa: E402
from mmsent.sagemaker.wheels import fetch_wheels, inference_requirements  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
# The serving stack of the inference image (aws/deep-learning-containers, pytorch/inference/docker/2.6: TorchServe
# and its archiver at one version, the toolkit, and the setuptools<82 its pkg_resources import needs).
SERVING_PACKAGES = ("torchserve==0.12.0", "torch-model-archiver==0.12.0", "sagemaker-pytorch-inference==2.0.25", "setuptools<82")

# The image's entry point, with one change: the configuration file the toolkit writes to /etc goes to argv[1].
_START = textwrap.dedent("""
    import sys
    from sagemaker_pytorch_serving_container import serving, torchserve
    torchserve.TS_CONFIG_FILE = sys.argv[1]
    serving.main()
""")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", type=Path, help="the model dir to pack (default: a one-epoch model of the built-in sample)")
    parser.add_argument("--framework-version", default=DEFAULT_INFERENCE_VERSION, choices=sorted(INFERENCE_IMAGES))
    parser.add_argument("--ping-timeout", type=float, default=300.0, help="seconds to wait for the first successful /ping")
    parser.add_argument("--venvs", type=Path, default=ROOT / ".cache" / "image-venvs", help="where the image venvs are kept")
    parser.add_argument("--transform", action="store_true", help="a batch transform job's container, not an endpoint's")
    args = parser.parse_args()
    if shutil.which("java") is None:
        raise SystemExit("torchserve check: no java on PATH (TorchServe's frontend is Java; the image has OpenJDK 17)")
    image = INFERENCE_IMAGES[args.framework_version]
    problems: list[str] = []
    timings: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="torchserve-check-") as tmp:
        tmp = Path(tmp)
        base = image_venv(image, args.venvs / f"inference-{args.framework_version}", toolkit=False)
        venv = tmp / "venv"
        python = layered_venv(base, venv)
        print(f"== installing {' '.join(SERVING_PACKAGES)} (the image's serving stack)", flush=True)
        subprocess.run([python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *SERVING_PACKAGES], check=True)
        sample, model_dir = _sample_and_model(tmp, args.model_dir)
        wheels = fetch_wheels(inference_requirements(image), image, ROOT / ".cache")
        archive = build_model_archive(model_dir, tmp / "model.tar.gz", args.framework_version, wheels=wheels)
        with tarfile.open(archive) as unpacking:
            unpacking.extractall(tmp / "opt-ml" / "model", filter="data")
        settings = EndpointSettings(endpoint_name="torchserve-check", role_arn="arn:aws:iam::123456789012:role/check",
                                    image_uri="local", model_data_url="s3://local/model.tar.gz", region="us-east-1",
                                    instance_type="ml.m5.xlarge")  # fmt: skip
        container = endpoint_requests(settings)["create_model"]["PrimaryContainer"]["Environment"]
        if args.transform:
            job = TransformSettings(job_name="torchserve-check", role_arn=settings.role_arn, image_uri="local",
                                    model_data_url=settings.model_data_url, region="us-east-1", input_uri="s3://local/in/",
                                    output_uri="s3://local/out/", records="lines", instance_type="ml.m5.xlarge",
                                    max_payload_mb=20)  # fmt: skip
            container = transform_requests(job)["create_model"]["PrimaryContainer"]["Environment"] | {"SAGEMAKER_BATCH": "true"}
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        env = (os.environ | container | OFFLINE_PIP | {"SAGEMAKER_BASE_DIR": str(tmp / "opt-ml"), "SAGEMAKER_BIND_TO_PORT": str(port),
               "PATH": f"{venv / 'bin'}:{os.environ['PATH']}", "VIRTUAL_ENV": str(venv)})  # fmt: skip
        env.pop("PYTHONPATH", None)
        log = (tmp / "server.log").open("w")
        print(f"== starting the toolkit's entry point on port {port}: {json.dumps(container)}", flush=True)
        started = time.monotonic()
        server = subprocess.Popen([python, "-c", _START, str(tmp / "sagemaker-ts.properties")], cwd=tmp, env=env,
                                  stdout=log, stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
        try:
            if _wait_for_ping(port, server, args.ping_timeout):
                timings["first successful /ping"] = time.monotonic() - started
                clip = next(p for p in sorted((sample / "train").rglob("*.mp4")) if p.stat().st_size > 0)
                asked = time.monotonic()
                answer = _invoke(port, clip.read_bytes(), "video/mp4")
                timings["first /invocations"] = time.monotonic() - asked
                emotion = answer["predictions"][0]["emotion"]
                print(f"== /invocations with {clip.name}: {emotion}")
                if emotion not in EMOTIONS:
                    problems.append(f"the answer names no emotion: {answer}")
                # One of a transform job's JSON lines, padded with whitespace (valid JSON) to 10 MB: over TorchServe's own 6.5 MB.
                line = json.dumps({"text": "so big", "media": base64.b64encode(clip.read_bytes()).decode(), "speaker": "",
                                   "past": [], "future": []}).encode()  # fmt: skip
                big = _invoke(port, line + b" " * (10 * 2**20 - len(line)), "application/json", expect_error=not args.transform)
                print(f"== a 10 MB request: " + (f"HTTP {big['status']}" if "status" in big else big["predictions"][0]["emotion"]))
                if args.transform and "predictions" not in big:
                    problems.append(f"a 10 MB request within the job's 20 MB payload was refused: {big}")
                if not args.transform and big.get("status") not in (413, "connection reset"):
                    problems.append(f"a 10 MB request to an endpoint got {big}, not TorchServe's refusal")
                if args.transform:
                    empty = _invoke(port, b"", "application/octet-stream")
                    print(f"== an empty clip: {empty['predictions'][0]['issues']}")
                    if empty["predictions"][0]["issues"] != ["empty_file"]:
                        problems.append(f"an empty clip in a transform job got {empty}, not its row naming empty_file")
                else:
                    bad = _invoke(port, b"not a video", "video/mp4", expect_error=True)
                    print(f"== a broken clip: HTTP {bad['status']}")
                    if not 400 <= bad["status"] < 500:
                        problems.append(f"a broken clip got HTTP {bad['status']}, not a 4xx")
            else:
                problems.append(f"no successful /ping within {args.ping_timeout:.0f} s (server exit: {server.poll()})")
        except (OSError, ValueError, KeyError) as error:
            problems.append(f"the server's answer: {type(error).__name__}: {error}")
        finally:
            os.killpg(server.pid, signal.SIGTERM)  # as SageMaker stops a container; the toolkit stops TorchServe
            try:
                server.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
            subprocess.run([str(venv / "bin" / "torchserve"), "--stop"], cwd=tmp, env=env, capture_output=True)
            log.close()
            lines = (tmp / "server.log").read_text(errors="replace").splitlines()
            print("== from the server's log:\n" + "\n".join(line[:300] for line in lines if any(mark in line for mark in _LOG_MARKS)))
            if problems:
                print("== server log (tail):\n" + "\n".join(lines[-80:]))
    print("\n== TorchServe check, pytorch-inference", args.framework_version, "(transform job)" if args.transform else "(endpoint)")
    print("| stage | seconds |\n|---|---:|")
    for stage, seconds in timings.items():
        print(f"| {stage} | {seconds:.1f} |")
    print(json.dumps({"problems": problems}, indent=2))
    print("PASSED" if not problems else "FAILED")
    return 0 if not problems else 1


# What the log shows of the start: the requirements installed (from the packed wheels), the model loaded.
_LOG_MARKS = ("installing packages from requirements", "Looking in links", "Successfully installed", "Loading model",
              "loaded successfully", "Torchserve version", "Number of GPUs", "Default workers per model")


def _wait_for_ping(port: int, server: subprocess.Popen, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            return False
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2) as response:
                if response.status == 200:
                    return True
        except (OSError, urllib.error.URLError):
            pass
        time.sleep(1)
    return False


def _invoke(port: int, body: bytes, content_type: str, expect_error: bool = False) -> dict:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", data=body, method="POST",
                                     headers={"Content-Type": content_type, "Accept": "application/json"})  # fmt: skip
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as error:
        if expect_error:
            return {"status": error.code, "body": error.read().decode(errors="replace")}
        raise ValueError(f"HTTP {error.code}: {error.read().decode(errors='replace')[:1000]}") from error
    except (urllib.error.URLError, ConnectionError) as error:  # TorchServe closes the connection on a body over its limit
        if expect_error and isinstance(getattr(error, "reason", error), ConnectionResetError):
            return {"status": "connection reset"}
        raise


if __name__ == "__main__":
    sys.exit(main())
