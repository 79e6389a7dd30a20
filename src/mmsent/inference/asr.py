"""Transcripts from speech for clips that come without one: a transformers automatic-speech-recognition
pipeline (a Whisper-family model) over the audio the emotion model hears.

A user's own clip rarely has a transcript, and a model trained with text reads it as its strongest
cue. `--asr-model` fills the gap: a local folder (or, where the hub is reachable, a name such as
openai/whisper-small) is loaded once, and each clip or window without text is transcribed from its
decoded audio (mono, MediaConfig.sample_rate: 16 kHz by default, what Whisper's feature extractor
expects; the pipeline resamples otherwise). Nothing about ASR is needed to predict: without it an
untranscribed clip is classified with its text absent, as the model learnt with modality dropout.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from mmsent.errors import SettingsError

# Whisper hears 30 s at a time: longer audio (a --windows window over 30 s) goes through the pipeline's chunking.
# Only then, as transformers warns chunking is experimental for seq2seq models; the model's own window is shorter.
WHISPER_SECONDS = 30
# Where `mmsent deploy --asr-model` packs the model in model.tar.gz, beside the model dir's files; model_fn loads it.
PACKED_ASR_FOLDER = "asr"


class Transcriber:
    """A loaded speech-recognition pipeline: waveforms in, transcripts out."""

    def __init__(self, model: str, device: torch.device, batch_size: int = 8) -> None:
        from transformers import pipeline

        if _looks_like_path(model) and not Path(model).expanduser().is_dir():
            raise SettingsError(f"--asr-model {model}: no such folder (give a folder holding a saved speech-recognition "
                                "model, or a hub name such as openai/whisper-small)")  # fmt: skip
        try:
            self.pipeline = pipeline("automatic-speech-recognition", model=model, device=device)
        except (OSError, ValueError, KeyError) as error:  # no such folder or hub name, or not an ASR model
            first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise SettingsError(f"--asr-model {model}: cannot load a speech-recognition model from it ({first_line})") from None
        tokenizer = self.pipeline.tokenizer
        if tokenizer is not None and tokenizer.pad_token is None:  # batching pads the generated ids
            tokenizer.pad_token = tokenizer.eos_token
        self.batch_size = batch_size
        self.lock = threading.Lock()  # serve's threads take turns: a fast tokenizer is not thread-safe

    def transcribe(self, waveforms: Sequence[np.ndarray], sample_rate: int) -> list[str]:
        """One transcript per waveform (mono float32), stripped; '' where nothing was recognised."""
        if not waveforms:
            return []
        inputs = [{"raw": np.asarray(w, dtype=np.float32), "sampling_rate": sample_rate} for w in waveforms]
        longest = max(len(w) for w in waveforms) / sample_rate
        chunking = {"chunk_length_s": WHISPER_SECONDS} if longest > WHISPER_SECONDS else {}
        with self.lock:
            outputs = self.pipeline(inputs, batch_size=self.batch_size, **chunking)
        return [output["text"].strip() for output in outputs]


def _looks_like_path(model: str) -> bool:
    """A folder, not a hub name: absolute, relative to here or home, or deeper than a hub name's owner/name."""
    return model.startswith(("/", ".", "~")) or model.count("/") > 1 or Path(model).exists()
