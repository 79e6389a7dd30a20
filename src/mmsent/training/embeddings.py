"""Frozen backbones run once per dataset: their outputs are cached and served in place of the input.

A frozen backbone (R3D-18 by default; the text encoder with `--freeze text`) gives the same output
for the same input every epoch, so running it every epoch is waste: on CPU it costs more than all
the trainable layers together. With a media cache, each split's outputs are computed once and
saved beside it (`<cache>/<split>/embeddings/<modality>-<key>.npy`, float32); later epochs and
later runs read them. The key covers the backbone's weights, the decode settings and, for text,
the tokenizer settings, so changing any of them computes new ones; rebuilding a split of the
media cache deletes its embeddings with it. Without a media cache, frozen text outputs are still
computed once per run, in memory (text needs no clips).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict

import numpy as np
import torch
from torch.utils.data import DataLoader

from mmsent.config import DataConfig
from mmsent.data.dataset import MeldDataset, collate
from mmsent.model.fusion import INPUTS, MultimodalSentimentModel
from mmsent.model_dir import write_atomic
from mmsent.training import distributed
from mmsent.training.distributed import DistInfo
from mmsent.training.validate import to_device


def attach_frozen_features(model: MultimodalSentimentModel, datasets: dict[str, MeldDataset], data_cfg: DataConfig,
                           batch_size: int, device: torch.device, dist: DistInfo, say=print) -> list[str]:
    """Give each dataset its frozen backbones' outputs; return the modalities served that way."""
    served = []
    for modality in [m for m in model.cfg.freeze if m in model.encoders]:
        key = _key(model, modality, data_cfg)
        for split, dataset in datasets.items():
            if dataset.media_cache is None:
                if modality != "text":
                    break  # video features need the media cache (presence and issues come from it)
                dataset.use_features(modality, _compute(model, modality, dataset, batch_size, device))
                continue
            path = dataset.media_cache.folder / "embeddings" / f"{modality}-{key[:24]}.npy"
            if not path.is_file() and dist.local_rank == 0:
                say(f"computing the frozen {modality} backbone's outputs for {split} once: {path}")
                features = _compute(model, modality, dataset, batch_size, device)
                path.parent.mkdir(exist_ok=True)
                write_atomic(path, lambda temporary: _save(temporary, features))
            distributed.barrier(dist)
            dataset.use_features(modality, np.load(path, mmap_mode="r"))
        else:
            served.append(modality)
    return served


@torch.no_grad()
def _compute(model: MultimodalSentimentModel, modality: str, dataset: MeldDataset, batch_size: int,
             device: torch.device) -> np.ndarray:
    encoder = model.encoders[modality]
    was_training = encoder.training
    encoder.eval()
    inputs = INPUTS[modality][0]
    # Its own generator: a loader without one draws from the global RNG, which would shift every
    # dropout mask after it and make cached and uncached runs differ.
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate, generator=torch.Generator().manual_seed(0))
    chunks = []
    for batch in loader:
        batch = to_device(batch, device)
        chunks.append(encoder.features(*(batch[name] for name in inputs)).float().cpu().numpy())
    encoder.train(was_training)
    return np.concatenate(chunks)


def _key(model: MultimodalSentimentModel, modality: str, data_cfg: DataConfig) -> str:
    """What the outputs depend on: the backbone's weights and buffers, and how its input is made."""
    digest = hashlib.sha256()
    for name, tensor in model.encoders[modality].backbone.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().reshape(-1).contiguous().view(torch.uint8).numpy().tobytes())
    made_by = asdict(data_cfg.media) if modality == "video" else {**asdict(data_cfg.text), "model": model.cfg.text_model}
    digest.update(json.dumps(made_by, sort_keys=True).encode())
    return digest.hexdigest()


def _save(path: str, features: np.ndarray) -> None:
    with open(path, "wb") as handle:  # a handle, so np.save does not append .npy to the temporary name
        np.save(handle, features)

