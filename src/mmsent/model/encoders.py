"""One encoder per modality, each a backbone plus a projection to the shared embedding size."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from mmsent.data.media import VIDEO_MEAN, VIDEO_STD
from mmsent.errors import SettingsError
from mmsent.features import TEXT_STATES
from mmsent.model.text_layers import layer_stack, running_layers
from mmsent.pretrained import describe, load_backbone


def _projection(in_features: int, out_features: int, dropout: float, norm: bool) -> nn.Sequential:
    """Features -> embedding. With `norm`, a LayerNorm first: the backbones' features differ in scale
    (across the sample's clips a frozen random R3D-18's vary by about 0.05 per dimension, MiniLM's by
    0.22, the new audio CNN's by 0.10), and unnormalised the small ones barely move the fusion layer
    in a short run."""
    layers = [nn.LayerNorm(in_features)] if norm else []
    return nn.Sequential(*layers, nn.Linear(in_features, out_features), nn.ReLU(), nn.Dropout(dropout))


class TextEncoder(nn.Module):
    """A transformers encoder, mean-pooled (as sentence-transformers trains MiniLM) over the target
    utterance's tokens: all real tokens without context turns, its own span with them (data/text_inputs.py).

    With `train_top_layers` K, only the top K layers train (model/text_layers.py): the embeddings and the
    layers below stay frozen in eval mode, and a batch may carry their output (TEXT_STATES) instead of
    having them run."""

    inputs = ("input_ids", "attention_mask", "target_mask")  # the batch keys `features` takes, in order
    optional_inputs = (TEXT_STATES,)  # taken after them where the batch has it

    def __init__(self, source: str, embed_dim: int, dropout: float, norm: bool, pretrained: bool = True,
                 train_top_layers: int = 0) -> None:  # fmt: skip
        super().__init__()
        self.source = source
        self.backbone = load_backbone(source, pretrained)
        self.projection = _projection(self.backbone.config.hidden_size, embed_dim, dropout, norm)
        self.cut = 0  # the frozen lower layers: 0 while every layer trains
        if train_top_layers:  # 0: every layer
            self.stack = layer_stack(self.backbone, source)
            depth = len(self.stack.layers)
            if train_top_layers > depth:
                raise SettingsError(f"train_top_layers {train_top_layers}: the text model {source} has {depth} layers")
            self.cut = depth - train_top_layers
        if self.cut:
            self.backbone.requires_grad_(False)
            self.top_layers().requires_grad_(True)

    def top_layers(self) -> nn.ModuleList:
        return nn.ModuleList(list(self.stack.layers)[self.cut :])

    def train(self, mode: bool = True) -> "TextEncoder":
        super().train(mode)
        if self.cut:  # frozen means frozen: the embeddings' and lower layers' dropout off, so their output is fixed
            self.backbone.eval()
            self.top_layers().train(mode)
        return self

    def lower_state_dict(self) -> dict[str, torch.Tensor]:
        """The weights and buffers the lower part's output depends on: all but the top layers' (what
        keys the stored hidden states)."""
        top = tuple(f"{self.stack.path}.{i}." for i in range(self.cut, len(self.stack.layers)))
        return {name: value for name, value in self.backbone.state_dict().items() if not name.startswith(top)}

    def lower_states(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """The hidden states after the last frozen layer, (B, tokens, hidden): what the top layers take."""
        with running_layers(self.stack, slice(0, self.cut)):
            return self.backbone(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

    def features(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, target_mask: torch.Tensor,
                 lower_states: torch.Tensor | None = None) -> torch.Tensor:  # fmt: skip
        """The backbone's output, mean-pooled over the target: what a frozen text backbone's cache holds.
        With `lower_states`, only the top layers run, on them."""
        if lower_states is None:
            hidden = self.backbone(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        else:
            with running_layers(self.stack, slice(self.cut, None), lower_states):
                hidden = self.backbone(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        mask = target_mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, target_mask: torch.Tensor) -> torch.Tensor:
        return self.projection(self.features(input_ids, attention_mask, target_mask))


class VideoEncoder(nn.Module):
    """torchvision's R3D-18 without its classifier: (B, 3, T, H, W) -> 512 features -> projection."""

    inputs = ("frames",)

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

    inputs = ("log_mel",)

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


class SpeechEncoder(nn.Module):
    """A transformers speech encoder (wav2vec 2.0, HuBERT, WavLM, data2vec-audio) over the 16 kHz waveform,
    mean-pooled over the frames of the clip's real samples (the zero padding to audio_seconds left out)."""

    inputs = ("waveform", "waveform_length")

    def __init__(self, source: str, embed_dim: int, dropout: float, norm: bool, pretrained: bool = True) -> None:
        super().__init__()
        processor = describe("audio", source).processor
        self.normalize = processor["normalize"]
        self.attention_mask = processor["attention_mask"]
        self.backbone = load_backbone(source, pretrained)
        self.projection = _projection(self.backbone.config.hidden_size, embed_dim, dropout, norm)

    def features(self, waveform: torch.Tensor, length: torch.Tensor) -> torch.Tensor:
        samples = torch.arange(waveform.shape[1], device=waveform.device)
        real = samples.unsqueeze(0) < length.clamp(min=1).unsqueeze(1)  # (B, samples)
        if self.normalize:
            # What the model's feature extractor does to each clip (Wav2Vec2FeatureExtractor.zero_mean_unit_var_norm):
            # zero mean, unit variance over its real samples, 1e-7 under the root; the padding stays 0.
            count = real.sum(dim=1, keepdim=True)
            mean = (waveform * real).sum(dim=1, keepdim=True) / count
            variance = (((waveform - mean) * real) ** 2).sum(dim=1, keepdim=True) / count
            waveform = torch.where(real, (waveform - mean) / torch.sqrt(variance + 1e-7), 0.0)
        # Models whose extractor returns an attention mask (layer-norm feature encoders) are given it; the
        # others (group-norm, wav2vec2-base's kind) were trained on zero-padded batches without one.
        mask = real.long() if self.attention_mask else None
        hidden = self.backbone(input_values=waveform, attention_mask=mask).last_hidden_state
        frames_of = getattr(self.backbone, "_get_feat_extract_output_lengths", None)  # every wav2vec2-family model has it
        frames = frames_of(length.clamp(min=1)) if frames_of is not None else torch.full_like(length, hidden.shape[1])
        keep = (torch.arange(hidden.shape[1], device=hidden.device).unsqueeze(0) < frames.unsqueeze(1)).to(hidden.dtype)
        keep = keep.unsqueeze(-1)
        return (hidden * keep).sum(dim=1) / keep.sum(dim=1).clamp(min=1.0)

    def forward(self, waveform: torch.Tensor, length: torch.Tensor) -> torch.Tensor:
        return self.projection(self.features(waveform, length))


class ClipEncoder(nn.Module):
    """A transformers video encoder (VideoMAE, TimeSformer, ViViT) over the sampled frames, mean-pooled over
    its tokens. Frames arrive normalised with R3D-18's Kinetics statistics (data/media.py, one input for
    every video encoder); a per-channel affine map turns them into what the model's image processor
    makes of the RGB pixels: pixels x rescale (minus 1 where it offsets, as ViViT's does), then its own
    mean and std."""

    inputs = ("frames",)

    def __init__(self, source: str, embed_dim: int, dropout: float, norm: bool, pretrained: bool = True) -> None:
        super().__init__()
        processor = describe("video", source).processor
        kinetics_mean, kinetics_std = torch.tensor(VIDEO_MEAN), torch.tensor(VIDEO_STD)
        mean, std = torch.tensor(processor["mean"]), torch.tensor(processor["std"])
        scale = processor["rescale"] * 255.0  # from 0..1 to the processor's rescaled range
        # x_model = (x01 * scale - shift - mean) / std, with x01 = x * kinetics_std + kinetics_mean.
        self.register_buffer("gain", (kinetics_std * scale / std).view(1, 1, 3, 1, 1), persistent=False)
        offset = (kinetics_mean * scale - processor["shift"] - mean) / std
        self.register_buffer("offset", offset.view(1, 1, 3, 1, 1), persistent=False)
        self.backbone = load_backbone(source, pretrained)
        self.projection = _projection(self.backbone.config.hidden_size, embed_dim, dropout, norm)

    def features(self, frames: torch.Tensor) -> torch.Tensor:
        pixels = frames.transpose(1, 2) * self.gain + self.offset  # (B, 3, T, H, W) -> (B, T, 3, H, W), as the model takes
        return self.backbone(pixel_values=pixels).last_hidden_state.mean(dim=1)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        return self.projection(self.features(frames))
