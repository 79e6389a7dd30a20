"""Typed settings, built once from the command line and passed down explicitly.

Each module takes the part it needs: media decoding takes `MediaConfig`, tokenisation `TextConfig`.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from mmsent.errors import SettingsError

MODALITIES: tuple[str, ...] = ("text", "audio", "video")
AUDIO_INPUTS: tuple[str, ...] = ("log_mel", "waveform")


def setting(default=dataclasses.MISSING, help: str = "", *, factory=dataclasses.MISSING):
    """A config field with its command-line help: `--name`'s one line on when to change it (arguments.py)."""
    return field(default=default, default_factory=factory, metadata={"help": help})


def require_finite(settings) -> None:
    """Every float setting is a number: NaN passes every `<` and `>` check, and inf trains NaN weights."""
    for f in dataclasses.fields(settings):
        value = getattr(settings, f.name)
        if isinstance(value, float) and not math.isfinite(value):
            raise SettingsError(f"{f.name} must be a finite number, got {value}")


def require_modalities(name: str, values: tuple[str, ...]) -> None:
    """A setting naming modalities: some of MODALITIES, at least one."""
    if not values or set(values) - set(MODALITIES):
        raise SettingsError(f"{name} must be a non-empty subset of {','.join(MODALITIES)}, got {','.join(values) or 'nothing'}")


@dataclass(frozen=True)
class MediaConfig:
    """How a clip becomes tensors. The defaults fit torchvision's R3D-18 and MELD's short clips."""

    num_frames: int = setting(16, "frames sampled evenly across the whole clip; R3D-18 was trained on 16")
    frame_size: int = setting(112, "side of the square centre crop; R3D-18 expects 112")
    sample_rate: int = setting(16_000, "audio is resampled to this rate, mono")
    n_mels: int = setting(64, "mel bins; more only helps with longer FFT windows")
    audio_seconds: float = setting(4.0, "audio is cut or zero-padded to this; MELD clips average about 3 s")
    n_fft: int = setting(400, "25 ms window at 16 kHz")
    hop_length: int = setting(160, "10 ms hop at 16 kHz")

    def __post_init__(self) -> None:
        require_finite(self)
        for name in ("num_frames", "frame_size", "sample_rate", "n_mels", "n_fft", "hop_length"):
            if getattr(self, name) <= 0:
                raise SettingsError(f"{name} must be a positive integer, got {getattr(self, name)}")
        if self.audio_seconds <= 0:
            raise SettingsError(f"audio_seconds must be positive, got {self.audio_seconds}")

    @property
    def audio_samples(self) -> int:
        return round(self.audio_seconds * self.sample_rate)

    @property
    def mel_frames(self) -> int:
        # torch.stft with center=True yields one frame per hop plus one.
        return self.audio_samples // self.hop_length + 1


@dataclass(frozen=True)
class TextConfig:
    """How an utterance becomes token ids (the tokenizer is the text model's: ModelConfig.text_model)."""

    max_tokens: int = setting(96, "MELD's longest utterance is about 90 word pieces; context turns need more room")
    context_past: int = setting(0, "turns of the same dialogue before the utterance read with it, each as 'Speaker: "
                                   "utterance'")
    context_future: int = setting(0, "turns after it, likewise; over max_tokens the farthest turns go first, never the "
                                     "utterance")

    def __post_init__(self) -> None:
        for name in ("context_past", "context_future"):
            if getattr(self, name) < 0:
                raise SettingsError(f"{name} must be 0 or more turns, got {getattr(self, name)}")
        specials = 2 + (self.context_past > 0) + (self.context_future > 0)  # [CLS] and one [SEP] per segment
        if self.max_tokens < specials + 1:
            raise SettingsError(f"max_tokens must be at least {specials + 1} (the special tokens and one of the "
                                f"utterance's), got {self.max_tokens}")

    @property
    def uses_context(self) -> bool:
        return self.context_past > 0 or self.context_future > 0


