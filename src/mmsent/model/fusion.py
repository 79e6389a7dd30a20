"""The multimodal model: encoders -> masked concatenation -> fusion layer -> emotion and sentiment heads.

An absent modality (a missing or broken clip, a clip without its transcript) must not inject
garbage: its embedding is multiplied by its presence mask (0 or 1) after the projection, so neither
its input nor the projection's bias reaches the fusion layer, and the masks themselves are fed in so
the model knows what it lacks. Training can mask present modalities at random
(`TrainConfig.modality_dropout`), so the fusion layer also learns to do without each one.

A batch may carry a frozen backbone's outputs (`video_features`, `text_features`, computed once and
cached) instead of its raw input: the backbone is then skipped and only the projection runs. With
only the text encoder's top layers trained, a batch may carry its lower layers' output (`text_states`):
then only the top layers run.
"""

from __future__ import annotations

import torch
from torch import nn

from mmsent.config import AUDIO_CNN, VIDEO_R3D, ModelConfig
from mmsent.features import batch_key
from mmsent.labels import EMOTIONS, SENTIMENTS
from mmsent.model.encoders import AudioEncoder, ClipEncoder, SpeechEncoder, TextEncoder, VideoEncoder

# Each modality's presence mask. The inputs an encoder reads are its class's `inputs`.
PRESENT: dict[str, str] = {"text": "text_present", "video": "video_present", "audio": "audio_present"}


def on_host(key: str) -> str:
    """The batch key of a presence mask's copy kept on the host when the batch goes to a GPU
    (to_device): which items a backbone runs on is decided from it, without waiting for the GPU."""
    return f"{key}_on_host"


