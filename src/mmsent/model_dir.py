"""The model dir: everything needed to use a trained model alone, and nothing that needs training code.

    model.pth       the state dict (read back with torch.load(weights_only=True))
    config.json     ModelConfig + DataConfig: rebuilds the model and its preprocessing; TrainConfig: how it was trained
    labels.json     the label maps, index order = the heads' output order
    text/           the text encoder's architecture config and tokenizer (weights are in model.pth)
    audio/, video/  likewise, for a transformers speech or video encoder: its config and processor
Training adds metrics.json, the figures and README.md (a model card: training/model_card.py) beside these.
"""

from __future__ import annotations

import functools
import json
import os
import pickle
import shutil
import tempfile
from dataclasses import asdict, replace
from pathlib import Path

import torch

from mmsent import __version__
from mmsent.config import DataConfig, ModelConfig, data_config_from_dict, model_config_from_dict
from mmsent.files import save_torch_atomic, write_json_atomic
from mmsent.labels import label_maps
from mmsent.errors import MmsentError, SettingsError
from mmsent.pretrained import save_processor

FORMAT_VERSION = 2  # 2: text has a presence mask like video and audio (a fusion input more)
WEIGHTS = "model.pth"
CONFIG = "config.json"
LABELS = "labels.json"
TEXT = "text"
ENCODER_FOLDERS = {"audio": "audio", "video": "video"}  # a transformers audio or video encoder's config and processor
ENCODER_FILES = (TEXT, *ENCODER_FOLDERS.values())  # the folders that rebuild the encoders (what an archive must carry)
METRICS = "metrics.json"  # written by training: the best epoch's validation and test metrics
CARD = "README.md"  # written by training: the model card (training/model_card.py)
# Training's account of the weights (training/run_outputs.py): removed whenever new weights are saved.
RESULTS = (METRICS, CARD, "confusion_emotion.png", "confusion_sentiment.png", "training_curves.png")


class ModelDirError(MmsentError, ValueError):
    """A folder that is not a usable model dir; the message says what is missing or wrong."""