@dataclass(frozen=True)
class DataConfig:
    """What a dataset item carries."""

    text: TextConfig = field(default_factory=TextConfig)
    media: MediaConfig = field(default_factory=MediaConfig)
    modalities: tuple[str, ...] = setting(MODALITIES, "any subset; text-only needs no clips at all")
    audio_input: str = setting("log_mel", "log_mel (the audio CNN's) | waveform (a speech encoder's): ModelConfig.audio_input")

    def __post_init__(self) -> None:
        require_modalities("modalities", self.modalities)
        if self.audio_input not in AUDIO_INPUTS:
            raise SettingsError(f"audio_input must be one of {', '.join(AUDIO_INPUTS)}, got {self.audio_input!r}")


# The text encoder's top layers fine-tuned by default (ModelConfig.train_top_layers), for the default MiniLM
# only: on MELD text-only (docs/experiments.md, 3 seeds, 4 epochs) its top 4 of 6 reached dev emotion
# weighted F1 0.578 against 0.575 with every layer, in about 60% of the epoch (bench_text.py); the top 2
# lost 0.008. Other text models are unmeasured: they train every layer unless told.
DEFAULT_TOP_LAYERS = 4

# Backbones that can be frozen: they start from pretrained weights (or, for video, act as a fixed
# feature extractor). The audio CNN always starts random, so it always trains; an --audio-model can be frozen.
FREEZABLE: tuple[str, ...] = ("text", "video", "audio")
AUDIO_CNN = "cnn"  # ModelConfig.audio_model: the small CNN over the log-mel, trained from scratch
VIDEO_R3D = "r3d18"  # ModelConfig.video_model: torchvision's R3D-18, weights from video_weights
KINETICS = "kinetics400"  # ModelConfig.video_weights: torchvision's Kinetics-400 R3D-18 weights


