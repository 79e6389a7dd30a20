"""A model dir's emotion and sentiment for clips of one's own: `mmsent predict`, `mmsent serve`.

Clips are decoded exactly as in training (the same decoder, frames and mel settings from the model
dir's config), in parallel processes, and scored in batches. A clip up to the model's window (its
`audio_seconds`, what the audio encoder hears) is taken whole, as training took MELD's clips; a
longer one is classified on its centre window, or with `every` set, window by window across the
whole clip (a timeline). Broken media never fails the batch: the clip's row names its issues, and
the model predicts from what is left (the transcript, say), as it learnt to with masked modalities.
With a Transcriber (mmsent.inference.asr), a clip or window without a transcript gets one from its
audio, for a model trained with text.
"""

from __future__ import annotations

import contextvars
import functools
import math
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from mmsent.config import DataConfig, MediaConfig
from mmsent.data.cache import CachedItem, as_item
from mmsent.data.dataset import collate, media_fields
from mmsent.data.media import decode_windows, map_clips
from mmsent.data.text_inputs import TextInput, Turn, encode_texts
from mmsent.errors import SettingsError
from mmsent.inference.asr import Transcriber
from mmsent.labels import TASKS
from mmsent.model_dir import load_model_dir
from mmsent.training.precision import choose_precision
from mmsent.model.fusion import to_device


@dataclass(frozen=True)
class Request:
    """One thing to classify: a clip, its transcript, or both."""

    clip: Path | None = None  # None: the transcript alone
    text: str | None = None  # None or blank: no transcript (text absent)
    name: str = ""  # how results name it (default: the clip's path)
    labels: dict[str, int] | None = None  # true class indices, from a labelled CSV: for metrics
    speaker: str = ""  # who says `text`, and the dialogue's turns around it (as given: normalised when read), used
    past: tuple[Turn, ...] = ()  # where the model was trained with context turns (as many as it was), else ignored
    future: tuple[Turn, ...] = ()


@dataclass
class Prediction:
    name: str
    start: float | None  # the window's seconds in the clip; None for the whole clip or no clip
    end: float | None
    emotion: str
    sentiment: str
    probabilities: dict[str, dict[str, float]]  # task -> class -> probability
    present: dict[str, bool]  # the model's modalities -> whether this item had it
    issues: tuple[str, ...] = ()  # media problems (mmsent.data.media's names)
    text: str | None = None  # the transcript used
    labels: dict[str, str] | None = None  # the true labels, where a labelled CSV gave them
    transcribed: bool = False  # the transcript came from speech recognition (--asr-model), not the request

    def as_dict(self) -> dict:
        row = {"name": self.name, "start": self.start, "end": self.end, "emotion": self.emotion,
               "sentiment": self.sentiment, "probabilities": self.probabilities, "present": self.present,
               "issues": list(self.issues), "text": self.text, "transcribed": self.transcribed}  # fmt: skip
        if self.labels is not None:
            row["labels"] = self.labels
        return row

    @classmethod
    def from_dict(cls, row: dict) -> "Prediction":
        """The inverse of as_dict (an endpoint's or a batch transform job's answer, with its name added)."""
        fields = dict(row, issues=tuple(row.get("issues") or ()))
        return cls(**{name: fields[name] for name in cls.__dataclass_fields__ if name in fields})


MAX_WINDOWS = 1000  # per clip: a timeline of a long scene, not work (and memory) without bound

# Set by whoever runs a prediction on its behalf (the server, for a request): once the event is set, the
# prediction stops at its next boundary (a clip decoded, a batch scored) with Abandoned, freeing its thread.
CANCELLED: contextvars.ContextVar[threading.Event | None] = contextvars.ContextVar("mmsent_prediction_cancelled", default=None)


class Abandoned(Exception):
    """The prediction was cancelled (CANCELLED set): nobody waits for its answer any more."""


def stop_if_cancelled() -> None:
    """The boundary check: raise Abandoned where this prediction's CANCELLED event is set."""
    cancelled = CANCELLED.get()
    if cancelled is not None and cancelled.is_set():
        raise Abandoned("the prediction was cancelled")


class TooManyWindows(SettingsError):
    """A clip would be cut into more than MAX_WINDOWS windows: refused from its duration, before decoding."""