def save_model_dir(folder: Path, model: torch.nn.Module, data_cfg: DataConfig, model_cfg: ModelConfig,
                   tokenizer=None, state: dict | None = None, train_cfg=None) -> None:
    """Write weights, configs and labels; each file atomically, so a crash never leaves half a file.
    `state` replaces entries of the model's own state dict (the best epoch's weights, kept aside);
    `train_cfg` (a TrainConfig) is recorded in config.json as how the weights were trained."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    # New weights make whatever described other weights wrong: an earlier run's results (written again
    # when this run ends) and encoder folders of another model (a reused --model-dir) never stay beside them.
    for name in RESULTS:
        (folder / name).unlink(missing_ok=True)
    writers = {TEXT: functools.partial(_save_text, model, tokenizer)} if "text" in model.encoders else {}
    for modality, name in _media_encoders(model_cfg).items():
        writers[ENCODER_FOLDERS[modality]] = functools.partial(save_processor, modality, name)
    for name in ENCODER_FILES:
        if name in writers:
            _replace_folder(folder / name, writers[name])
        else:
            shutil.rmtree(folder / name, ignore_errors=True)
    config = {"format_version": FORMAT_VERSION, "mmsent_version": __version__,
              "model": asdict(model_cfg), "data": asdict(data_cfg)}  # fmt: skip
    if train_cfg is not None:
        config["train"] = asdict(train_cfg)
    write_json_atomic(folder / CONFIG, config)
    write_json_atomic(folder / LABELS, label_maps())
    weights = {k: v.detach().cpu() for k, v in model.state_dict().items()} | (state or {})
    save_torch_atomic(folder / WEIGHTS, weights)


def load_model_dir(folder: Path, device: torch.device | str = "cpu"):
    """(model in eval mode, DataConfig, tokenizer or None), rebuilt from the folder alone, offline."""
    folder = Path(folder)
    for name in (WEIGHTS, CONFIG):
        if not (folder / name).is_file():
            raise ModelDirError(f"{folder}: no {name}; a model dir holds {WEIGHTS}, {CONFIG} and {LABELS}")
    try:
        config = json.loads((folder / CONFIG).read_text(encoding="utf-8"))
    except (ValueError, OSError) as problem:  # not JSON, not UTF-8, unreadable
        raise ModelDirError(f"{folder / CONFIG}: unreadable ({str(problem).splitlines()[0]})") from None
    if not isinstance(config, dict):
        raise ModelDirError(f"{folder / CONFIG}: holds a JSON {type(config).__name__}, not a model dir's settings object")
    if config.get("format_version") != FORMAT_VERSION:
        raise ModelDirError(f"{folder / CONFIG}: format_version {config.get('format_version')!r}, expected {FORMAT_VERSION} "
                            f"(written by mmsent {config.get('mmsent_version', '?')}: load it with that version, or retrain)")
    for section in ("model", "data"):
        if section not in config:
            raise ModelDirError(f"{folder / CONFIG}: no {section!r} settings; it is not a model dir's config.json")
    try:
        model_cfg = model_config_from_dict(config["model"], f"{folder / CONFIG}: model")
        data_cfg = data_config_from_dict(config["data"], f"{folder / CONFIG}: data")
    except SettingsError as problem:  # an unknown key, a null, a wrong type, a value out of range
        message = str(problem)
        raise ModelDirError(message if str(folder) in message else f"{folder / CONFIG}: {message}") from None
    labels = json.loads((folder / LABELS).read_text(encoding="utf-8")) if (folder / LABELS).is_file() else None
    if labels is not None and labels != label_maps():
        raise ModelDirError(f"{folder / LABELS}: label maps differ from this version's {label_maps()}")

    from mmsent.model.fusion import MultimodalSentimentModel
    from mmsent.pretrained import load_tokenizer

    tokenizer = None
    if "text" in model_cfg.modalities:
        model_cfg = replace(model_cfg, text_model=str(folder / TEXT))
        tokenizer = load_tokenizer(str(folder / TEXT))
    for modality in _media_encoders(model_cfg):
        own = folder / ENCODER_FOLDERS[modality]
        if not (own / "config.json").is_file():
            raise ModelDirError(f"{folder}: no {ENCODER_FOLDERS[modality]}/config.json for its {modality} encoder")
        model_cfg = replace(model_cfg, **{f"{modality}_model": str(own)})
    model = MultimodalSentimentModel(model_cfg, pretrained=False)
    try:
        # weights_only: tensors and plain containers only; a pickle that would run code is refused.
        state = torch.load(folder / WEIGHTS, map_location="cpu", weights_only=True)
        if not isinstance(state, dict):
            raise ModelDirError(f"{folder / WEIGHTS}: holds a {type(state).__name__}, not a state dict (a mapping of "
                                "parameter names to tensors)")  # fmt: skip
        model.load_state_dict(state)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError) as error:
        raise ModelDirError(f"{folder / WEIGHTS}: not a loadable state dict for this config ({str(error).splitlines()[0]})") from error
    return model.to(device).eval(), data_cfg, tokenizer


def _save_text(model: torch.nn.Module, tokenizer, destination: Path) -> None:
    model.encoders["text"].backbone.config.save_pretrained(destination)
    if tokenizer is not None:
        tokenizer.save_pretrained(destination)


def _replace_folder(path: Path, write) -> None:
    """`write(folder)` into a new folder beside `path`, then swapped in: `path` is the old folder or
    the whole new one, never a mix of both."""
    new = Path(tempfile.mkdtemp(prefix=f".{path.name}.new-", dir=path.parent))
    old = path.parent / f".{path.name}.old-{new.name.rsplit('-', 1)[-1]}"
    try:
        write(new)
        if path.exists():
            os.rename(path, old)
        try:
            os.rename(new, path)
        except OSError:
            if old.exists():
                os.rename(old, path)  # the old folder back in place
            raise
    finally:
        shutil.rmtree(new, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)


def _media_encoders(model_cfg: ModelConfig) -> dict[str, str]:
    """The model's transformers audio and video encoders (text has its own folder and tokenizer)."""
    return {m: name for m, name in model_cfg.transformers_encoders().items() if m in ENCODER_FOLDERS}
