"""A transformers text encoder cut in two: the lower layers run once, the top ones every step.

With `ModelConfig.train_top_layers` K, the encoder's embeddings and lower layers are frozen (in eval mode:
no dropout, so their output for an utterance never changes) and only the top K layers train. Their
input, the hidden states after the last frozen layer, can then be computed once per split
(training/text_states.py) and fed straight to the top layers.

The cut works on the model's own forward: for the lower part, the model runs with its layer list
shortened to the lower layers; for the top part, with the list shortened to the top layers and the first
of them handed the stored hidden states in place of what the embeddings made. Masks, position and
relative-position terms are still built by the model's own code from input_ids and attention_mask,
whatever its family. A model where that does not give the whole encoder's output (a norm between the
layers and the output, shared layers) is caught by `check_cut` before training starts.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

from mmsent.errors import SettingsError


@dataclass(frozen=True)
class LayerStack:
    """Where a backbone keeps its layers: `getattr(owner, attribute)` is the nn.ModuleList of them."""

    owner: nn.Module
    attribute: str
    path: str  # the list's name in the backbone's state dict ("encoder.layer" in BERT)

    @property
    def layers(self) -> nn.ModuleList:
        return getattr(self.owner, self.attribute)


def layer_stack(backbone: nn.Module, source: str) -> LayerStack:
    """The backbone's one list of `num_hidden_layers` layers (BERT's and RoBERTa's encoder.layer,
    DistilBERT's transformer.layer, ...)."""
    depth = getattr(backbone.config, "num_hidden_layers", None)
    found = [(name, module) for name, module in backbone.named_modules()
             if isinstance(module, nn.ModuleList) and len(module) == depth]  # fmt: skip
    if depth is None or len(found) != 1:
        raise SettingsError(f"--train-top-layers: the text model {source} ({type(backbone).__name__}) has no single list of "
                            f"its {depth} layers to cut; train every layer (--train-top-layers 0)")  # fmt: skip
    path = found[0][0]
    owner_path, _, attribute = path.rpartition(".")
    return LayerStack(backbone.get_submodule(owner_path), attribute, path)


@contextmanager
def running_layers(stack: LayerStack, layers: slice, hidden_states: torch.Tensor | None = None) -> Iterator[None]:
    """The backbone's forward runs only `layers` while inside; with `hidden_states`, the first of them
    takes those as its input instead of the embeddings' output (or the layer before's)."""
    whole = stack.layers
    kept = nn.ModuleList(list(whole)[layers])
    hook = None
    if hidden_states is not None:
        def replace_input(module, args, kwargs):
            if "hidden_states" in kwargs:
                return args, kwargs | {"hidden_states": hidden_states}
            return (hidden_states, *args[1:]), kwargs

        hook = kept[0].register_forward_pre_hook(replace_input, with_kwargs=True)
    setattr(stack.owner, stack.attribute, kept)
    try:
        yield
    finally:
        setattr(stack.owner, stack.attribute, whole)
        if hook is not None:
            hook.remove()


def check_cut(whole: torch.Tensor, from_states: torch.Tensor, source: str, tolerance: float) -> None:
    """The top layers on stored hidden states give what the whole encoder gives (pooled features of one
    batch, eval mode), within `tolerance` of the largest feature: else the cut is not this model's."""
    scale = float(whole.abs().max().clamp(min=1e-6))
    error = float((whole - from_states).abs().max()) / scale
    if not error <= tolerance:
        raise SettingsError(f"--train-top-layers: the text model {source} does not give its own output when its top layers "
                            f"run on the stored hidden states (relative difference {error:.3g}, over {tolerance}); "
                            f"train every layer (--train-top-layers 0)")  # fmt: skip
