import argparse

import pytest

from mmsent.arguments import add_config_arguments, config_from_args, field_help, parse_bool
from mmsent.cli import main
from mmsent.config import MediaConfig, ModelConfig, TextConfig, TrainConfig


def _parse(*argv: str) -> TrainConfig:
    parser = argparse.ArgumentParser()
    add_config_arguments(parser, TrainConfig)
    return config_from_args(TrainConfig, parser.parse_args(list(argv)))


def test_hyperparameters_as_sagemaker_renders_them():
    cfg = _parse("--epochs", "10", "--batch-size", "16", "--learning-rate", "0.0001", "--amp", "True",
                 "--max-train-samples", "200", "--scheduler", "plateau")  # fmt: skip
    assert (cfg.epochs, cfg.batch_size, cfg.learning_rate, cfg.amp, cfg.max_train_samples) == (10, 16, 1e-4, True, 200)
    assert _parse().learning_rate == TrainConfig().learning_rate
    assert _parse("--amp").amp is True and _parse("--amp", "false").amp is False


@pytest.mark.parametrize(("text", "value"), [("True", True), ("true", True), ("1", True), ("False", False), ("false", False), ("0", False)])
def test_booleans(text, value):
    assert parse_bool(text) is value


def test_help_comes_from_each_settings_own_help():
    assert field_help(TrainConfig)["grad_accum_steps"].startswith("micro-batches per optimizer step")
    # A help text wrapped over two source lines is whole (a comment parser dropped the second line).
    assert field_help(TrainConfig)["epochs"].endswith("the best validation emotion weighted F1")


@pytest.mark.parametrize("cls", [MediaConfig, TextConfig, ModelConfig, TrainConfig])
def test_every_command_line_setting_has_help(cls):
    assert all(field_help(cls).values()), [name for name, text in field_help(cls).items() if not text]


@pytest.mark.parametrize(("argv", "message"), [
    (["--epochs", "ten"], "argument --epochs: expected an integer, got 'ten'"),
    (["--amp", "maybe"], "argument --amp: expected true or false, got 'maybe'"),
    (["--feature-norm", "sometimes"], "argument --feature-norm: expected true or false, got 'sometimes'"),
    (["--scheduler", "step"], "scheduler must be one of cosine, linear, plateau, constant, got 'step'"),
    (["--epochs", "0"], "epochs must be at least 1, got 0"),
    (["--modalities", "text,smell"], "modalities must be a non-empty subset of text,audio,video"),
    (["--freeze", "audio"], "cannot freeze audio"),
    (["--label-smoothing", "1.5"], "label_smoothing must lie in [0, 1)"),
    (["--modality-dropout-on", "text,speech"], "modality_dropout_on must be a non-empty subset of text,audio,video, got text,speech"),
])  # fmt: skip
def test_bad_training_values_are_clear_errors(argv, message, capsys):
    with pytest.raises(SystemExit) if "argument" in message else _no_exit():
        code = main(["train", *argv])
        assert code == 2
    assert message in capsys.readouterr().err


class _no_exit:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False
