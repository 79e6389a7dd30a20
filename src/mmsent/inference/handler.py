"""The model behind an HTTP request, in the four functions SageMaker's PyTorch inference container
calls (sagemaker-inference-toolkit's Transformer: model_fn, input_fn, predict_fn, output_fn), and
that `mmsent serve` calls the same way.

Requests:
    video/*, audio/*, application/octet-stream   the clip's bytes (any file FFmpeg reads)
    application/json    {"text": "what was said", "media": "<base64 clip>", "windows": SECONDS}, any of them;
                        with "speaker" and the dialogue's turns around it, "past" and "future" (each a list
                        of {"speaker": ..., "text": ...}, in dialogue order), for a model trained with context
    text/plain          the transcript alone
Response (application/json): {"predictions": [one object per window: emotion, sentiment, every class's
probability, which modalities were present, media issues, the transcript used and whether speech
recognition made it (with an asr/ folder in the model dir, clips sent without text are transcribed)]}.
Bad requests raise RequestError: status 4xx and a JSON body {"error": "..."} naming the problem. In
the AWS container the toolkit turns its status_code into the response's (it appends a traceback).
In a batch transform job, a clip the model cannot use is answered as `mmsent predict` answers it (a row
naming its issues, every modality absent), not with 422: an error answer, retried and then failed, would
fail the whole job over one broken clip of thousands.
"""

from __future__ import annotations

import base64
import binascii
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

from mmsent.data.text_inputs import Turn
from mmsent.environment import Environment
from mmsent.inference.asr import PACKED_ASR_FOLDER
from mmsent.inference.predict import Predictor, Request, TooManyWindows

try:  # inside the AWS inference container: the toolkit answers with this error's status_code
    from sagemaker_inference.errors import GenericInferenceToolkitError as _StatusError
except ImportError:  # anywhere else (mmsent serve): the same shape

    class _StatusError(Exception):
        def __init__(self, status_code: int, message: str | None = None, phrase: str | None = None) -> None:
            super().__init__(status_code, message, phrase)
            self.status_code, self.message, self.phrase = status_code, message, phrase or message


MEDIA_PREFIXES = ("video/", "audio/")


class RequestError(_StatusError):
    """A request the model cannot answer; `status_code` is its HTTP status, `body` the JSON to send."""

    def __init__(self, status: int, problem: str) -> None:
        self.problem = problem
        super().__init__(status, json.dumps({"error": problem}))

    @property
    def body(self) -> str:
        return self.message  # the JSON the toolkit sends as its message


@dataclass(frozen=True)
class Input:
    media: bytes | None = None
    text: str | None = None
    windows: float | None = None  # seconds per window: a timeline; None: the centre window
    speaker: str = ""
    past: tuple[Turn, ...] = ()
    future: tuple[Turn, ...] = ()


def model_fn(model_dir: str, context=None) -> Predictor:
    """The model dir SageMaker unpacked to /opt/ml/model (model.tar.gz's top level is the model dir),
    with the speech-recognition model `mmsent deploy --asr-model` packed beside it, if any. `context`:
    the model server's, which the inference toolkit passes to a model_fn that takes a second argument
    (sagemaker_inference.transformer._run_handler_function); TorchServe gives each worker its GPU there."""
    asr = Path(model_dir) / PACKED_ASR_FOLDER
    gpu_id = context.system_properties.get("gpu_id") if context is not None else None
    return Predictor(Path(model_dir), device=worker_device(gpu_id, torch.cuda.is_available()), workers=1,
                     asr_model=str(asr) if asr.is_dir() else None)  # fmt: skip


def worker_device(gpu_id: int | None, cuda: bool) -> str:
    """The device of a model-server worker: the GPU the server gave it (each worker its own, round-robin,
    not all on GPU 0), else the CPU."""
    if not cuda:
        return "cpu"
    return f"cuda:{gpu_id}" if gpu_id is not None else "cuda"


def input_fn(body: bytes | str, content_type: str) -> Input:
    """The request, checked: media bytes, a transcript, or both."""
    media_type = (content_type or "").split(";")[0].strip().lower()
    if isinstance(body, str):  # the toolkit decodes JSON and CSV bodies to text before calling
        body = body.encode("utf-8")
    media = media_type.startswith(MEDIA_PREFIXES) or media_type == "application/octet-stream"
    # An empty clip in a batch transform job's input is a clip (its row names it zero_length), not a bad request.
    if not body and not (media and Environment.read().batch_transform):
        raise RequestError(400, "empty request body: send a clip's bytes (video/mp4, ...) or JSON {\"text\": ...}")
    if media:
        return Input(media=bytes(body))
    if media_type == "text/plain":
        return Input(text=_utf8(body))
    if media_type == "application/json":
        return _json_input(body)
    raise RequestError(415, f"content type {content_type!r} is not supported: send video/* or audio/* "
                            "(the clip's bytes), application/json or text/plain")  # fmt: skip


