"""`mmsent serve`: the SageMaker hosting contract (GET /ping, POST /invocations) over real HTTP.

The server is waitress: a production WSGI server in pure Python (no C build, so it installs
anywhere mmsent does), with a thread pool for concurrent requests, a cap on body size enforced
while reading, and a clean stop. Requests are parsed with Werkzeug. Each request runs the same four
handler functions as the AWS container (mmsent.inference.handler), so what passes here passes there.
Work is bounded before it starts: `threads` predictions run at once and `queue` more may wait for
one; a request beyond those gets 503 with Retry-After at once (no queue that grows without limit).
A request runs (waiting included) at most `timeout` seconds, then gets 504 and its work is cancelled
at its next boundary (its start, a clip decoded, a batch scored: predict.CANCELLED), so abandoned work
frees its place. The HTTP server has HEALTH_THREADS more threads than running and waiting requests
together, and only admitted requests wait on a prediction, so GET /ping never waits behind predictions (SageMaker's health check allows 2 s, then replaces the
instance). SIGTERM (what SageMaker and container runtimes send) stops accepting connections, lets
requests in flight finish, and exits 0.
"""

from __future__ import annotations

import json
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass

from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.wrappers import Request, Response

from mmsent.inference import handler
from mmsent.inference.predict import CANCELLED, Abandoned, Predictor
from mmsent.errors import SettingsError

HEALTH_THREADS = 2  # HTTP threads beyond the admitted requests: /ping, and the fast 503s, always find one
RETRY_AFTER_SECONDS = 1


@dataclass(frozen=True)
class ServeConfig:
    host: str = "127.0.0.1"  # 0.0.0.0 to accept connections from other machines (inside a container)
    port: int = 8080  # SageMaker's hosting contract listens on 8080
    threads: int = 4  # predictions at once
    queue: int = 4  # requests that may wait for one of them; beyond threads + queue: 503
    max_body_mb: float = 50.0  # larger bodies get 413 before the model sees them
    timeout: float = 60.0  # seconds a request may run before it gets 504
    stop_grace: float = 30.0  # seconds SIGTERM waits for requests in flight

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise SettingsError(f"port must lie in 0..65535, got {self.port}")
        if self.threads < 1:
            raise SettingsError(f"threads must be at least 1, got {self.threads}")
        if self.queue < 0:
            raise SettingsError(f"queue must be 0 or more, got {self.queue}")
        for name in ("max_body_mb", "timeout", "stop_grace"):
            if not getattr(self, name) > 0:
                raise SettingsError(f"{name} must be a positive number, got {getattr(self, name)}")

    @property
    def max_body_bytes(self) -> int:
        return int(self.max_body_mb * 1024 * 1024)