def plan_windows(duration: float | None, seconds: float, every: float | None) -> list[tuple[float, float]] | None:
    """The (start, end) windows to classify, or None for the whole clip (as in training).
    `every` None: the whole clip up to `seconds` long, else its centre `seconds`. `every` S: windows
    of S seconds from the start, the last one shorter where the clip ends; more than MAX_WINDOWS of
    them is a TooManyWindows, counted from the duration before any frame is decoded."""
    if duration is None:
        return None  # no duration in the header: nothing to place windows by
    if every is None:
        if duration <= seconds:
            return None
        start = (duration - seconds) / 2
        return [(start, start + seconds)]
    if not every > 0:
        raise SettingsError(f"windows must be a positive number of seconds, got {every}")
    count = math.ceil(duration / every)  # a float: 1e-300 s windows count as 2e300, never as an array
    if count > MAX_WINDOWS:
        raise TooManyWindows(f"windows of {every:g} s cut this {duration:.1f} s clip into {count:g} windows: more than "
                             f"{MAX_WINDOWS}; choose windows of at least {duration / MAX_WINDOWS:.3g} s")  # fmt: skip
    starts = np.arange(0.0, duration, every)
    return [(float(s), float(min(s + every, duration))) for s in starts if duration - s > 1e-3]


Window = tuple[float, float] | None  # (start, end) seconds in the clip; None: the whole clip


class _Row(NamedTuple):
    """One window of one request on its way to the model."""

    request: Request
    text: str | None  # given, or transcribed
    transcribed: bool  # whether speech recognition made `text`
    span: Window
    clip: CachedItem | None  # the decoded window; None without a clip


def decode_for_prediction(path: Path | None, media: MediaConfig, video: bool, audio: bool, every: float | None,
                          keep_waveform: bool = False, audio_input: str = "log_mel") -> list[tuple[Window, CachedItem, np.ndarray | None]]:
    """Each window of a clip, what the model needs from it (its audio as `audio_input`), and (for speech
    recognition, with `keep_waveform`) its audio samples: in a worker process, so plain arrays."""
    plan = functools.partial(plan_windows, seconds=media.audio_seconds, every=every)
    clips = decode_windows(path, media, plan, video=video, audio=audio or keep_waveform)
    spans = plan(clips[0].duration) or [None]  # the plan decode_windows followed: one clip per window
    return [(span, as_item(clip, media, audio_input), clip.waveform if keep_waveform else None) for span, clip in zip(spans, clips)]


def _decode_job(job: tuple[Path, bool], **settings) -> list[tuple[Window, CachedItem, np.ndarray | None]]:
    """map_clips' function: a (clip, keep its waveform) pair through decode_for_prediction."""
    path, keep_waveform = job
    return decode_for_prediction(path, keep_waveform=keep_waveform, **settings)


