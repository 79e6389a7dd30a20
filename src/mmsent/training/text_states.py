"""The text encoder's frozen lower layers run once per split: their per-token output is stored and fed
to the top layers every epoch (ModelConfig.train_top_layers; model/text_layers.py).

A split's states are its items' real tokens' hidden states after the last frozen layer, float16, the
items one after another (padding is never stored: MELD's utterances use a fifth of max_tokens). With a
media cache they are saved in the split's frozen-output store (mmsent/features.py) under a key of the
lower part's weights and the tokenisation settings (context included), so a later run with the same
ones reads them, and other settings never read stale ones. Without a media cache (text-only runs on
the CSVs) they are computed once per run and kept in memory. Evaluate, predict and serve run the whole
encoder: only training (with its validation) reads stored states.
"""

from __future__ import annotations

from dataclasses import asdict

import numpy as np
import torch

from mmsent.config import DataConfig
from mmsent.data.dataset import MeldDataset, pad_text_states
from mmsent.features import TEXT_STATES, store_key, store_path
from mmsent.model.encoders import TextEncoder
from mmsent.model.fusion import MultimodalSentimentModel
from mmsent.model.text_layers import check_cut
from mmsent.training.distributed import DistInfo
from mmsent.training.embeddings import stored_once

BATCH_SIZE = 64  # utterances per forward of the lower layers, sorted by length (little padding)
# How far the top layers on float16 states may stray from the whole encoder, relative to its largest pooled
# feature: MiniLM's stray 3e-4 (float16 keeps 11 bits); a cut that is not the model's strays by whole units.
CUT_TOLERANCE = 1e-2


def attach_text_states(model: MultimodalSentimentModel, datasets: dict[str, MeldDataset], data_cfg: DataConfig,
                       device: torch.device, dist: DistInfo, say=print) -> int:
    """Give each dataset the lower layers' stored output; return its bytes over all splits (0: nothing
    attached, every layer trains)."""
    encoder = model.encoders["text"] if "text" in model.encoders else None
    if encoder is None or not encoder.cut:
        return 0
    check_cut_on(encoder, next(iter(datasets.values())), device)
    key = store_key(encoder.lower_state_dict().items(),
                    {**asdict(data_cfg.text), "model": model.cfg.text_model, "cut": encoder.cut, "stored": "float16"})  # fmt: skip
    total = 0
    for split, dataset in datasets.items():
        if dataset.media_cache is None:
            states = compute_states(encoder, dataset.tokens, device)
        else:
            path = store_path(dataset.media_cache.folder, TEXT_STATES, key)
            states = stored_once(path, lambda: compute_states(encoder, dataset.tokens, device), dist,
                                 lambda: say(f"computing the text encoder's lower {encoder.cut} layers' outputs for "
                                             f"{split} once: {path}"))  # fmt: skip
        dataset.use_text_states(states)
        total += states.nbytes
    return total


@torch.no_grad()
def compute_states(encoder: TextEncoder, tokens: dict[str, torch.Tensor], device: torch.device) -> np.ndarray:
    """(real tokens of every item, hidden) float16: each item's rows in item order."""
    lengths = tokens["attention_mask"].sum(dim=1)
    starts = torch.cat([torch.zeros(1, dtype=torch.long), lengths.cumsum(0)]).tolist()
    states = np.empty((starts[-1], encoder.backbone.config.hidden_size), dtype=np.float16)
    for chunk in torch.argsort(lengths, stable=True).split(BATCH_SIZE):
        width = int(lengths[chunk].max())
        hidden = encoder.lower_states(tokens["input_ids"][chunk, :width].to(device),
                                      tokens["attention_mask"][chunk, :width].to(device)).float().cpu().numpy()  # fmt: skip
        for row, item in enumerate(chunk.tolist()):
            states[starts[item] : starts[item + 1]] = hidden[row, : starts[item + 1] - starts[item]]
    return states


@torch.no_grad()
def check_cut_on(encoder: TextEncoder, dataset: MeldDataset, device: torch.device, items: int = 8) -> None:
    """The top layers on float16 stored states give the whole encoder's pooled output for a few of the
    dataset's items (eval mode): else this model cannot be cut (model/text_layers.py)."""
    tokens = {name: column[:items] for name, column in dataset.tokens.items()}
    lengths = tokens["attention_mask"].sum(dim=1)
    width = int(lengths.max())
    tokens = {name: column[:, :width] for name, column in tokens.items()}
    stored = torch.from_numpy(compute_states(encoder, tokens, device).astype(np.float32))
    padded = pad_text_states(stored.split(lengths.tolist()), width)
    on_device = {name: column.to(device) for name, column in tokens.items()}
    was_training = encoder.training
    encoder.eval()
    try:
        whole = encoder.features(**on_device)
        from_states = encoder.features(**on_device, lower_states=padded.to(device))
    finally:
        encoder.train(was_training)
    check_cut(whole.float(), from_states.float(), encoder.source, CUT_TOLERANCE)
