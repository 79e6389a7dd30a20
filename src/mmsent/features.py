"""The frozen-feature store: a frozen backbone's outputs for a split, kept beside its media cache.

One place for what the store is: the batch key an item carries them under (`batch_key`), the file
they live in (`store_path`: `<cache>/<split>/embeddings/<modality>-<key>.npy`, float32), and the key
that names them (`store_key`: a digest of the backbone's weights and of how its input is made, so
other weights or decode settings never read stale outputs). Rebuilding a split of the media cache
deletes its store with it. training/embeddings.py computes what goes in. A top-level module, as
labels.py is: the model, the data side and training all speak of the batch key.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch

from mmsent.files import write_atomic

STORE_FOLDER = "embeddings"  # inside each split's media-cache folder


# What an item and a batch call the text encoder's hidden states after its frozen lower layers
# (ModelConfig.train_top_layers): stored per token, not pooled, so they live in their own store
# (training/text_states.py), float16, each item's real tokens one after another.
TEXT_STATES = "text_states"


def batch_key(modality: str) -> str:
    """What an item and a batch call a modality's precomputed backbone output."""
    return f"{modality}_features"


def tensors_digest(named_tensors: Iterable[tuple[str, torch.Tensor]], extra: bytes = b"") -> str:
    """SHA-256 over (name, bytes) of each tensor, then `extra`: proves weights came back the same."""
    digest = hashlib.sha256()
    for name, tensor in named_tensors:
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().reshape(-1).contiguous().view(torch.uint8).numpy().tobytes())
    digest.update(extra)
    return digest.hexdigest()


def store_key(backbone_state: Iterable[tuple[str, torch.Tensor]], made_by: dict) -> str:
    """What the outputs depend on: the backbone's weights and buffers, and how its input is made."""
    return tensors_digest(backbone_state, json.dumps(made_by, sort_keys=True).encode())


def store_path(split_folder: Path, modality: str, key: str) -> Path:
    return Path(split_folder) / STORE_FOLDER / f"{modality}-{key[:24]}.npy"


def save_features(path: Path, features: np.ndarray) -> None:
    path.parent.mkdir(exist_ok=True)

    def write(temporary: str) -> None:
        with open(temporary, "wb") as handle:  # a handle, so np.save does not append .npy to the temporary name
            np.save(handle, features)

    write_atomic(path, write)


def load_features(path: Path) -> np.ndarray:
    return np.load(path, mmap_mode="r")