class InvocationsApp:
    """The WSGI application: /ping and /invocations, every answer JSON."""

    def __init__(self, model: Predictor, cfg: ServeConfig) -> None:
        self.model, self.cfg = model, cfg
        self.pool = ThreadPoolExecutor(max_workers=cfg.threads, thread_name_prefix="mmsent-predict")
        # Held from admission until the work has ended: running and waiting requests together.
        self.slots = threading.BoundedSemaphore(cfg.threads + cfg.queue)

    def __call__(self, environ, start_response):
        request = Request(environ)
        request.max_content_length = self.cfg.max_body_bytes
        if request.path == "/ping" and request.method == "GET":
            response = _json(200, {"status": "healthy"})
        elif request.path == "/invocations" and request.method == "POST":
            response = self.invoke(request)
        elif request.path in ("/ping", "/invocations"):
            response = _json(405, {"error": f"{request.method} {request.path}: use GET /ping or POST /invocations"})
        else:
            response = _json(404, {"error": f"no {request.path}: use GET /ping or POST /invocations"})
        return response(environ, start_response)

    def invoke(self, request: Request) -> Response:
        try:
            body = request.get_data(cache=False)
        except RequestEntityTooLarge:
            return _json(413, {"error": f"the body is larger than the limit of {self.cfg.max_body_mb:g} MB"})
        if not self.slots.acquire(blocking=False):
            return _json(503, {"error": f"busy: {self.cfg.threads} predictions running and {self.cfg.queue} waiting; "
                                        "retry in a moment"},
                         {"Retry-After": str(RETRY_AFTER_SECONDS)})  # fmt: skip
        cancelled = threading.Event()
        try:
            future = self.pool.submit(self._handle, body, request.content_type, request.headers.get("Accept"), cancelled)
        except RuntimeError:  # the pool is shut down: the server is stopping
            self.slots.release()
            return _json(503, {"error": "the server is stopping"}, {"Retry-After": str(RETRY_AFTER_SECONDS)})
        future.add_done_callback(lambda _: self.slots.release())
        try:
            text, content_type = future.result(timeout=self.cfg.timeout)
        except FutureTimeout:
            cancelled.set()  # its work stops at the next boundary and gives its slot back
            return _json(504, {"error": f"the request took longer than {self.cfg.timeout:g} s"})
        except handler.RequestError as problem:
            return Response(problem.body, status=problem.status_code, content_type="application/json")
        return Response(text, status=200, content_type=content_type)

    def _handle(self, body: bytes, content_type: str | None, accept: str | None, cancelled: threading.Event) -> tuple[str, str]:
        token = CANCELLED.set(cancelled)
        try:
            if cancelled.is_set():  # timed out while it waited for a thread
                raise Abandoned("timed out before it started")
            data = handler.input_fn(body, content_type or "")
            return handler.output_fn(handler.predict_fn(data, self.model), accept)
        except Abandoned:  # nobody waits for the answer: the 504 went out already
            return "", "application/json"
        finally:
            CANCELLED.reset(token)


def _json(status: int, payload: dict, headers: dict[str, str] | None = None) -> Response:
    return Response(json.dumps(payload), status=status, content_type="application/json", headers=headers)


def make_server(app: InvocationsApp, cfg: ServeConfig):
    """waitress serving `app` on cfg's host and port, with HEALTH_THREADS threads beyond the admitted requests."""
    from waitress.server import create_server

    # waitress's own cap stops reading a body far past the limit; the app answers 413 in JSON below it.
    return create_server(app, host=cfg.host, port=cfg.port, threads=cfg.threads + cfg.queue + HEALTH_THREADS,
                         max_request_body_size=cfg.max_body_bytes * 2, clear_untrusted_proxy_headers=True)  # fmt: skip


def serve(model: Predictor, cfg: ServeConfig, ready=print) -> None:
    """Serve until SIGTERM or SIGINT; `ready(message)` is called once the port is listening."""
    app = InvocationsApp(model, cfg)
    try:
        server = make_server(app, cfg)
    except OSError as problem:  # a port in use or not ours to take, a host that is not this machine's
        app.pool.shutdown(wait=False)
        raise SettingsError(f"cannot listen on {cfg.host}:{cfg.port}: {problem.strerror or problem}") from None
    stopping = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stopping.set()) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        ready(f"serving {model.model_dir} on http://{server.effective_host}:{server.effective_port} "
              "(GET /ping, POST /invocations); SIGTERM or Ctrl-C stops")  # fmt: skip
        while not stopping.is_set():
            server.asyncore.loop(timeout=0.2, map=server._map, count=1)
        # Stop accepting; keep the loop turning until the requests in flight have been answered.
        server.del_channel()
        server.socket.close()
        deadline = time.monotonic() + cfg.stop_grace
        while _busy(server) and time.monotonic() < deadline:
            server.asyncore.loop(timeout=0.2, map=server._map, count=1)
    finally:
        for sig, handler_before in previous.items():
            signal.signal(sig, handler_before)
        server.task_dispatcher.shutdown(timeout=1)
        app.pool.shutdown(wait=False, cancel_futures=True)
        server.asyncore.close_all(server._map)


def _busy(server) -> bool:
    """Whether a connection is receiving a request, has one waiting or running, or holds an unsent answer."""
    return any(channel.request is not None or channel.requests or channel.total_outbufs_len
               for channel in list(server.active_channels.values()))  # fmt: skip