def _utf8(body: bytes) -> str:
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as error:
        raise RequestError(400, f"the body is not UTF-8 text (byte {error.start})") from None


def _json_input(body: bytes) -> Input:
    try:
        fields = json.loads(_utf8(body))
    except json.JSONDecodeError as error:
        raise RequestError(400, f"the body is not valid JSON: {error}") from None
    if not isinstance(fields, dict):
        raise RequestError(400, "the JSON body must be an object: {\"text\": ..., \"media\": ..., \"windows\": ...}")
    unknown = sorted(set(fields) - {"text", "media", "windows", "speaker", "past", "future"})
    if unknown:
        raise RequestError(400, f"unknown field(s) {', '.join(unknown)}; expected text, media (base64), windows (seconds), "
                                "speaker, past and future (turns)")  # fmt: skip
    speaker = fields.get("speaker") or ""
    if not isinstance(speaker, str):
        raise RequestError(400, "\"speaker\" must be a string")
    text, media, windows = fields.get("text"), fields.get("media"), fields.get("windows")
    if text is not None and not isinstance(text, str):
        raise RequestError(400, "\"text\" must be a string")
    if media is not None:
        if not isinstance(media, str):
            raise RequestError(400, "\"media\" must be the clip's bytes as a base64 string")
        try:
            media = base64.b64decode(media, validate=True)
        except (binascii.Error, ValueError):
            raise RequestError(400, "\"media\" is not valid base64") from None
    if windows is not None and (isinstance(windows, bool) or not isinstance(windows, (int, float)) or not windows > 0):
        raise RequestError(400, f"\"windows\" must be a positive number of seconds, got {windows!r}")
    if not media and not (text or "").strip():
        raise RequestError(400, "nothing to classify: give \"text\", \"media\" or both")
    return Input(media=media or None, text=text, windows=float(windows) if windows is not None else None,
                 speaker=speaker, past=_turns(fields, "past"), future=_turns(fields, "future"))


def _turns(fields: dict, side: str) -> tuple[Turn, ...]:
    turns = fields.get(side) or []
    shape = f"\"{side}\" must be a list of {{\"speaker\": ..., \"text\": ...}} turns in dialogue order"
    if not isinstance(turns, list):
        raise RequestError(400, shape)
    for turn in turns:
        if not isinstance(turn, dict) or not isinstance(turn.get("text"), str) or not isinstance(turn.get("speaker", ""), str) \
                or set(turn) - {"speaker", "text"}:
            raise RequestError(400, f"{shape}; got {json.dumps(turn)[:100]}")
    return tuple(Turn(t.get("speaker", ""), t["text"]) for t in turns)  # normalised by the Predictor, as every request's text


def predict_fn(data: Input, model: Predictor) -> list[dict]:
    """One object per window. A clip that yields nothing the model can use, without a transcript
    to fall back on, is a 422 naming what was wrong with it (in a batch transform job, its row)."""
    with tempfile.TemporaryDirectory(prefix="mmsent-request-") as folder:
        clip = None
        if data.media is not None:
            clip = Path(folder) / "clip"
            clip.write_bytes(data.media)
        if data.windows is not None and clip is None:
            raise RequestError(400, "\"windows\" needs \"media\": a transcript has no timeline")
        request = Request(clip=clip, text=data.text, name="request", speaker=data.speaker, past=data.past, future=data.future)
        try:
            predictions = model.predict([request], every=data.windows)
        except TooManyWindows as problem:  # counted from the clip's duration, before decoding it
            raise RequestError(413, str(problem)) from None
    if not any(any(p.present.values()) for p in predictions) and not Environment.read().batch_transform:
        issues = sorted({issue for p in predictions for issue in p.issues})
        raise RequestError(422, "nothing in the request could be used: the media " + (
            f"could not be decoded ({', '.join(issues)})" if issues else "has none of the model's inputs") +
            (" and there is no transcript" if "text" in model.modalities else ""))  # fmt: skip
    return [{k: v for k, v in p.as_dict().items() if k != "name"} for p in predictions]


def output_fn(prediction: list[dict], accept: str | None) -> tuple[str, str]:
    """JSON, whatever the Accept header allows that is JSON; the toolkit takes (body, content type)."""
    wanted = [part.split(";")[0].strip().lower() for part in (accept or "application/json").split(",")]
    if not any(kind in ("application/json", "*/*", "application/*") for kind in wanted):
        raise RequestError(406, f"Accept {accept!r}: the response is application/json")
    return json.dumps({"predictions": prediction}), "application/json"
