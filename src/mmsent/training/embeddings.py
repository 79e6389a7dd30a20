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

import json
from collections.abc import Callable, Iterable
from dataclasses import asdict

import numpy as np
import torch

from mmsent.config import DataConfig
from mmsent.data.dataset import MeldDataset
from mmsent.model.fusion import INPUTS, MultimodalSentimentModel
from mmsent.files import write_atomic
from mmsent.training import distributed
from mmsent.training.checkpoint import tensors_digest
from mmsent.training.distributed import DistInfo
from mmsent.training.validate import to_device


def attach_frozen_features(model: MultimodalSentimentModel, datasets: dict[str, MeldDataset], data_cfg: DataConfig,
                           loader: Callable[[MeldDataset], Iterable[dict]], device: torch.device, dist: DistInfo,
                           say=print) -> list[str]:
    """Give each dataset its frozen backbones' outputs; return the modalities served that way.
    `loader` batches a dataset in order (training's own loader settings)."""
    served = []
    for modality in [m for m in model.cfg.freeze if m in model.encoders]:
        key = _key(model, modality, data_cfg)
        for split, dataset in datasets.items():
            if dataset.media_cache is None:
                if modality != "text":
                    break  # video features need the media cache (presence and issues come from it)
                dataset.use_features(modality, _compute(model, modality, loader(dataset), device))
                continue
            path = dataset.media_cache.folder / "embeddings" / f"{modality}-{key[:24]}.npy"
            if not path.is_file() and dist.local_rank == 0:
                say(f"computing the frozen {modality} backbone's outputs for {split} once: {path}")
                features = _compute(model, modality, loader(dataset), device)
                path.parent.mkdir(exist_ok=True)
                write_atomic(path, lambda temporary: _save(temporary, features))
            distributed.barrier(dist)
            dataset.use_features(modality, np.load(path, mmap_mode="r"))
        else:
            served.append(modality)
    return served


@torch.no_grad()
def _compute(model: MultimodalSentimentModel, modality: str, batches: Iterable[dict], device: torch.device) -> np.ndarray:
    encoder = model.encoders[modality]
    was_training = encoder.training
    encoder.eval()
    inputs = INPUTS[modality][0]
    chunks = []
    for batch in batches:
        batch = to_device(batch, device)
        chunks.append(encoder.features(*(batch[name] for name in inputs)).float().cpu().numpy())
    encoder.train(was_training)
    return np.concatenate(chunks)


def _key(model: MultimodalSentimentModel, modality: str, data_cfg: DataConfig) -> str:
    """What the outputs depend on: the backbone's weights and buffers, and how its input is made."""
    made_by = asdict(data_cfg.media) if modality == "video" else {**asdict(data_cfg.text), "model": model.cfg.text_model}
    return tensors_digest(model.encoders[modality].backbone.state_dict().items(), json.dumps(made_by, sort_keys=True).encode())


def _save(path: str, features: np.ndarray) -> None:
    with open(path, "wb") as handle:  # a handle, so np.save does not append .npy to the temporary name
        np.save(handle, features)