class Predictor:
    """A loaded model dir, ready to classify requests (on CUDA when there is one)."""

    def __init__(self, model_dir: Path, device: torch.device | str | None = None, batch_size: int = 16,
                 workers: int | None = None, asr_model: str | None = None) -> None:
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model, self.data_cfg, self.tokenizer = load_model_dir(model_dir, self.device)
        if asr_model is not None and "text" not in self.data_cfg.modalities:
            raise SettingsError(f"--asr-model: the model in {model_dir} was trained without text "
                                f"(modalities {','.join(self.data_cfg.modalities)}), so a transcript has nothing to feed")  # fmt: skip
        self.transcriber = Transcriber(asr_model, self.device) if asr_model is not None else None
        self.model_dir = Path(model_dir)
        self.batch_size = batch_size
        self.workers = workers if workers is not None else min(4, os.cpu_count() or 1)
        self.precision = choose_precision(False, self.device)
        # A fast tokenizer is not safe to call from two threads at once ("Already borrowed"): serve's threads take turns.
        self.tokenizer_lock = threading.Lock()

    @property
    def modalities(self) -> tuple[str, ...]:
        return self.data_cfg.modalities

    def predict(self, requests: Sequence[Request], every: float | None = None, progress: bool | None = False) -> list[Prediction]:
        """One Prediction per window of each request, in request order."""
        cfg = self.data_cfg
        video, audio = "video" in cfg.modalities, "audio" in cfg.modalities
        # Only clips without a transcript are transcribed: their audio is kept (and decoded, for a model without audio).
        listen = {id(r) for r in requests if self.transcriber and r.clip is not None and not (r.text or "").strip()}
        with_clips = [r for r in requests if r.clip is not None and (video or audio or id(r) in listen)]
        decode = functools.partial(_decode_job, media=cfg.media, video=video, audio=audio, every=every, audio_input=cfg.audio_input)
        jobs = [(r.clip, id(r) in listen) for r in with_clips]
        decoded = iter(map_clips(decode, jobs, min(self.workers, len(jobs)), "decode", progress) if jobs else [])
        decoding = {id(r) for r in with_clips}
        rows: list[_Row] = []
        heard: list[tuple[int, np.ndarray]] = []  # (row, waveform) to transcribe
        for request in requests:
            stop_if_cancelled()
            windows = next(decoded) if id(request) in decoding else [(None, None, None)]
            for span, clip, waveform in windows:
                if waveform is not None:
                    heard.append((len(rows), waveform))
                rows.append(_Row(request, request.text, False, span, clip))  # a clip decoded only to be heard still names its issues
        self._transcribe(rows, heard)
        predictions = []
        for first in range(0, len(rows), self.batch_size):
            stop_if_cancelled()
            predictions += self._score(rows[first : first + self.batch_size])
        return predictions

    def _transcribe(self, rows: list[_Row], heard: list[tuple[int, np.ndarray]]) -> None:
        """Fills in the transcript of each row whose audio was kept, marked as transcribed."""
        if self.transcriber is None or not heard:
            return
        texts = self.transcriber.transcribe([waveform for _, waveform in heard], self.data_cfg.media.sample_rate)
        for (position, _), text in zip(heard, texts):
            rows[position] = rows[position]._replace(text=text, transcribed=True)

    @torch.no_grad()
    def _score(self, rows: list[_Row]) -> list[Prediction]:
        cfg: DataConfig = self.data_cfg
        items = []
        # Requests come from anywhere (--text, JSON): normalised here as read_meld_csv and dialogue_inputs do training's.
        inputs = [TextInput(text or "", r.speaker, r.past, r.future).within(cfg.text).normalized() for r, text, *_ in rows]
        texts = [i.text for i in inputs]
        if "text" in cfg.modalities:
            with self.tokenizer_lock:
                encoded = encode_texts(self.tokenizer, inputs, cfg.text)
        for position, (request, *_, clip) in enumerate(rows):
            item: dict = {"index": position, "emotion": 0, "sentiment": 0, "issues": ()}
            if "text" in cfg.modalities:
                item |= {name: column[position] for name, column in encoded.items()}
                item["text_present"] = bool(texts[position])
            if clip is None:  # no clip given: video and audio absent, and nothing wrong with them
                clip = CachedItem(None, None, False, False, ())
            item |= media_fields(clip, cfg)
            items.append(item)
        batch = collate(items)
        present = {name: batch[f"{name}_present"].tolist() for name in cfg.modalities}
        with self.precision.autocast():
            logits = self.model(to_device(batch, self.device))
        probabilities = {task: torch.softmax(logits[task].float(), dim=1).cpu().numpy() for task in TASKS}
        results = []
        for position, (request, text, transcribed, span, clip) in enumerate(rows):
            p = {task: dict(zip(names, (round(float(v), 6) for v in probabilities[task][position]))) for task, names in TASKS.items()}
            labels = {task: TASKS[task][i] for task, i in request.labels.items()} if request.labels else None
            results.append(Prediction(
                name=request.name or (str(request.clip) if request.clip is not None else "(text)"),
                start=round(span[0], 3) if span else None, end=round(span[1], 3) if span else None,
                emotion=max(p["emotion"], key=p["emotion"].get), sentiment=max(p["sentiment"], key=p["sentiment"].get),
                probabilities=p, present={name: bool(present[name][position]) for name in cfg.modalities},
                issues=tuple(clip.issues) if clip is not None else (), text=texts[position] or None, labels=labels,
                transcribed=transcribed,
            ))  # fmt: skip
        return results
