"""Only the text encoder's top layers trained: stored lower-layer states stand in for running the lower layers."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mmsent.config import DEFAULT_TOP_LAYERS, DataConfig, ModelConfig, TextConfig, TrainConfig
from mmsent.data.dataset import pad_text_states
from mmsent.data.text_inputs import TextInput, Turn, encode_texts
from mmsent.errors import SettingsError
from mmsent.features import TEXT_STATES
from mmsent.model.fusion import MultimodalSentimentModel
from mmsent.pretrained import load_tokenizer
from mmsent.training.loop import parameter_groups
from mmsent.training.loss import MultiTaskLoss
from mmsent.training.text_states import check_cut_on, compute_states

UTTERANCES = ["Oh my God, what are you doing here?", "Fine.", "", "I can't believe you'd just leave like that, Ross!",
              "Okay."]  # fmt: skip


def _batch(tokenizer, cfg: TextConfig = TextConfig()) -> dict:
    previous = ["Hey.", *UTTERANCES[:-1]]  # each one's turn before it, read where the settings take context
    inputs = [TextInput(u, "Joey", (Turn("Rachel", p),)) for u, p in zip(UTTERANCES, previous)]
    tokens = encode_texts(tokenizer, inputs, cfg)
    width = int(tokens["attention_mask"].sum(dim=1).max())
    return {name: column[:, :width] for name, column in tokens.items()} | {
        "text_present": torch.tensor([bool(u) for u in UTTERANCES]),  # the blank one is absent: its states go unused
        "emotion": torch.tensor([4, 6, 4, 0, 4]), "sentiment": torch.tensor([1, 2, 1, 0, 1]),
    }  # fmt: skip


def _with_stored_states(model, batch: dict, exact: bool = False) -> dict:
    """The batch as training serves it from the store: float16 states of the real tokens, zero-padded
    (`exact`: the float32 states themselves, not rounded)."""
    encoder, mask = model.encoders["text"], batch["attention_mask"]
    if exact:
        with torch.no_grad():
            return batch | {TEXT_STATES: encoder.lower_states(batch["input_ids"], mask) * mask.unsqueeze(-1)}
    tokens = {name: batch[name] for name in ("input_ids", "attention_mask", "target_mask")}
    stored = torch.from_numpy(compute_states(encoder, tokens, torch.device("cpu"))).float()
    return batch | {TEXT_STATES: pad_text_states(stored.split(mask.sum(dim=1).tolist()), mask.shape[1])}


def _loss_and_gradients(model, batch, loss_fn) -> tuple[float, dict[str, torch.Tensor]]:
    model.zero_grad(set_to_none=True)
    torch.manual_seed(5)  # the same dropout masks in the top layers, projection, fusion and heads
    loss = loss_fn(model(batch), batch)
    loss.backward()
    return loss.item(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("context", [False, True])
def test_stored_states_give_the_whole_encoders_loss_and_top_layer_gradients(context):
    torch.manual_seed(0)
    model = MultimodalSentimentModel(ModelConfig(modalities=("text",), train_top_layers=2)).train()  # MiniLM: 6 layers
    text_cfg = TextConfig(max_tokens=48, context_past=1) if context else TextConfig()
    batch = _batch(load_tokenizer("default"), text_cfg)
    loss_fn = MultiTaskLoss({}, label_smoothing=0.1, sentiment_weight=0.5)
    whole_loss, whole = _loss_and_gradients(model, batch, loss_fn)
    stored_loss, stored = _loss_and_gradients(model, _with_stored_states(model, batch), loss_fn)
    top = [n for n in whole if n.startswith("encoders.text.backbone.")]
    assert top and all(n.startswith(("encoders.text.backbone.encoder.layer.4.", "encoders.text.backbone.encoder.layer.5."))
                       for n in top)  # fmt: skip
    assert set(stored) == set(whole)
    # The states are stored as float16 (11 significant bits): the loss stays within 1e-3 of running the
    # whole encoder in float32, each gradient within 3% of its own size (L2; the worst here, a LayerNorm
    # weight's with context, strays 1.1%), one that is zero in exact arithmetic (the attention keys' bias:
    # softmax ignores it) within 1e-6. Float32 states give the same loss and gradients exactly.
    assert stored_loss == pytest.approx(whole_loss, abs=1e-3)
    for name in whole:
        error = float((stored[name] - whole[name]).norm())
        assert error <= 3e-2 * float(whole[name].norm()) + 1e-6, (name, error, float(whole[name].norm()))
    exact_loss, exact = _loss_and_gradients(model, _with_stored_states(model, batch, exact=True), loss_fn)
    assert exact_loss == pytest.approx(whole_loss, rel=1e-6)
    for name in whole:
        torch.testing.assert_close(exact[name], whole[name], rtol=1e-5, atol=1e-8)


def test_only_the_top_layers_train_and_the_lower_part_stays_in_eval_mode():
    model = MultimodalSentimentModel(ModelConfig(modalities=("text",), train_top_layers=1)).train()
    backbone = model.encoders["text"].backbone
    trainable = {n for n, p in backbone.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith("encoder.layer.5.") for n in trainable)
    dropouts = {n: m.training for n, m in backbone.named_modules() if isinstance(m, nn.Dropout)}
    assert dropouts and all(on == n.startswith("encoder.layer.5.") for n, on in dropouts.items())
    encoders_group = next(g for g in parameter_groups(model, TrainConfig()) if g["name"] == "encoders")
    assert len(encoders_group["params"]) == sum(p.ndim > 1 for p in backbone.encoder.layer[5].parameters())
    every_layer = MultimodalSentimentModel(ModelConfig(modalities=("text",), train_top_layers=6))
    assert all(p.requires_grad for p in every_layer.encoders["text"].backbone.parameters())  # K = depth: all of them


@pytest.mark.parametrize(("settings", "message"), [
    ({"train_top_layers": -1}, r"0 \(every layer\) or more"),
    ({"train_top_layers": 2, "freeze": ("text", "video")}, "not frozen"),
    ({"train_top_layers": 2, "modalities": ("audio",)}, "needs text among the modalities"),
])  # fmt: skip
def test_settings_that_cannot_be_cut_are_refused(settings, message):
    with pytest.raises(SettingsError, match=message):
        ModelConfig(**settings)


def test_the_default_trains_the_measured_top_layers_of_the_default_model_only(tiny_text_model):
    assert ModelConfig().train_top_layers == DEFAULT_TOP_LAYERS == 4  # MiniLM: measured on MELD (docs/experiments.md)
    assert ModelConfig(text_model=str(tiny_text_model)).train_top_layers == 0  # another model: unmeasured, every layer
    assert ModelConfig(freeze=("video", "text")).train_top_layers == 0
    assert ModelConfig(modalities=("audio", "video")).train_top_layers == 0
    assert ModelConfig(train_top_layers=0).train_top_layers == 0  # every layer of MiniLM, asked for
    model = MultimodalSentimentModel(ModelConfig(modalities=("text",)))
    assert model.encoders["text"].cut == 2


def test_more_layers_than_the_model_has_are_refused_naming_its_depth(tiny_text_model):
    with pytest.raises(SettingsError, match="has 2 layers"):
        MultimodalSentimentModel(ModelConfig(modalities=("text",), text_model=str(tiny_text_model), train_top_layers=3))


def test_a_model_whose_output_is_not_its_top_layers_output_is_refused_before_training(tmp_path):
    # XLM-RoBERTa-XL normalises after its last layer: the lower part's output (normalised as if final) is not
    # what its next layer takes, so the top layers on it give another output. The check sees that.
    from transformers import AutoTokenizer, XLMRobertaXLConfig, XLMRobertaXLModel

    from mmsent.data.dataset import MeldDataset
    from mmsent.data.meld import Utterance
    from mmsent.pretrained import model_source

    tokenizer = AutoTokenizer.from_pretrained(model_source("default"))
    torch.manual_seed(0)
    XLMRobertaXLModel(XLMRobertaXLConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2,
                                         num_attention_heads=2, intermediate_size=64)).save_pretrained(tmp_path)  # fmt: skip
    tokenizer.save_pretrained(tmp_path)
    model = MultimodalSentimentModel(ModelConfig(modalities=("text",), text_model=str(tmp_path), train_top_layers=1))
    utterances = [Utterance(sr_no=i, text=text, speaker="Joey", emotion=4, sentiment=1, dialogue_id=0, utterance_id=i,
                            season=None, episode=None, start_time="", end_time="") for i, text in enumerate(UTTERANCES)]  # fmt: skip
    dataset = MeldDataset(utterances, None, tokenizer, DataConfig(modalities=("text",)))
    with pytest.raises(SettingsError, match="does not give its own output when its top layers run"):
        check_cut_on(model.encoders["text"], dataset, torch.device("cpu"))
    bert = MultimodalSentimentModel(ModelConfig(modalities=("text",), train_top_layers=1))
    check_cut_on(bert.encoders["text"], MeldDataset(utterances, None, load_tokenizer("default"), DataConfig(modalities=("text",))),
                 torch.device("cpu"))  # fmt: skip
