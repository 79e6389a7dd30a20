"""One encoder per modality, each a backbone plus a projection to the shared embedding size."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from mmsent.pretrained import load_text_backbone


def _projection(in_features: int, out_features: int, dropout: float, norm: bool) -> nn.Sequential:
    """Features -> embedding. With `norm`, a LayerNorm first: the backbones' features differ in scale
    (across the sample's clips a frozen random R3D-18's vary by about 0.05 per dimension, MiniLM's by
    0.22, the new audio CNN's by 0.10), and unnormalised the small ones barely move the fusion layer
    in a short run."""
    layers = [nn.LayerNorm(in_features)] if norm else []
    return nn.Sequential(*layers, nn.Linear(in_features, out_features), nn.ReLU(), nn.Dropout(dropout))


class TextEncoder(nn.Module):
    """A transformers encoder, mean-pooled (as sentence-transformers trains MiniLM) over the target
    utterance's tokens: all real tokens without context turns, its own span with them (data/text_inputs.py)."""

    def __init__(self, source: str, embed_dim: int, dropout: float, norm: bool, pretrained: bool = True) -> None:
        super().__init__()
        self.backbone = load_text_backbone(source, pretrained)
        self.projection = _projection(self.backbone.config.hidden_size, embed_dim, dropout, norm)

    def features(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, target_mask: torch.Tensor) -> torch.Tensor:
        """The backbone's output, mean-pooled over the target: what a frozen text backbone's cache holds."""
        hidden = self.backbone(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        mask = target_mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, target_mask: torch.Tensor) -> torch.Tensor:
        return self.projection(self.features(input_ids, attention_mask, target_mask))


class VideoEncoder(nn.Module):
    """torchvision's R3D-18 without its classifier: (B, 3, T, H, W) -> 512 features -> projection."""

    def __init__(self, weights: str, embed_dim: int, dropout: float, norm: bool) -> None:
        super().__init__()
        from torchvision.models.video import R3D_18_Weights, r3d_18

        if weights == "kinetics400":
            self.backbone = r3d_18(weights=R3D_18_Weights.KINETICS400_V1)
        else:
            self.backbone = r3d_18(weights=None)
            if weights != "none":
                state = torch.load(Path(weights), map_location="cpu", weights_only=True)
                self.backbone.load_state_dict(state)
        features = self.backbone.fc.in_features
        self.backbone.fc = nn.Identity()
        self.projection = _projection(features, embed_dim, dropout, norm)

    def features(self, frames: torch.Tensor) -> torch.Tensor:
        return self.backbone(frames)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        return self.projection(self.features(frames))


class AudioEncoder(nn.Module):
    """A small CNN over the log-mel spectrogram: (B, n_mels, time) -> projection. Starts random."""

    def __init__(self, channels: tuple[int, ...], embed_dim: int, dropout: float, norm: bool) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.BatchNorm2d(1)]  # decibels span ~100: learn the input scale
        previous = 1
        for block, width in enumerate(channels):
            # The first block strides by 2: mel frames 10 ms apart are far finer than pitch and
            # energy patterns need, and full resolution would cost 7x the compute.
            stride = 2 if block == 0 else 1
            layers += [nn.Conv2d(previous, width, 3, stride=stride, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
                       nn.MaxPool2d(2)]  # fmt: skip
            previous = width
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        self.backbone = nn.Sequential(*layers)
        self.projection = _projection(previous, embed_dim, dropout, norm)

    def features(self, log_mel: torch.Tensor) -> torch.Tensor:
        return self.backbone(log_mel.unsqueeze(1))

    def forward(self, log_mel: torch.Tensor) -> torch.Tensor:
        return self.projection(self.features(log_mel))
