"""Typed settings, built once from the command line and passed down explicitly.

Each module takes the part it needs: media decoding takes `MediaConfig`, tokenisation `TextConfig`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

MODALITIES: tuple[str, ...] = ("text", "audio", "video")


@dataclass(frozen=True)
class MediaConfig:
    """How a clip becomes tensors. The defaults fit torchvision's R3D-18 and MELD's short clips."""

    num_frames: int = 16  # frames sampled evenly across the whole clip; R3D-18 was trained on 16
    frame_size: int = 112  # side of the square centre crop; R3D-18 expects 112
    sample_rate: int = 16_000  # audio is resampled to this rate, mono
    n_mels: int = 64  # mel bins; more only helps with longer FFT windows
    audio_seconds: float = 4.0  # audio is cut or zero-padded to this; MELD clips average about 3 s
    n_fft: int = 400  # 25 ms window at 16 kHz
    hop_length: int = 160  # 10 ms hop at 16 kHz

    def __post_init__(self) -> None:
        for name in ("num_frames", "frame_size", "sample_rate", "n_mels", "n_fft", "hop_length"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)}")
        if self.audio_seconds <= 0:
            raise ValueError(f"audio_seconds must be positive, got {self.audio_seconds}")

    @property
    def audio_samples(self) -> int:
        return round(self.audio_seconds * self.sample_rate)

    @property
    def mel_frames(self) -> int:
        # torch.stft with center=True yields one frame per hop plus one.
        return self.audio_samples // self.hop_length + 1


@dataclass(frozen=True)
class TextConfig:
    """How an utterance becomes token ids."""

    model: str = "default"  # "default" is the offline all-MiniLM-L6-v2; or a local path or hub name
    max_tokens: int = 96  # MELD's longest utterance is about 90 word pieces

    def __post_init__(self) -> None:
        if self.max_tokens < 2:
            raise ValueError(f"max_tokens must be at least 2, got {self.max_tokens}")


@dataclass(frozen=True)
class DataConfig:
    """What a dataset item carries."""

    text: TextConfig = field(default_factory=TextConfig)
    media: MediaConfig = field(default_factory=MediaConfig)
    modalities: tuple[str, ...] = MODALITIES  # any subset; text-only needs no clips at all

    def __post_init__(self) -> None:
        unknown = sorted(set(self.modalities) - set(MODALITIES))
        if unknown or not self.modalities:
            raise ValueError(
                f"modalities must be a non-empty subset of {','.join(MODALITIES)}, got {','.join(self.modalities)}"
            )
