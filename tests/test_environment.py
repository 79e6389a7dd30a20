"""Environment.read: the SageMaker container contract, torchrun's variables and the cache folder, from a mapping."""

from __future__ import annotations

from pathlib import Path

import pytest

from mmsent.environment import Environment
from mmsent.errors import SettingsError

# What SageMaker's training toolkit sets inside a job with three channels (the names `mmsent launch` uses).
IN_A_JOB = {
    "SM_CHANNEL_TRAIN": "/opt/ml/input/data/train",
    "SM_CHANNEL_VALIDATION": "/opt/ml/input/data/validation",
    "SM_CHANNEL_TEST": "/opt/ml/input/data/test",
    "SM_MODEL_DIR": "/opt/ml/model",
    "SM_OUTPUT_DATA_DIR": "/opt/ml/output/data",
    "SM_OUTPUT_DIR": "/opt/ml/output",
    "HOME": "/root",
}


def test_outside_a_job_nothing_is_set_and_local_defaults_apply():
    env = Environment.read({"HOME": "/home/someone"})
    assert not env.in_sagemaker and env.channels == {} and env.model_dir is None
    assert env.tensorboard_dir is None and env.checkpoint_dir is None
    assert env.cache_dir == Path("/home/someone/.cache/mmsent")
    assert (env.world_size, env.rank, env.local_rank) == (1, 0, 0)


def test_inside_a_job_channels_and_folders_come_from_the_contract():
    env = Environment.read(IN_A_JOB)
    assert env.in_sagemaker
    assert env.channels == {"train": Path("/opt/ml/input/data/train"), "validation": Path("/opt/ml/input/data/validation"),
                            "test": Path("/opt/ml/input/data/test")}  # fmt: skip
    assert env.model_dir == Path("/opt/ml/model") and env.output_data_dir == Path("/opt/ml/output/data")
    # The default LocalPath of TensorBoardOutputConfig and CheckpointConfig.
    assert env.tensorboard_dir == Path("/opt/ml/output/tensorboard")
    assert env.checkpoint_dir == Path("/opt/ml/checkpoints")


def test_a_local_toolkit_run_moves_the_base_folder():
    env = Environment.read({"SM_CHANNEL_TRAIN": "/tmp/ml/input/data/train", "SAGEMAKER_BASE_DIR": "/tmp/ml"})
    assert env.checkpoint_dir == Path("/tmp/ml/checkpoints")
    assert env.tensorboard_dir == Path("/tmp/ml/output/tensorboard")  # no SM_OUTPUT_DIR: under the base folder


def test_an_empty_channel_variable_is_no_channel():
    assert Environment.read({"SM_CHANNEL_TRAIN": "", "HOME": "/h"}).channels == {}


def test_cache_folder_precedence():
    assert Environment.read({"MMSENT_CACHE_DIR": "/c", "XDG_CACHE_HOME": "/x", "HOME": "/h"}).cache_dir == Path("/c")
    assert Environment.read({"XDG_CACHE_HOME": "/x", "HOME": "/h"}).cache_dir == Path("/x/mmsent")


def test_torchrun_variables():
    env = Environment.read({"WORLD_SIZE": "8", "RANK": "5", "LOCAL_RANK": "1", "HOME": "/h"})
    assert (env.world_size, env.rank, env.local_rank) == (8, 5, 1)


@pytest.mark.parametrize("name, value, message", [
    ("WORLD_SIZE", "two", "WORLD_SIZE='two' is not an integer"),
    ("RANK", "-1", "RANK='-1' must not be negative"),
])  # fmt: skip
def test_a_broken_torchrun_variable_is_a_settings_error_naming_it(name, value, message):
    with pytest.raises(SettingsError, match=message):
        Environment.read({name: value, "HOME": "/h"})


def test_read_without_a_mapping_reads_the_process_environment(monkeypatch):
    monkeypatch.setenv("SM_CHANNEL_TRAIN", "/somewhere/train")
    assert Environment.read().channels["train"] == Path("/somewhere/train")
