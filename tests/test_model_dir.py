"""The model dir on its own: a trained one loads back offline and predicts the same; every broken
one is a ModelDirError naming the file and what is wrong, never a crash inside torch or pickle."""

from __future__ import annotations

import json
import pickle
import shutil
from dataclasses import replace

import pytest
import torch

from mmsent.model_dir import CONFIG, LABELS, WEIGHTS, ModelDirError, load_model_dir, save_model_dir


@pytest.fixture
def model_dir(tiny_model_dir, tmp_path):
    copy = tmp_path / "model"
    shutil.copytree(tiny_model_dir, copy)
    return copy


def test_save_then_load_gives_the_same_model(model_dir, tmp_path):
    model, data_cfg, tokenizer = load_model_dir(model_dir)
    assert not model.training and tokenizer is not None
    copy = tmp_path / "saved-again"
    save_model_dir(copy, model, data_cfg, model.cfg, tokenizer)
    again, data_again, tokenizer_again = load_model_dir(copy)
    assert data_again == data_cfg
    # text_model is where the loaded encoder's config was read from: each dir's own text/ folder.
    assert (again.cfg.text_model, model.cfg.text_model) == (str(copy / "text"), str(model_dir / "text"))
    assert replace(again.cfg, text_model="") == replace(model.cfg, text_model="")
    assert tokenizer_again("Oh my God!")["input_ids"] == tokenizer("Oh my God!")["input_ids"]
    first, second = model.state_dict(), again.state_dict()
    assert first.keys() == second.keys()
    assert all(torch.equal(first[k], second[k]) for k in first)


def test_a_model_dir_from_before_feature_norm_loads_as_trained_without_it(model_dir, tmp_path):
    from mmsent.model.fusion import MultimodalSentimentModel

    loaded, data_cfg, tokenizer = load_model_dir(model_dir)
    assert loaded.cfg.feature_norm  # today's default
    older = MultimodalSentimentModel(replace(loaded.cfg, feature_norm=False), pretrained=False).eval()
    save_model_dir(tmp_path / "older", older, data_cfg, older.cfg, tokenizer)
    config = json.loads((tmp_path / "older" / CONFIG).read_text())
    del config["model"]["feature_norm"]  # as a version without the setting wrote it
    (tmp_path / "older" / CONFIG).write_text(json.dumps(config))
    again, _, _ = load_model_dir(tmp_path / "older")
    assert not again.cfg.feature_norm
    assert all(torch.equal(again.state_dict()[k], v) for k, v in older.state_dict().items())


def test_state_replaces_entries_of_the_models_own_weights(model_dir, tmp_path):
    model, data_cfg, tokenizer = load_model_dir(model_dir)
    name, tensor = next((k, v) for k, v in model.state_dict().items() if v.is_floating_point())
    save_model_dir(tmp_path / "best", model, data_cfg, model.cfg, tokenizer, state={name: torch.zeros_like(tensor)})
    assert torch.count_nonzero(torch.load(tmp_path / "best" / WEIGHTS, weights_only=True)[name]) == 0


def test_a_folder_without_weights_or_config(tmp_path, model_dir):
    with pytest.raises(ModelDirError, match=f"no {WEIGHTS}"):
        load_model_dir(tmp_path)
    (model_dir / CONFIG).unlink()
    with pytest.raises(ModelDirError, match=f"no {CONFIG}"):
        load_model_dir(model_dir)


def test_another_format_version_names_the_version_that_wrote_it(model_dir):
    config = json.loads((model_dir / CONFIG).read_text())
    config["format_version"], config["mmsent_version"] = 1, "0.1.0"
    (model_dir / CONFIG).write_text(json.dumps(config))
    with pytest.raises(ModelDirError, match="format_version 1, expected 2 .written by mmsent 0.1.0"):
        load_model_dir(model_dir)


def test_label_maps_that_differ_are_refused(model_dir):
    labels = json.loads((model_dir / LABELS).read_text())
    labels["emotion"] = labels["emotion"][::-1]
    (model_dir / LABELS).write_text(json.dumps(labels))
    with pytest.raises(ModelDirError, match="label maps differ"):
        load_model_dir(model_dir)


class _RunsCode:
    def __reduce__(self):
        return (print, ("this ran",))


@pytest.mark.parametrize("weights", [
    b"not a zip, not a pickle",
    pickle.dumps(_RunsCode()),
])  # fmt: skip
def test_weights_that_are_not_a_state_dict_are_refused_without_running_anything(model_dir, weights, capsys):
    (model_dir / WEIGHTS).write_bytes(weights)
    with pytest.raises(ModelDirError, match=f"{WEIGHTS}: not a loadable state dict"):
        load_model_dir(model_dir)
    assert "this ran" not in capsys.readouterr().out


def test_weights_of_another_shape_are_refused(model_dir):
    state = torch.load(model_dir / WEIGHTS, weights_only=True)
    state.pop(next(iter(state)))
    torch.save(state, model_dir / WEIGHTS)
    with pytest.raises(ModelDirError, match="not a loadable state dict for this config"):
        load_model_dir(model_dir)


