"""The text encoder's lower layers' outputs stored once per split (--train-top-layers): where they are
kept, when they are rebuilt, and a run that resumes on them."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from mmsent.config import DataConfig, MediaConfig, ModelConfig, TextConfig
from mmsent.data.cache import build_cache
from mmsent.data.dataset import MeldDataset
from mmsent.data.layout import find_splits
from mmsent.features import STORE_FOLDER, TEXT_STATES
from mmsent.model.fusion import MultimodalSentimentModel
from mmsent.pretrained import load_tokenizer
from mmsent.training.checkpoint import CheckpointFolder
from mmsent.training.distributed import DistInfo
from mmsent.training.text_states import attach_text_states
from tests.cli import mmsent
from tests.conftest import assert_same_run_results, run_folders

MEDIA = MediaConfig(num_frames=2, frame_size=32, audio_seconds=2)


def test_states_are_stored_with_the_media_cache_and_rebuilt_when_what_makes_them_changes(sample_dir, tiny_text_model, tmp_path):
    splits = find_splits(sample_dir)
    caches = build_cache(splits, MEDIA, tmp_path / "cache", progress=False, say=lambda line: None)

    def attach(text_model: str, top: int, text: TextConfig = TextConfig()) -> tuple[list[str], dict]:
        said = []
        data_cfg = DataConfig(text=text, media=MEDIA, modalities=("text", "audio"))
        datasets = {split: MeldDataset.from_split(files, load_tokenizer(text_model), data_cfg, caches[split])
                    for split, files in splits.items()}  # fmt: skip
        model = MultimodalSentimentModel(ModelConfig(modalities=("text", "audio"), text_model=text_model, train_top_layers=top))
        assert attach_text_states(model, datasets, data_cfg, torch.device("cpu"), DistInfo(), said.append) > 0
        return said, datasets

    tiny = str(tiny_text_model)
    said, datasets = attach(tiny, 1)
    assert len(said) == 3 and all("lower 1 layers' outputs for" in line for line in said)  # train, dev, test
    stores = {split: sorted((cache.folder / STORE_FOLDER).glob(f"{TEXT_STATES}-*.npy")) for split, cache in caches.items()}
    assert all(len(files) == 1 for files in stores.values())
    train = datasets["train"]
    item = train[3]
    assert item[TEXT_STATES].shape == (int(item["attention_mask"].sum()), 32)  # its real tokens, the tiny BERT's width
    assert attach(tiny, 1)[0] == []  # the same weights and settings: read back
    # Another cut, another model, other context settings: each its own states (none read stale ones).
    assert len(attach("default", 1)[0]) == 3
    assert len(attach("default", 2)[0]) == 3
    assert len(attach(tiny, 1, TextConfig(context_past=1))[0]) == 3
    assert len(attach(tiny, 1, TextConfig(max_tokens=64))[0]) == 3
    assert attach("default", 2)[0] == []
    assert len(list((caches["train"].folder / STORE_FOLDER).glob(f"{TEXT_STATES}-*.npy"))) == 5


TRAIN = ["--modalities", "text,audio", "--num-frames", "2", "--frame-size", "32", "--audio-seconds", "2", "--batch-size", "4",
         "--num-workers", "0", "--epochs", "2", "--train-top-layers", "1", "--log-every", "1"]  # fmt: skip


@pytest.mark.slow  # two real trainings and an evaluate
def test_a_run_on_stored_states_resumes_as_the_uninterrupted_run_and_its_model_runs_whole(sample_dir, tiny_text_model, tmp_path):
    cache = tmp_path / "cache"

    def train(out, *extra):
        result = mmsent("train", "--data-dir", str(sample_dir), *TRAIN, "--text-model", str(tiny_text_model),
                        "--cache-dir", str(cache), *run_folders(out), *extra)  # fmt: skip
        assert result.returncode == 0, result.stderr[-3000:]
        return result

    whole = train(tmp_path / "whole", "--checkpoint-every-steps", "3", "--keep-checkpoints", "10")
    assert whole.stdout.count("computing the text encoder's lower 1 layers' outputs") == 3
    assert "each epoch trains its top 1" in whole.stdout
    middle = next(p for p in CheckpointFolder(tmp_path / "whole" / "checkpoints", keep=10).checkpoints()
                  if p.name.startswith("checkpoint-0001-") and not p.name.endswith("-0000000.pt"))  # fmt: skip
    (tmp_path / "cut" / "checkpoints").mkdir(parents=True)
    for part in (middle, middle.with_suffix(".json")):  # the checkpoint and its manifest
        shutil.copy(part, tmp_path / "cut" / "checkpoints")
    resumed = train(tmp_path / "cut")
    assert "resumed from" in resumed.stdout and "computing the text encoder" not in resumed.stdout  # read from the store
    # The same seed, data order and restored RNG on the same stored states: on CPU the runs agree but for
    # floating-point summation order.
    assert_same_run_results(tmp_path / "cut", tmp_path / "whole", loss_tolerance=1e-5)

    # evaluate runs the whole encoder on the model dir: the test split's scores the run got from stored states.
    model_dir = tmp_path / "whole" / "model"
    evaluated = mmsent("evaluate", "--model-dir", str(model_dir), "--data-dir", str(sample_dir), "--split", "test",
                       "--out", str(tmp_path / "evaluated"), "--num-workers", "0")  # fmt: skip
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    got, trained = json.loads((tmp_path / "evaluated" / "report.json").read_text()), json.loads((model_dir / "metrics.json").read_text())
    for task in ("emotion", "sentiment"):
        assert got[task]["confusion_matrix"] == trained["test"][task]["confusion_matrix"]
        assert got[task]["weighted_f1"] == pytest.approx(trained["test"][task]["weighted_f1"], abs=1e-6)