@dataclass(frozen=True)
class ModelConfig:
    """The fusion model's shape. Saved beside the weights, so a model dir rebuilds it alone."""

    modalities: tuple[str, ...] = setting(MODALITIES, "encoders built; the others are left out entirely")
    text_model: str = setting("default", "'default' is the offline all-MiniLM-L6-v2; a folder, or 'bert-base-uncased' where "
                                         "the hub is reachable")
    video_weights: str = setting("none", "R3D-18's weights: none (random) | kinetics400 (downloads through torchvision; "
                                         "the default in a SageMaker job) | PATH to a state dict")
    audio_model: str = setting(AUDIO_CNN, f"{AUDIO_CNN} (a small CNN over the log-mel, trained from scratch) | a transformers "
                                          "speech encoder's name or folder (wav2vec 2.0, HuBERT, WavLM, data2vec-audio) over "
                                          "the 16 kHz waveform, mean-pooled")
    video_model: str = setting(VIDEO_R3D, f"{VIDEO_R3D} (torchvision's R3D-18, --video-weights) | a transformers video "
                                          "encoder's name or folder (VideoMAE, TimeSformer): its config and image processor "
                                          "set the frames, size and normalisation")
    freeze: tuple[str, ...] | None = setting(None, "frozen backbones; their projections still train. Unset: video, and "
                                                   "audio with an --audio-model (text fine-tunes)")
    train_top_layers: int | None = setting(None, "fine-tune only the text encoder's top this many layers (0: every layer); "
                                                 "its embeddings and lower layers stay as pretrained and their outputs are "
                                                 f"computed once per split. Unset: {DEFAULT_TOP_LAYERS} of the default MiniLM's 6 "
                                                 "(as good on MELD, 60% of the epoch), every layer of another --text-model")
    embed_dim: int = setting(128, "each modality's embedding; lower it to shrink the fusion layers")
    fusion_dim: int = setting(256, "width of the fusion layer")
    audio_channels: tuple[int, ...] = setting((16, 32, 64, 128), "conv widths of the audio CNN, one block each")
    dropout: float = setting(0.3, "in projections, fusion and heads; raise it when validation loss climbs early")
    feature_norm: bool = setting(True, "LayerNorm on each backbone's features before its projection, so every modality "
                                       "starts at one scale")

    def __post_init__(self) -> None:
        require_finite(self)
        DataConfig(modalities=self.modalities)  # the same modality check, one message
        if self.freeze is None:  # resolved here, so configs saved and compared always hold the list itself
            object.__setattr__(self, "freeze", ("video",) + (() if self.audio_model == AUDIO_CNN else ("audio",)))
        bad = sorted(set(self.freeze) - set(FREEZABLE))
        if bad:
            raise SettingsError(f"cannot freeze {','.join(bad)}: only {','.join(FREEZABLE)} have backbones to freeze")
        if "audio" in self.freeze and self.audio_model == AUDIO_CNN:
            raise SettingsError("cannot freeze audio: the audio CNN starts random and always trains (an --audio-model "
                                "can be frozen)")
        if self.train_top_layers is None:  # resolved here, as freeze is: configs saved hold the number itself
            measured = self.text_model == "default" and "text" in self.modalities and "text" not in self.freeze
            object.__setattr__(self, "train_top_layers", DEFAULT_TOP_LAYERS if measured else 0)
        if self.train_top_layers < 0:
            raise SettingsError(f"train_top_layers must be 0 (every layer) or more, got {self.train_top_layers}")
        if self.train_top_layers and ("text" not in self.modalities or "text" in self.freeze):
            raise SettingsError("train_top_layers fine-tunes the top of the text encoder: it needs text among the "
                                "modalities and not frozen (--freeze without text)")
        if not 0.0 <= self.dropout < 1.0:
            raise SettingsError(f"dropout must lie in [0, 1), got {self.dropout}")
        if self.embed_dim < 1 or self.fusion_dim < 1:
            raise SettingsError(f"embed_dim and fusion_dim must be positive, got {self.embed_dim} and {self.fusion_dim}")
        if not self.audio_channels or min(self.audio_channels) < 1:
            raise SettingsError(f"audio_channels must be one or more positive widths, got "
                                f"{','.join(map(str, self.audio_channels)) or 'none'}")

    def transformers_encoders(self) -> dict[str, str]:
        """The modalities of this model whose encoder is a transformers model: modality -> its name or folder
        (text always; audio and video where another model than the built-in CNN and R3D-18 is named)."""
        names = {"text": self.text_model, "audio": self.audio_model, "video": self.video_model}
        built_in = {"audio": AUDIO_CNN, "video": VIDEO_R3D}
        return {m: name for m, name in names.items() if m in self.modalities and name != built_in.get(m)}

    @property
    def audio_input(self) -> str:
        """What the audio encoder reads: the log-mel (the CNN) or the waveform (a speech encoder)."""
        return "log_mel" if self.audio_model == AUDIO_CNN else "waveform"


SCHEDULERS: tuple[str, ...] = ("cosine", "linear", "plateau", "constant")
CLASS_WEIGHTS: tuple[str, ...] = ("balanced", "sqrt", "none")
AMP_DTYPES: tuple[str, ...] = ("auto", "bf16", "fp16")