def test_a_reused_model_dir_takes_the_new_models_encoder_folders_and_drops_the_old_results(tmp_path, tiny_text_model,
                                                                                          tiny_encoders):  # fmt: skip
    """`--resume false --text-model OTHER` into the same --model-dir: nothing of the first model stays
    beside the second's weights (its tokenizer and config, its audio encoder's folder, its metrics)."""
    from transformers import AutoTokenizer, BertConfig, BertModel

    from mmsent.config import DataConfig, ModelConfig
    from mmsent.model.fusion import MultimodalSentimentModel
    from mmsent.model_dir import METRICS
    from mmsent.pretrained import load_tokenizer

    folder = tmp_path / "model"
    first = ModelConfig(modalities=("text", "audio"), text_model=str(tiny_text_model), audio_model=str(tiny_encoders["wav2vec2"]))
    save_model_dir(folder, MultimodalSentimentModel(first), DataConfig(modalities=("text", "audio"), audio_input="waveform"),
                   first, load_tokenizer(str(tiny_text_model)))  # fmt: skip
    (folder / METRICS).write_text("{}")  # as training's end writes it
    assert (folder / "audio" / "config.json").is_file()

    other = tmp_path / "other-text-model"  # another architecture, another tokenizer
    tokenizer = AutoTokenizer.from_pretrained(tiny_text_model)
    tokenizer.add_tokens(["ohmygod"])
    BertModel(BertConfig(vocab_size=len(tokenizer), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=32), add_pooling_layer=False).save_pretrained(other)  # fmt: skip
    tokenizer.save_pretrained(other)
    second = ModelConfig(modalities=("text", "audio"), text_model=str(other))
    save_model_dir(folder, MultimodalSentimentModel(second), DataConfig(modalities=("text", "audio")), second, tokenizer)

    assert json.loads((folder / "text" / "config.json").read_text())["hidden_size"] == 16
    assert not (folder / "audio").exists() and not (folder / METRICS).exists()
    assert not [p.name for p in folder.iterdir() if p.name.startswith(".")]  # no temporary folder left behind
    model, _, loaded_tokenizer = load_model_dir(folder)
    assert model.encoders["text"].backbone.config.hidden_size == 16 and len(loaded_tokenizer) == len(tokenizer)


def _without(config: dict, section: str, key: str | None = None) -> dict:
    changed = json.loads(json.dumps(config))
    if key is None:
        del changed[section]
    else:
        del changed[section][key]
    return changed


LIES = [  # (what config.json or model.pth says, what the one line must name)
    (lambda c: _without(c, "model"), "config.json: no 'model' settings"),
    (lambda c: c | {"model": c["model"] | {"attention_heads": 4}}, "config.json: model: unknown setting attention_heads"),
    (lambda c: c | {"data": c["data"] | {"media": c["data"]["media"] | {"num_frames": None}}},
     "config.json: data.media.num_frames: null, where a value is needed"),
    (lambda c: c | {"model": c["model"] | {"embed_dim": "wide"}}, "config.json: model.embed_dim: expected int, got 'wide'"),
    (lambda c: c | {"model": c["model"] | {"freeze": "video"}}, "config.json: model.freeze: expected a list, got 'video'"),
    (lambda c: [c], "config.json: holds a JSON list, not a model dir's settings object"),
    ("weights-list", "model.pth: holds a list, not a state dict"),
]  # fmt: skip


@pytest.fixture
def small_model_dir(tmp_path, tiny_text_model):
    """A model dir of text and audio (no R3D-18: a few MB, cheap to write for each case)."""
    from mmsent.config import DataConfig, MediaConfig, ModelConfig
    from mmsent.model.fusion import MultimodalSentimentModel
    from mmsent.pretrained import load_tokenizer

    cfg = ModelConfig(modalities=("text", "audio"), text_model=str(tiny_text_model))
    data_cfg = DataConfig(media=MediaConfig(audio_seconds=2), modalities=cfg.modalities)
    save_model_dir(tmp_path / "small-model", MultimodalSentimentModel(cfg), data_cfg, cfg, load_tokenizer(str(tiny_text_model)))
    return tmp_path / "small-model"


@pytest.mark.parametrize("lie, named", LIES, ids=[named for _, named in LIES])
def test_a_model_dir_that_lies_is_one_line_naming_file_and_key_and_nothing_is_written(small_model_dir, sample_dir, tmp_path,
                                                                                     lie, named):  # fmt: skip
    from tests.cli import mmsent

    model_dir = small_model_dir

    if lie == "weights-list":
        torch.save(list(torch.load(model_dir / WEIGHTS, weights_only=True).values()), model_dir / WEIGHTS)
    else:
        (model_dir / CONFIG).write_text(json.dumps(lie(json.loads((model_dir / CONFIG).read_text()))))
    clip = next((sample_dir / "dev" / "dev_splits_complete").glob("*.mp4"))
    for command in (["predict", "--model-dir", str(model_dir), str(clip), "--out", str(tmp_path / "predictions.csv")],
                    ["evaluate", "--model-dir", str(model_dir), "--data-dir", str(sample_dir), "--split", "dev",
                     "--out", str(tmp_path / "evaluation")]):  # fmt: skip
        result = mmsent(*command)
        assert result.returncode == 2, (command[0], result.stderr[-2000:])
        assert result.stderr.count("\n") == 1 and named in result.stderr and str(model_dir) in result.stderr, result.stderr
    assert not (tmp_path / "predictions.csv").exists() and not (tmp_path / "evaluation").exists()
