"""A model trained with dialogue context: its model dir, `evaluate`, `predict` and the served model
all read exactly the token ids that training read."""

from __future__ import annotations

import argparse
import json

import pytest
import torch

from mmsent.config import DataConfig, TextConfig
from mmsent.data.dataset import MeldDataset
from mmsent.data.layout import find_splits
from mmsent.inference.predict import Predictor
from mmsent.model_dir import load_model_dir
from mmsent.pretrained import load_tokenizer
from tests.conftest import run_folders
from tests.cli import mmsent

CONTEXT = TextConfig(max_tokens=64, context_past=2, context_future=1)


@pytest.fixture(scope="module")
def context_model_dir(tmp_path_factory, sample_dir, tiny_text_model):
    root = tmp_path_factory.mktemp("context-run")
    result = mmsent("train", "--data-dir", str(sample_dir), "--modalities", "text", "--epochs", "1", "--max-train-samples", "16",
                    "--batch-size", "8", "--num-workers", "0", "--max-tokens", "64", "--context-past", "2",
                    "--context-future", "1", "--text-model", str(tiny_text_model), *run_folders(root))  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    return root / "model"


def _ids_the_model_reads(predictor: Predictor, requests) -> list[list[int]]:
    """Each request's real token ids, as the text backbone received them."""
    seen = []

    def record(_module, _args, kwargs):
        ids, mask = kwargs["input_ids"], kwargs["attention_mask"]
        seen.extend(row[m.bool()].tolist() for row, m in zip(ids, mask))

    hook = predictor.model.encoders["text"].backbone.register_forward_pre_hook(record, with_kwargs=True)
    try:
        predictor.predict(requests)
    finally:
        hook.remove()
    return seen


def test_context_settings_go_into_the_model_dir_and_predict_builds_what_training_built(context_model_dir, sample_dir):
    from mmsent.commands.inference import _requests

    _, data_cfg, tokenizer = load_model_dir(context_model_dir)
    assert data_cfg.text == CONTEXT
    dev = find_splits(sample_dir)["dev"]
    trained = MeldDataset.from_split(dev, load_tokenizer("default"), DataConfig(text=CONTEXT, modalities=("text",)))
    evaluated = MeldDataset.from_split(dev, tokenizer, data_cfg)  # what `mmsent evaluate` builds from the model dir
    assert torch.equal(trained.tokens["input_ids"], evaluated.tokens["input_ids"])
    assert torch.equal(trained.tokens["target_mask"], evaluated.tokens["target_mask"])

    args = argparse.Namespace(csv=dev.csv_path, clips=[], text=None, clips_dir=None)
    predictor = Predictor(context_model_dir, batch_size=4, workers=1)
    predicted = _ids_the_model_reads(predictor, _requests(args))
    expected = [row[mask.bool()].tolist() for row, mask in zip(trained.tokens["input_ids"], trained.tokens["attention_mask"])]
    assert predicted == expected
    sep = tokenizer.sep_token_id
    assert all(ids.count(sep) == 3 for ids in expected)  # past, target, future: context really is there


def test_a_served_request_with_its_turns_reads_what_the_csv_row_gave(context_model_dir, sample_dir):
    from mmsent.data.meld import read_meld_csv
    from mmsent.inference.handler import input_fn
    from mmsent.inference.predict import Request

    rows = read_meld_csv(find_splits(sample_dir)["dev"].csv_path)
    middle = rows[2]  # the third turn of the first dialogue: two turns before it, two after
    # Names as another tool might spell them: the Predictor normalises them as training normalised the CSV's.
    turns = [{"speaker": f"{r.speaker.upper()}.", "text": r.text} for r in rows[:5]]
    body = json.dumps({"text": middle.text, "speaker": f" {middle.speaker}. ", "past": turns[:2], "future": turns[3:]})
    data = input_fn(body, "application/json")
    predictor = Predictor(context_model_dir, workers=1)
    served = _ids_the_model_reads(predictor, [Request(text=data.text, speaker=data.speaker, past=data.past, future=data.future)])
    trained = MeldDataset.from_split(find_splits(sample_dir)["dev"], load_tokenizer("default"), DataConfig(text=CONTEXT, modalities=("text",)))
    assert served == [trained.tokens["input_ids"][2][trained.tokens["attention_mask"][2].bool()].tolist()]
    # A bare transcript (`predict --text`) is the utterance alone: empty context segments, no speaker.
    tokenizer = predictor.tokenizer
    alone = _ids_the_model_reads(predictor, [Request(text=middle.text)])
    cls, sep = tokenizer.cls_token_id, tokenizer.sep_token_id
    assert alone == [[cls, sep, *tokenizer(middle.text, add_special_tokens=False)["input_ids"], sep, sep]]


@pytest.mark.parametrize(("fields", "message"), [
    ({"text": "hi", "past": "Ross: hi"}, '"past" must be a list'),
    ({"text": "hi", "future": [{"speaker": "Ross"}]}, '"future" must be a list'),
    ({"text": "hi", "past": [{"text": "x", "mood": "sad"}]}, '"past" must be a list'),
    ({"text": "hi", "speaker": 3}, '"speaker" must be a string'),
])  # fmt: skip
def test_malformed_turns_in_a_request_are_named(fields, message):
    from mmsent.inference.handler import RequestError, input_fn

    with pytest.raises(RequestError) as raised:
        input_fn(json.dumps(fields), "application/json")
    assert raised.value.status_code == 400 and message in raised.value.problem