def to_device(batch: dict, device: torch.device) -> dict:
    """The batch's tensors on `device`; off the CPU, the presence masks are also kept as they are, on the
    host (fusion.on_host), where the model reads which items each backbone runs on."""
    moved = {k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
    if device.type != "cpu":
        moved |= {on_host(key): batch[key] for key in PRESENT.values() if isinstance(batch.get(key), torch.Tensor)}
    return moved


def hide_modalities(batch: dict, hidden: tuple[str, ...]) -> dict:
    """The batch as the model would see it with these modalities absent from every item."""
    keys = [key for name in hidden for key in (PRESENT[name], on_host(PRESENT[name])) if key in batch]
    return batch | {key: torch.zeros_like(batch[key]) for key in keys}


class MultimodalSentimentModel(nn.Module):
    def __init__(self, cfg: ModelConfig, pretrained: bool = True) -> None:
        """`pretrained=False` builds the architecture only, for loading a saved state dict."""
        super().__init__()
        self.cfg = cfg
        encoders: dict[str, nn.Module] = {}
        if "text" in cfg.modalities:
            encoders["text"] = TextEncoder(cfg.text_model, cfg.embed_dim, cfg.dropout, cfg.feature_norm, pretrained=pretrained,
                                           train_top_layers=cfg.train_top_layers)  # fmt: skip
        if "video" in cfg.modalities:
            if cfg.video_model == VIDEO_R3D:
                encoders["video"] = VideoEncoder(cfg.video_weights if pretrained else "none", cfg.embed_dim, cfg.dropout, cfg.feature_norm)
            else:
                encoders["video"] = ClipEncoder(cfg.video_model, cfg.embed_dim, cfg.dropout, cfg.feature_norm, pretrained=pretrained)
        if "audio" in cfg.modalities:
            if cfg.audio_model == AUDIO_CNN:
                encoders["audio"] = AudioEncoder(cfg.audio_channels, cfg.embed_dim, cfg.dropout, cfg.feature_norm)
            else:
                encoders["audio"] = SpeechEncoder(cfg.audio_model, cfg.embed_dim, cfg.dropout, cfg.feature_norm, pretrained=pretrained)
                convolutions = getattr(encoders["audio"].backbone, "feature_extractor", None)  # the wav2vec2 family's
                if "audio" not in cfg.freeze and convolutions is not None:
                    # Fine-tuned, the convolutional feature encoder stays as pretrained: transformers' own audio
                    # fine-tuning recipes freeze it (freeze_feature_encoder), it gains little and costs most.
                    convolutions.requires_grad_(False)
        self.encoders = nn.ModuleDict(encoders)
        fused_in = (cfg.embed_dim + 1) * len(self.encoders)  # each embedding, and its presence mask
        self.fusion = nn.Sequential(
            nn.Linear(fused_in, cfg.fusion_dim), nn.LayerNorm(cfg.fusion_dim), nn.ReLU(), nn.Dropout(cfg.dropout)
        )
        self.heads = nn.ModuleDict({
            "emotion": _head(cfg.fusion_dim, len(EMOTIONS), cfg.dropout),
            "sentiment": _head(cfg.fusion_dim, len(SENTIMENTS), cfg.dropout),
        })  # fmt: skip
        for name in cfg.freeze:
            if name in self.encoders:
                self.encoders[name].backbone.requires_grad_(False)

    def frozen_backbones(self) -> list[nn.Module]:
        return [self.encoders[n].backbone for n in self.cfg.freeze if n in self.encoders]

    def train(self, mode: bool = True) -> "MultimodalSentimentModel":
        super().train(mode)
        for backbone in self.frozen_backbones():
            backbone.eval()  # frozen means frozen: batch-norm statistics and dropout too
        return self

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Logits of both heads, from a collated batch (only the model's modalities are read)."""
        parts = []
        masks = []
        features = batch | self.backbone_features(batch)
        for name, encoder in self.encoders.items():
            embedding = encoder.projection(features[batch_key(name)])
            mask = batch[PRESENT[name]].to(embedding.dtype).unsqueeze(1)
            parts.append(embedding * mask)
            masks.append(mask)
        fused = self.fusion(torch.cat(parts + masks, dim=1))
        return {task: head(fused) for task, head in self.heads.items()}

    def backbone_features(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Each backbone's output for the batch, under its batch key, where the batch lacks it. The
        batch extended with them runs forward without the backbones: several views of one batch
        (modalities hidden) then cost one backbone pass; a hidden modality's features are masked out."""
        features = {}
        for name, encoder in self.encoders.items():
            if batch_key(name) not in batch:
                present = batch[PRESENT[name]]
                features[batch_key(name)] = _present_only(encoder, [batch[key] for key in _inputs(encoder, batch)], present,
                                                          batch.get(on_host(PRESENT[name]), present))  # fmt: skip
        return features

    def input_names(self, batch: dict | None = None) -> list[str]:
        """The batch keys forward reads (with `batch`: cached features where the batch has them)."""
        names = []
        for name, encoder in self.encoders.items():
            inputs = encoder.inputs if batch is None else _inputs(encoder, batch)
            if batch is not None and batch_key(name) in batch:
                inputs = (batch_key(name),)
            names += [*inputs, PRESENT[name]]
        return names


def _inputs(encoder: nn.Module, batch: dict) -> tuple[str, ...]:
    """The batch keys the encoder's `features` takes from this batch: its inputs, then those of its
    optional ones the batch carries (the text encoder's stored lower-layer states)."""
    return encoder.inputs + tuple(key for key in getattr(encoder, "optional_inputs", ()) if key in batch)


def _present_only(encoder: nn.Module, inputs: list[torch.Tensor], present: torch.Tensor,
                  present_on_host: torch.Tensor) -> torch.Tensor:  # fmt: skip
    """The backbone's features for the items whose modality is present; zeros for the others (their
    embedding is masked to zero anyway). A batch of CSV rows without clips then costs no R3D-18
    forward over all-zero frames. Where nothing is present, a trainable backbone still runs on one
    item, so that under DDP every rank's backward touches the same parameters. The choice is made from
    `present_on_host` (the mask itself on a CPU) and the items picked by index, so a GPU is never waited for."""
    chosen = present_on_host.bool()
    if bool(chosen.all()):
        return encoder.features(*inputs)
    if not bool(chosen.any()):
        if not any(p.requires_grad for p in encoder.backbone.parameters()):
            # A frozen backbone, nothing present: nothing to run. Float features, as the projection takes (not
            # the input's dtype: text's input is token ids, whose integer zeros its projection's norm refuses)
            projection = next(encoder.projection.parameters())
            return projection.new_zeros((len(chosen), _in_features(encoder.projection)))
        chosen = torch.arange(len(chosen)) == 0
    index = chosen.nonzero().squeeze(1)
    if present.device.type == "cuda":
        index = index.pin_memory()  # an asynchronous copy: from pageable memory it would wait for the GPU
    index = index.to(present.device, non_blocking=True)
    computed = encoder.features(*(x.index_select(0, index) for x in inputs))
    return computed.new_zeros((len(chosen), *computed.shape[1:])).index_copy(0, index, computed)


def _in_features(projection: nn.Sequential) -> int:
    """What a projection takes: its backbone's feature size."""
    return next(layer for layer in projection if isinstance(layer, nn.Linear)).in_features


def _head(in_features: int, classes: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(nn.Linear(in_features, 64), nn.ReLU(), nn.Dropout(dropout), nn.Linear(64, classes))