@dataclass(frozen=True)
class TrainConfig:
    """How to train. Runtime state (epoch, step, rank) lives in the loop, never here."""

    # 4: on MELD text-only as good a best epoch as 10, a better last one, 2.5x faster (docs/experiments.md).
    epochs: int = setting(4, "passes over the training split; the model dir keeps the epoch with the best validation "
                             "emotion weighted F1")
    batch_size: int = setting(16, "per optimizer step with grad_accum_steps 1; lower it on out-of-memory")
    learning_rate: float = setting(5e-4, "fusion, heads, projections and the audio CNN: all start random")
    encoder_learning_rate: float = setting(3e-5, "pretrained backbones being fine-tuned: lower, or they forget")
    weight_decay: float = setting(0.01, "AdamW's decoupled decay; biases and norms are exempt")
    scheduler: str = setting("cosine", "cosine | linear (after warm-up, to zero) | plateau (halve on a stall) | constant")
    warmup_ratio: float = setting(0.1, "share of optimizer steps spent warming up (cosine, linear, constant)")
    grad_clip: float = setting(1.0, "max gradient norm; 0 turns clipping off")
    label_smoothing: float = setting(0.1, "MELD's labels are noisy: soften the targets a little")
    class_weights: str = setting("sqrt", "inverse class frequency from the CSV labels, square-rooted | balanced (full) | none")
    sentiment_loss_weight: float = setting(0.5, "loss = emotion CE + this x sentiment CE")
    modality_dropout: float = setting(0.3, "chance each present modality of a training item is hidden (never all): the "
                                           "model learns to do without any one, a transcript included")
    modality_dropout_on: tuple[str, ...] = setting(MODALITIES, "the modalities modality dropout may hide; text alone: a "
                                                               "model for clips without transcripts")
    grad_accum_steps: int = setting(1, "micro-batches per optimizer step: batch_size x this is the effective batch")
    amp: bool = setting(False, "mixed precision on CUDA (bf16 where supported, else fp16); no effect on CPU")
    amp_dtype: str = setting("auto", "with --amp: auto (bf16 where the GPU has it, else fp16 with loss scaling) | bf16 | fp16")
    num_workers: int = setting(2, "DataLoader processes decoding clips; raise it when the GPU waits on data")
    group_by_length: bool = setting(True, "batch utterances of about one token length together: far less padding for the "
                                          "text encoder")
    max_train_samples: int | None = setting(None, "train on a random subset this big, for quick experiments")
    early_stopping_patience: int = setting(0, "stop after this many epochs without a better emotion F1; 0: never")
    seed: int = setting(42, "the same seed repeats a run on CPU")
    log_every: int = setting(20, "batches between progress lines when stdout is not a terminal")
    checkpoint_every_steps: int = setting(0, "also checkpoint every this many optimizer steps; 0: at epoch ends (and on "
                                             "SIGTERM) only")
    checkpoint_every_minutes: float | None = setting(
        None, "also checkpoint when this many minutes passed since the last one; default 10 in a SageMaker job (its stop "
        "signal may never reach the script), else 0 (off)")
    # Two while training: the newest and a fallback should it be cut short; a finished run needs only the newest.
    keep_checkpoints: int = setting(2, "newest checkpoints kept while training; a finished run keeps its newest alone "
                                       "unless this is above 2")
    resume: bool = setting(True, "continue from the newest valid checkpoint in the checkpoint folder, if there is one")
    max_bad_steps: int = setting(10, "optimizer steps in a row with a non-finite loss (each skipped) that stop the run")
    dist_timeout_minutes: float | None = setting(None, "under torchrun, how long a training collective waits for every "
                                                       "process (default: torch's, 10 minutes under NCCL); set-up waits such "
                                                       "as the media cache build have 24 hours of their own")
    cache_embeddings: bool = setting(True, "frozen backbones run once per dataset (on the media cache) and their outputs "
                                           "are reused")

    def __post_init__(self) -> None:
        require_finite(self)
        positive = ("epochs", "batch_size", "grad_accum_steps", "log_every", "keep_checkpoints", "max_bad_steps")
        for name in positive:
            if getattr(self, name) < 1:
                raise SettingsError(f"{name} must be at least 1, got {getattr(self, name)}")
        for name in ("learning_rate", "encoder_learning_rate"):
            if not getattr(self, name) > 0:
                raise SettingsError(f"{name} must be positive, got {getattr(self, name)}")
        for name in ("weight_decay", "grad_clip", "sentiment_loss_weight", "early_stopping_patience", "num_workers",
                     "checkpoint_every_steps"):
            if getattr(self, name) < 0:
                raise SettingsError(f"{name} must not be negative, got {getattr(self, name)}")
        if not 0 <= self.warmup_ratio < 1:
            raise SettingsError(f"warmup_ratio must lie in [0, 1), got {self.warmup_ratio}")
        if not 0 <= self.modality_dropout < 1:
            raise SettingsError(f"modality_dropout must lie in [0, 1), got {self.modality_dropout}")
        require_modalities("modality_dropout_on", self.modality_dropout_on)
        if not 0 <= self.label_smoothing < 1:
            raise SettingsError(f"label_smoothing must lie in [0, 1), got {self.label_smoothing}")
        if self.scheduler not in SCHEDULERS:
            raise SettingsError(f"scheduler must be one of {', '.join(SCHEDULERS)}, got {self.scheduler!r}")
        if self.amp_dtype not in AMP_DTYPES:
            raise SettingsError(f"amp_dtype must be one of {', '.join(AMP_DTYPES)}, got {self.amp_dtype!r}")
        if self.class_weights not in CLASS_WEIGHTS:
            raise SettingsError(f"class_weights must be one of {', '.join(CLASS_WEIGHTS)}, got {self.class_weights!r}")
        if self.checkpoint_every_minutes is not None and self.checkpoint_every_minutes < 0:  # NaN, inf: require_finite
            raise SettingsError(f"checkpoint_every_minutes must be a finite number of minutes, 0 or more, got {self.checkpoint_every_minutes}")
        if self.dist_timeout_minutes is not None and not self.dist_timeout_minutes > 0:
            raise SettingsError(f"dist_timeout_minutes must be a positive number of minutes, got {self.dist_timeout_minutes}")
        if self.max_train_samples is not None and self.max_train_samples < 1:
            raise SettingsError(f"max_train_samples must be at least 1, got {self.max_train_samples}")


