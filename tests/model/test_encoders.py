"""Transformers audio and video encoders read their input as the model's own processor makes it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mmsent.config import ModelConfig
from mmsent.data.media import frames_to_tensor
from mmsent.errors import SettingsError
from mmsent.model.encoders import ClipEncoder, SpeechEncoder
from mmsent.model.fusion import MultimodalSentimentModel
from mmsent.model.summary import parameter_counts
from mmsent.pretrained import describe


@pytest.mark.parametrize("kind", ["wav2vec2", "hubert"])
def test_a_speech_encoder_sees_what_its_feature_extractor_makes(tiny_encoders, kind):
    from transformers import AutoFeatureExtractor

    folder = tiny_encoders[kind]
    encoder = SpeechEncoder(str(folder), embed_dim=8, dropout=0.0, norm=True).eval()
    extractor = AutoFeatureExtractor.from_pretrained(folder)
    clip = np.random.default_rng(0).normal(0.1, 0.3, 12_000).astype(np.float32)
    with torch.no_grad():
        # The extractor (normalising or not, by its own settings) and the backbone, as transformers runs them...
        made = extractor(clip, sampling_rate=16_000, return_tensors="pt")
        expected = encoder.backbone(**made).last_hidden_state.mean(dim=1)
        # ...and the raw waveform through the encoder.
        ours = encoder.features(torch.from_numpy(clip).unsqueeze(0), torch.tensor([12_000]))
    assert torch.allclose(ours, expected, atol=1e-5)


def test_a_speech_encoder_with_an_attention_mask_pools_the_real_samples_only(tiny_encoders):
    encoder = SpeechEncoder(str(tiny_encoders["wav2vec2"]), embed_dim=8, dropout=0.0, norm=True).eval()
    rng = np.random.default_rng(0)
    short, long = (torch.from_numpy(rng.normal(0.1, 0.3, n).astype(np.float32)) for n in (12_000, 32_000))
    batch = torch.zeros(2, 32_000)
    batch[0, :12_000], batch[1] = short, long
    with torch.no_grad():
        alone = encoder.features(short.unsqueeze(0), torch.tensor([12_000]))
        padded = encoder.features(batch, torch.tensor([12_000, 32_000]))
    # Zero-padded to the longest clip in a batch, the short clip's features are its own.
    assert torch.allclose(padded[0], alone[0], atol=1e-4)


@pytest.mark.parametrize("kind", ["videomae", "timesformer", "vivit"])
def test_a_video_encoder_is_given_the_pixels_its_image_processor_makes(tiny_encoders, kind):
    from transformers import AutoImageProcessor

    folder = tiny_encoders[kind]
    encoder = ClipEncoder(str(folder), embed_dim=8, dropout=0.0, norm=True).eval()
    frames = np.random.default_rng(1).integers(0, 256, size=(2, 32, 32, 3), dtype=np.uint8)  # (T, H, W, 3), as decoded
    expected = AutoImageProcessor.from_pretrained(folder)(list(frames), return_tensors="pt")["pixel_values"]
    ours = frames_to_tensor(frames).unsqueeze(0)  # what the dataset yields: (1, 3, T, H, W), Kinetics-normalised
    pixels = ours.transpose(1, 2) * encoder.gain + encoder.offset
    assert torch.allclose(pixels, expected, atol=1e-4)
    with torch.no_grad():
        assert torch.allclose(encoder.features(ours), encoder.backbone(pixel_values=expected).last_hidden_state.mean(1), atol=1e-4)


def test_the_model_builds_lists_and_freezes_transformers_encoders(tiny_encoders, tiny_text_model):
    cfg = ModelConfig(text_model=str(tiny_text_model), audio_model=str(tiny_encoders["hubert"]),
                      video_model=str(tiny_encoders["videomae"]))  # fmt: skip
    assert cfg.freeze == ("video", "audio")  # unset: both media encoders frozen, as pretrained feature extractors
    model = MultimodalSentimentModel(cfg)
    rows = {row.name: row for row in parameter_counts(model)}
    assert rows["  audio backbone"].trainable == 0 and rows["  audio backbone"].total > 0
    assert rows["  video backbone"].trainable == 0 and rows["  audio projection"].trainable > 0
    tuned = MultimodalSentimentModel(ModelConfig(text_model=str(tiny_text_model), audio_model=str(tiny_encoders["hubert"]),
                                                 freeze=("video",)))  # fmt: skip
    backbone = tuned.encoders["audio"].backbone
    # Fine-tuned, its convolutional feature encoder stays as pretrained (transformers' recipes do the same).
    assert not any(p.requires_grad for p in backbone.feature_extractor.parameters())
    assert any(p.requires_grad for p in backbone.encoder.parameters())
    assert ModelConfig().freeze == ("video",)  # with the audio CNN, as before encoders were choosable


def test_encoder_names_are_checked_for_their_kind(tiny_encoders, tiny_text_model, tmp_path):
    assert describe("audio", str(tiny_encoders["wav2vec2"])).processor["sample_rate"] == 16_000
    video = describe("video", str(tiny_encoders["timesformer"])).processor
    assert (video["num_frames"], video["frame_size"]) == (2, 32)
    with pytest.raises(SettingsError, match=r"--audio-model .*: a bert model \(input input_ids\), not a speech encoder"):
        describe("audio", str(tiny_text_model))
    with pytest.raises(SettingsError, match=r"--video-model .*: a wav2vec2 model .* not a video encoder"):
        describe("video", str(tiny_encoders["wav2vec2"]))
    with pytest.raises(SettingsError, match=r"--audio-model /nonexistent/model: no such folder"):
        describe("audio", "/nonexistent/model")
    with pytest.raises(SettingsError, match=r"--video-model .*: not a transformers model folder"):
        describe("video", str(tmp_path))
    with pytest.raises(SettingsError, match=r"cannot freeze audio: the audio CNN"):
        ModelConfig(freeze=("audio",))


@pytest.mark.parametrize("audio, video", [("wav2vec2", "videomae"), ("hubert", "timesformer"), ("wav2vec2", "vivit")])
def test_fine_tuned_encoders_give_every_trainable_weight_a_gradient_every_step(tiny_encoders, tiny_text_model, audio, video):
    """What DistributedDataParallel needs of each step: no trainable weight without a gradient (no pooler head
    that nothing trains, no LayerDrop skipping a layer at random)."""
    cfg = ModelConfig(text_model=str(tiny_text_model), audio_model=str(tiny_encoders[audio]),
                      video_model=str(tiny_encoders[video]), freeze=())  # fmt: skip
    torch.manual_seed(0)
    model = MultimodalSentimentModel(cfg).train()
    assert model.encoders["audio"].backbone.config.layerdrop == 0.0
    tokens = torch.randint(1000, 2000, (4, 8))
    for _ in range(5):  # LayerDrop at 0.1 over two layers would skip one within a few steps
        model.zero_grad(set_to_none=True)
        batch = {"input_ids": tokens, "attention_mask": torch.ones(4, 8, dtype=torch.long), "target_mask": torch.ones(4, 8),
                 "text_present": torch.ones(4, dtype=torch.bool), "frames": torch.randn(4, 3, 2, 32, 32),
                 "video_present": torch.ones(4, dtype=torch.bool), "waveform": torch.randn(4, 16_000),
                 "waveform_length": torch.tensor([16_000, 12_000, 8_000, 4_000]), "audio_present": torch.ones(4, dtype=torch.bool)}  # fmt: skip
        logits = model(batch)
        (logits["emotion"].sum() + logits["sentiment"].sum()).backward()
        unreached = [name for name, p in model.named_parameters() if p.requires_grad and p.grad is None]
        assert unreached == []
