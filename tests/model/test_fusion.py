import pytest
import torch

from mmsent.config import MediaConfig, ModelConfig
from mmsent.labels import EMOTIONS, SENTIMENTS
from mmsent.model.fusion import MultimodalSentimentModel
from mmsent.model.summary import format_parameter_counts, parameter_counts

MEDIA = MediaConfig(num_frames=2, frame_size=32, n_mels=32, audio_seconds=1.0)


def _batch(size: int = 3, tokens: int = 7) -> dict:
    generator = torch.Generator().manual_seed(0)
    return {
        "input_ids": torch.randint(1000, 2000, (size, tokens), generator=generator),
        "attention_mask": torch.ones(size, tokens, dtype=torch.long),
        "target_mask": torch.ones(size, tokens, dtype=torch.long),
        "text_present": torch.ones(size, dtype=torch.bool),
        "frames": torch.randn(size, 3, MEDIA.num_frames, MEDIA.frame_size, MEDIA.frame_size, generator=generator),
        "video_present": torch.ones(size, dtype=torch.bool),
        "log_mel": torch.randn(size, MEDIA.n_mels, MEDIA.mel_frames, generator=generator),
        "audio_present": torch.ones(size, dtype=torch.bool),
    }


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return MultimodalSentimentModel(ModelConfig(), pretrained=False).eval()


def test_logits_for_both_heads(model):
    logits = model(_batch())
    assert logits["emotion"].shape == (3, len(EMOTIONS)) and logits["sentiment"].shape == (3, len(SENTIMENTS))


@pytest.mark.parametrize("modalities", [("text",), ("audio",), ("video",), ("text", "audio"), ("audio", "video")])
def test_any_subset_of_modalities(modalities):
    subset = MultimodalSentimentModel(ModelConfig(modalities=modalities), pretrained=False).eval()
    assert set(subset.encoders) == set(modalities)
    batch = {k: v for k, v in _batch().items() if k in subset.input_names()}
    assert subset(batch)["emotion"].shape == (3, 7)


def test_an_absent_modality_injects_nothing(model):
    batch = _batch()
    batch["video_present"][1] = False
    batch["audio_present"][1] = False
    batch["text_present"][1] = False
    before = model(batch)
    batch["frames"][1] = torch.randn_like(batch["frames"][1]) * 100  # garbage where the clip was missing
    batch["log_mel"][1] = torch.randn_like(batch["log_mel"][1]) * 100
    batch["input_ids"][1] = torch.randint(1000, 2000, batch["input_ids"][1].shape)  # and where no transcript was
    after = model(batch)
    assert torch.allclose(before["emotion"][1], after["emotion"][1], atol=1e-5)
    assert not torch.allclose(before["emotion"][0], model(_batch() | {"frames": batch["frames"] * 0})["emotion"][0])


def test_backbone_features_computed_once_serve_every_view_of_a_batch(model):
    batch = _batch()
    features = model.backbone_features(batch)
    assert set(features) == {"text_features", "video_features", "audio_features"}
    for hidden in ((), ("text",), ("text", "audio")):
        masks = {f"{name}_present": torch.zeros(3, dtype=torch.bool) for name in hidden}
        direct = model(batch | masks)
        reused = model(batch | features | masks)
        for task in ("emotion", "sentiment"):
            assert torch.allclose(direct[task], reused[task], atol=1e-6), (hidden, task)
    # Features the batch carries already (a cache's) are not computed again.
    assert set(model.backbone_features(batch | {"video_features": features["video_features"]})) == {"text_features", "audio_features"}


def test_feature_norm_puts_every_backbones_features_at_one_scale(model):
    """A frozen random R3D-18's features are tenths (0.16 mean, 0.19 sd on the sample): with the norm,
    their scale no longer decides how much they move the fusion layer; without it, it does."""
    features = torch.rand(4, 512, generator=torch.Generator().manual_seed(0)) * 0.3
    normed = model.encoders["video"].projection
    assert torch.allclose(normed(features), normed(features * 100), atol=1e-3)
    torch.manual_seed(0)
    unnormed = MultimodalSentimentModel(ModelConfig(feature_norm=False), pretrained=False).eval()
    projection = unnormed.encoders["video"].projection
    assert not torch.allclose(projection(features), projection(features * 100), atol=1e-1)
    assert not any(isinstance(layer, torch.nn.LayerNorm) for layer in projection)


def test_the_video_backbone_is_frozen_by_default_and_stays_in_eval_mode(model):
    assert not any(p.requires_grad for p in model.encoders["video"].backbone.parameters())
    assert all(p.requires_grad for p in model.encoders["video"].projection.parameters())
    # The default MiniLM fine-tunes its top 4 layers (DEFAULT_TOP_LAYERS); its embeddings and layers 0-1 stay frozen.
    text = {name: p.requires_grad for name, p in model.encoders["text"].backbone.named_parameters()}
    assert all(trains == name.startswith(tuple(f"encoder.layer.{i}." for i in range(2, 6))) for name, trains in text.items())
    model.train()
    assert not model.encoders["video"].backbone.training and model.encoders["audio"].backbone.training
    model.eval()


def test_random_layers_cannot_be_frozen():
    with pytest.raises(ValueError, match="cannot freeze audio"):
        ModelConfig(freeze=("audio",))
    with pytest.raises(ValueError, match="modalities must be a non-empty subset"):
        ModelConfig(modalities=("smell",))


