"""Frozen backbones run once per dataset: their outputs are cached and served in place of the input.

A frozen backbone (R3D-18 by default; an --audio-model or --video-model; the text encoder with
`--freeze text`) gives the same output
for the same input every epoch, so running it every epoch is waste: on CPU it costs more than all
the trainable layers together. With a media cache, each split's outputs are computed once and
saved in its frozen-feature store (mmsent/features.py: where, under which key); later epochs and
later runs read them. Without a media cache, frozen text outputs are still
computed once per run, in memory (text needs no clips).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from mmsent.config import DataConfig
from mmsent.data.dataset import MeldDataset
from mmsent.features import load_features, save_features, store_key, store_path
from mmsent.config import VIDEO_R3D
from mmsent.model.fusion import MultimodalSentimentModel
from mmsent.training import distributed
from mmsent.training.distributed import DistInfo
from mmsent.model.fusion import to_device


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
                    break  # video and audio features need the media cache (presence and issues come from it)
                dataset.use_features(modality, _compute(model, modality, loader(dataset), device))
                continue
            path = store_path(dataset.media_cache.folder, modality, key)
            dataset.use_features(modality, stored_once(path, lambda: _compute(model, modality, loader(dataset), device),
                                                       dist, lambda: say(f"computing the frozen {modality} backbone's "
                                                                         f"outputs for {split} once: {path}")))  # fmt: skip
        else:
            served.append(modality)
    return served


def stored_once(path: Path, compute: Callable[[], np.ndarray], dist: DistInfo, announce: Callable[[], None]) -> np.ndarray:
    """The array at `path` in a frozen-output store, memory-mapped: computed and saved first by one process
    per machine (local rank 0, after `announce()`) where it is not there yet, while the others wait."""
    if not path.is_file() and dist.local_rank == 0:
        announce()
        save_features(path, compute())
    distributed.setup_barrier(dist)  # however long local rank 0 computes: outside the training group
    return load_features(path)


@torch.no_grad()
def _compute(model: MultimodalSentimentModel, modality: str, batches: Iterable[dict], device: torch.device) -> np.ndarray:
    encoder = model.encoders[modality]
    was_training = encoder.training
    encoder.eval()
    chunks = []
    for batch in batches:
        batch = to_device(batch, device)
        chunks.append(encoder.features(*(batch[name] for name in encoder.inputs)).float().cpu().numpy())
    encoder.train(was_training)
    return np.concatenate(chunks)


def _key(model: MultimodalSentimentModel, modality: str, data_cfg: DataConfig) -> str:
    """Weights and how the input is made; a transformers encoder's name too (its processor's settings)."""
    cfg = model.cfg
    if modality == "text":
        made_by = {**asdict(data_cfg.text), "model": cfg.text_model}
    elif modality == "video":  # R3D-18's key as it always was, so stores written before encoders were choosable still serve
        made_by = asdict(data_cfg.media) | ({} if cfg.video_model == VIDEO_R3D else {"model": cfg.video_model})
    else:
        made_by = asdict(data_cfg.media) | {"model": cfg.audio_model}
    return store_key(model.encoders[modality].backbone.state_dict().items(), made_by)