def from_json(cls: type, values, where: str):
    """`cls` rebuilt from JSON values (lists for tuples), every value checked against the field's type
    first: an unknown key, a null where a value is needed or a value of the wrong type is a SettingsError
    naming `where` and the key. Keys left out take the field's default."""
    if not isinstance(values, dict):
        raise SettingsError(f"{where}: expected an object of settings, got {type(values).__name__}")
    hints = typing.get_type_hints(cls)
    unknown = sorted(set(values) - set(hints))
    if unknown:
        raise SettingsError(f"{where}: unknown setting {', '.join(unknown)} (this version's {cls.__name__} has no such field)")
    return cls(**{name: _typed(value, hints[name], f"{where}.{name}") for name, value in values.items()})


def _typed(value, hint, where: str):
    options = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    if value is None:
        if type(None) in options:
            return None
        raise SettingsError(f"{where}: null, where a value is needed")
    hint = next(option for option in options if option is not type(None))
    if dataclasses.is_dataclass(hint):
        return from_json(hint, value, where)
    if typing.get_origin(hint) is tuple:
        item = typing.get_args(hint)[0]
        if not isinstance(value, (list, tuple)):
            raise SettingsError(f"{where}: expected a list, got {value!r}")
        return tuple(_typed(v, item, where) for v in value)
    fits = {bool: isinstance(value, bool), int: isinstance(value, int) and not isinstance(value, bool),
            float: isinstance(value, (int, float)) and not isinstance(value, bool), str: isinstance(value, str)}[hint]  # fmt: skip
    if not fits:
        raise SettingsError(f"{where}: expected {hint.__name__}, got {value!r}")
    return float(value) if hint is float else value


# Data settings added after model dirs and checkpoints were first written, with the value an older one was
# made with: before context turns, each utterance was read alone. (audio_input's default, the log-mel, is
# what older ones read.)
TEXT_SETTINGS_ADDED: dict[str, object] = {"context_past": 0, "context_future": 0}


def data_config_from_dict(values: dict, where: str = "data") -> DataConfig:
    """Rebuild a DataConfig written as JSON (tuples come back as lists)."""
    if isinstance(values, dict) and isinstance(values.get("text"), dict):
        values = values | {"text": TEXT_SETTINGS_ADDED | values["text"]}
    return from_json(DataConfig, values, where)


# Model settings added after model dirs and checkpoints were first written, with the value that an older
# one (which lacks the key) was trained with, whatever today's default.
MODEL_SETTINGS_ADDED: dict[str, object] = {"feature_norm": False, "audio_model": AUDIO_CNN, "video_model": VIDEO_R3D,
                                           "train_top_layers": 0}


def model_config_from_dict(values: dict, where: str = "model") -> ModelConfig:
    return from_json(ModelConfig, MODEL_SETTINGS_ADDED | values if isinstance(values, dict) else values, where)