def test_parameter_counts_per_component_add_up(model):
    rows = {r.name: r for r in parameter_counts(model)}
    components = ["text encoder", "video encoder", "audio encoder", "fusion", "emotion head", "sentiment head"]
    assert sum(rows[c].total for c in components) == rows["total"].total == sum(p.numel() for p in model.parameters())
    assert rows["  video backbone"].trainable == 0 and rows["  video backbone"].total > 33_000_000
    assert rows["  text backbone"].total == 22_565_376  # all-MiniLM-L6-v2 without its unused pooler (22,713,216 with it)
    assert rows["total"].trainable == sum(p.numel() for p in model.parameters() if p.requires_grad)
    table = format_parameter_counts(parameter_counts(model))
    assert "video backbone" in table and "22,565,376" in table


def test_a_backbone_runs_only_on_the_items_whose_modality_is_present():
    # CSV rows without clips used to run R3D-18 over all-zero frames; absent items now cost nothing,
    # and their logits are what masking alone gave.
    torch.manual_seed(0)
    model = MultimodalSentimentModel(ModelConfig(modalities=("audio", "video"), audio_channels=(4, 8)), pretrained=False).eval()
    seen = []
    model.encoders["video"].backbone.register_forward_hook(lambda _m, args, _out: seen.append(args[0].shape[0]))
    batch = {"frames": torch.randn(4, 3, 2, 32, 32), "video_present": torch.tensor([True, False, True, False]),
             "log_mel": torch.randn(4, 64, 201), "audio_present": torch.ones(4, dtype=torch.bool)}  # fmt: skip
    with torch.no_grad():
        partial = model(batch)
        assert seen == [2]
        absent = model(batch | {"video_present": torch.zeros(4, dtype=torch.bool)})
        assert seen == [2]  # the frozen video backbone did not run at all
        one = model({k: v[:1] for k, v in batch.items()})
    assert torch.allclose(partial["emotion"][:1], one["emotion"], atol=1e-5)  # the same as that item alone
    masked_only = {k: v for k, v in batch.items()} | {"frames": torch.zeros(4, 3, 2, 32, 32), "video_present": torch.zeros(4, dtype=torch.bool)}
    with torch.no_grad():
        assert torch.allclose(absent["emotion"], model(masked_only)["emotion"], atol=1e-5)


def test_every_trainable_parameter_gets_a_gradient():
    """DistributedDataParallel refuses a model with trainable weights that no loss reaches (it once
    failed the default three-modality model under torchrun: BERT's unused pooler head)."""
    torch.manual_seed(0)
    model = MultimodalSentimentModel(ModelConfig(), pretrained=False).train()
    logits = model(_batch())
    (logits["emotion"].sum() + logits["sentiment"].sum()).backward()
    unreached = [name for name, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert unreached == []


@pytest.mark.parametrize("frozen", ["text", "video"])
def test_a_frozen_backbone_with_its_modality_absent_from_every_item_is_skipped(tiny_text_model, frozen):
    # A model trained with --freeze text, asked about clips without a transcript (predict, serve, evaluate
    # --absent text): the skipped backbone's stand-in features must be floats, as its projection's norm needs.
    frozen_model = MultimodalSentimentModel(ModelConfig(text_model=str(tiny_text_model), freeze=(frozen,)), pretrained=False).eval()
    batch = _batch() | {f"{frozen}_present": torch.zeros(3, dtype=torch.bool)}
    with torch.no_grad():
        logits = frozen_model(batch)
    assert torch.isfinite(logits["emotion"]).all() and logits["emotion"].shape == (3, len(EMOTIONS))


def test_which_items_a_backbone_runs_on_is_read_from_the_masks_host_copy():
    # On a GPU the batch carries each presence mask's host copy (fusion.to_device): the model picks the
    # items from it, so it never waits for the GPU to say which are present; the result is the mask's own.
    from mmsent.model.fusion import hide_modalities, on_host
    from mmsent.model.fusion import to_device

    torch.manual_seed(0)
    model = MultimodalSentimentModel(ModelConfig(modalities=("audio", "video"), audio_channels=(4, 8)), pretrained=False).eval()
    seen = []
    model.encoders["video"].backbone.register_forward_hook(lambda _m, args, _out: seen.append(args[0].shape[0]))
    present = torch.tensor([True, False, True, False])
    batch = {"frames": torch.randn(4, 3, 2, 32, 32), "video_present": present,
             "log_mel": torch.randn(4, 64, 201), "audio_present": torch.ones(4, dtype=torch.bool)}  # fmt: skip
    # Moved to a device that is not the CPU ("meta": shapes only), the masks stay readable on the host too.
    moved = to_device(batch, torch.device("meta"))
    assert moved["video_present"].device.type == "meta" and torch.equal(moved[on_host("video_present")], present)
    assert on_host("video_present") not in to_device(batch, torch.device("cpu"))  # on the CPU the mask is its own copy
    with torch.no_grad():
        plain = model(batch)
        # The host copy decides (here it claims one present item fewer than the mask: that is what runs).
        fewer = model(batch | {on_host("video_present"): torch.tensor([True, False, False, False])})
        assert seen == [2, 1]
        with_copy = model(batch | {on_host("video_present"): present})
        assert seen[-1] == 2 and torch.equal(with_copy["emotion"], plain["emotion"])
        hidden = hide_modalities(batch | {on_host("video_present"): present}, ("video",))
        assert not hidden[on_host("video_present")].any() and not hidden["video_present"].any()
    assert not torch.equal(fewer["emotion"], plain["emotion"])
