"""`mmsent serve` over real HTTP on 127.0.0.1, and the handler functions the AWS container calls."""

from __future__ import annotations

import base64
import json
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from mmsent.inference import handler
from mmsent.labels import EMOTIONS
from tests.inference.test_predict import _good_clips
from tests.cli import status_and_stderr


def _call(base: str, path: str, body: bytes | None = None, content_type: str | None = None, method: str | None = None,
          accept: str | None = None) -> tuple[int, dict]:
    headers = {k: v for k, v in (("Content-Type", content_type), ("Accept", accept)) if v}
    request = urllib.request.Request(base + path, data=body, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as failed:
        return failed.code, json.loads(failed.read())


@pytest.fixture(scope="module")
def server(tiny_model_dir):
    process = subprocess.Popen([sys.executable, "-m", "mmsent", "serve", "--model-dir", str(tiny_model_dir), "--port", "0",
                                "--max-body-mb", "0.5", "--threads", "4"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    line = process.stdout.readline()
    match = re.search(r"http://127\.0\.0\.1:(\d+)", line)
    assert match, line + process.stderr.read()
    yield process, f"http://127.0.0.1:{match.group(1)}"
    if process.poll() is None:
        process.kill()
        process.wait()


def test_ping_and_a_clip(server, sample_dir):
    _, base = server
    assert _call(base, "/ping") == (200, {"status": "healthy"})
    status, answer = _call(base, "/invocations", _good_clips(sample_dir)[0].read_bytes(), "video/mp4")
    assert status == 200, answer
    (prediction,) = answer["predictions"]
    assert prediction["emotion"] in EMOTIONS and prediction["present"] == {"text": False, "audio": True, "video": True}


def test_text_only_and_json_with_media(server, sample_dir):
    _, base = server
    status, answer = _call(base, "/invocations", json.dumps({"text": "I can't believe it!"}).encode(), "application/json")
    assert status == 200 and answer["predictions"][0]["present"] == {"text": True, "audio": False, "video": False}
    media = base64.b64encode(_good_clips(sample_dir)[0].read_bytes()).decode()
    status, answer = _call(base, "/invocations", json.dumps({"text": "oh no", "media": media}).encode(), "application/json")
    assert status == 200 and all(answer["predictions"][0]["present"].values())


def test_eight_requests_at_once(server, sample_dir):
    _, base = server
    clips = _good_clips(sample_dir, 8)
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda clip: _call(base, "/invocations", clip.read_bytes(), "video/mp4"), clips))
    assert [status for status, _ in answers] == [200] * len(clips)


@pytest.mark.parametrize("body, content_type, status, words", [
    (b"", "video/mp4", 400, "empty request body"),
    (b"\x89PNG....", "image/png", 415, "not supported"),
    (b"\x00\x01corrupt" * 500, "video/mp4", 422, "could not be decoded (unreadable)"),
    (b"{not json", "application/json", 400, "not valid JSON"),
    (b"x" * 600_000, "video/mp4", 413, "larger than the limit of 0.5 MB"),
])  # fmt: skip
def test_bad_requests_get_a_4xx_naming_the_problem_and_the_server_keeps_serving(server, body, content_type, status, words):
    _, base = server
    got, answer = _call(base, "/invocations", body, content_type)
    assert got == status and words in answer["error"], answer
    assert _call(base, "/ping")[0] == 200


def test_wrong_method_and_path(server):
    _, base = server
    assert _call(base, "/invocations", method="GET")[0] == 405
    assert _call(base, "/nowhere")[0] == 404


def test_sigterm_lets_the_request_in_flight_finish_then_stops(server, sample_dir):
    process, base = server
    clip = _good_clips(sample_dir)[0].read_bytes()
    with ThreadPoolExecutor(1) as pool:
        in_flight = pool.submit(_call, base, "/invocations", json.dumps({"media": base64.b64encode(clip).decode(),
                                                                         "windows": 0.25}).encode(), "application/json")
        time.sleep(0.5)
        process.send_signal(signal.SIGTERM)
        assert in_flight.result()[0] == 200
    assert process.wait(timeout=60) == 0, process.stderr.read()[-3000:]
    assert "stopped" in process.stdout.read()


@pytest.mark.parametrize("body, content_type, status", [
    ('{"text": 5}', "application/json", 400),
    ('{"media": "***"}', "application/json", 400),
    ('{"windows": -1, "text": "x"}', "application/json", 400),
    ('{"other": 1}', "application/json", 400),
    ("[1, 2]", "application/json", 400),
    ("plain words", "text/csv", 415),
])  # fmt: skip
def test_input_fn_refuses_what_it_cannot_use(body, content_type, status):
    with pytest.raises(handler.RequestError) as refused:
        handler.input_fn(body, content_type)
    assert refused.value.status_code == status and json.loads(refused.value.body)["error"]


def test_output_fn_answers_json_or_406():
    assert handler.output_fn([], "application/json; charset=utf-8") == ('{"predictions": []}', "application/json")
    assert handler.output_fn([], None)[1] == "application/json"
    with pytest.raises(handler.RequestError) as refused:
        handler.output_fn([], "text/csv")
    assert refused.value.status_code == 406


def test_the_handler_contract_in_process(tiny_model_dir, sample_dir):
    """model_fn -> input_fn -> predict_fn -> output_fn, as the toolkit's Transformer calls them."""
    model = handler.model_fn(str(tiny_model_dir))
    clip = Path(_good_clips(sample_dir)[0]).read_bytes()
    for windows in (0.001, 1e-300):  # refused from the clip's duration at once: no 504 after decoding, no 500
        over = handler.input_fn(json.dumps({"media": base64.b64encode(clip).decode(), "windows": windows}), "application/json")
        with pytest.raises(handler.RequestError) as refused:
            handler.predict_fn(over, model)
        assert refused.value.status_code == 413 and "more than 1000" in json.loads(refused.value.body)["error"]
    data = handler.input_fn(clip, "video/mp4")
    body, content_type = handler.output_fn(handler.predict_fn(data, model), "*/*")
    assert content_type == "application/json" and json.loads(body)["predictions"][0]["emotion"] in EMOTIONS


@pytest.mark.parametrize("args, message", [
    (["--port", "70000"], "port must lie in 0..65535"),
    (["--timeout", "0"], "expected a positive number"),
    (["--threads", "0"], "expected a positive integer"),
])  # fmt: skip
def test_bad_serve_settings_are_named(tiny_model_dir, args, message):
    status, stderr = status_and_stderr(["serve", "--model-dir", str(tiny_model_dir), *args])
    assert status == 2 and message in stderr


def test_a_port_in_use_is_one_line_naming_it(tiny_model_dir):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        status, stderr = status_and_stderr(["serve", "--model-dir", str(tiny_model_dir), "--port", str(port)])
    assert status == 2 and "Traceback" not in stderr
    assert stderr.strip() == f"mmsent: error: cannot listen on 127.0.0.1:{port}: Address already in use"


class _BlockingPredictor:
    """Holds every prediction until released, checking for cancellation at its boundaries as the real
    Predictor does; counts the predictions that ended."""

    modalities = ("text",)
    model_dir = Path("blocking-model")

    def __init__(self) -> None:
        import threading

        self.release, self.ended = threading.Event(), []

    def predict(self, requests, every=None, progress=False):
        from mmsent.inference.predict import Abandoned, stop_if_cancelled

        try:
            while not self.release.wait(0.02):
                stop_if_cancelled()
        except Abandoned:
            self.ended.append("abandoned")
            raise
        self.ended.append("answered")
        raise handler.RequestError(422, "released")  # an answer the handler passes on as it is


@pytest.fixture
def blocking_server():
    import threading

    from mmsent.inference.server import InvocationsApp, ServeConfig, make_server

    model = _BlockingPredictor()
    app = InvocationsApp(model, ServeConfig(port=0, threads=1, queue=1, timeout=0.5))
    server = make_server(app, app.cfg)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    yield model, f"http://127.0.0.1:{server.effective_port}"
    model.release.set()
    server.close()
    app.pool.shutdown(wait=True)


def test_ping_answers_while_every_thread_is_busy_and_a_request_over_the_queue_gets_503_at_once(blocking_server):
    model, base = blocking_server
    body, kind = b'{"text": "hi"}', "application/json"
    with ThreadPoolExecutor(2) as clients:
        held = [clients.submit(_call, base, "/invocations", body, kind) for _ in range(2)]
        time.sleep(0.2)  # one prediction running (blocked), one waiting for the thread
        started = time.monotonic()
        assert _call(base, "/ping") == (200, {"status": "healthy"})
        request = urllib.request.Request(base + "/invocations", data=body, headers={"Content-Type": kind})
        with pytest.raises(urllib.error.HTTPError) as busy:
            urllib.request.urlopen(request, timeout=10)
        assert time.monotonic() - started < 1.0  # neither waited behind the predictions
        assert busy.value.code == 503 and busy.value.headers["Retry-After"] == "1"
        assert "busy: 1 predictions running and 1 waiting" in json.loads(busy.value.read())["error"]
        assert [future.result()[0] for future in held] == [504, 504]  # past the 0.5 s timeout
    # Timed out, the running one was cancelled at its next boundary and the waiting one at its start:
    # both places are free again.
    deadline = time.monotonic() + 5
    while model.ended.count("abandoned") < 1 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert set(model.ended) == {"abandoned"}  # (the waiting one, cancelled before it started, never ran)
    model.release.set()
    assert _call(base, "/invocations", body, kind) == (422, {"error": "released"})
