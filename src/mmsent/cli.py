"""The `mmsent` command line. `main(argv)` returns the exit status, so tests can call it directly.

Subcommands:
  sample        write the built-in MELD-format sample dataset
  data check    validate a dataset: rows, labels, broken clips, durations
  params        parameter counts per component, for any model settings
  train         train the fusion model (the same script runs inside a SageMaker training job)
  evaluate      score a model dir on a split: per-class table, confusion matrices, JSON report
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from mmsent.arguments import add_config_arguments, config_from_args, given, parse_names
from mmsent.config import DataConfig, MediaConfig, ModelConfig, TextConfig, TrainConfig
from mmsent.environment import Environment

EXIT_OK = 0
EXIT_BAD_INPUT = 2  # a usage error, or data that cannot be used as it is

# The built-in sample's clips are 128x96 and its video cue is a colour: small inputs carry it,
# and keep an epoch on a 2-core CPU in seconds. Used unless --num-frames/--frame-size are given.
SAMPLE_MEDIA = {"num_frames": 4, "frame_size": 64}


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "run"):
        parser.print_help()
        return EXIT_BAD_INPUT
    try:
        return args.run(args, Environment.read())
    except ValueError as error:  # a config's own validation: the message names the setting
        return _error(str(error))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mmsent", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n")[1])  # fmt: skip
    commands = parser.add_subparsers(metavar="COMMAND")

    sample = commands.add_parser("sample", help="write the built-in MELD-format sample dataset")
    sample.add_argument("--out", type=Path, help="folder to create, which must not exist or be empty "
                        "(default: generate once into the cache folder and print its path)")
    sample.add_argument("--seed", type=int, default=0, help="the same seed writes the same dataset")
    sample.add_argument("--train-size", type=_positive_int, default=420, help="clips in the train split")
    sample.add_argument("--dev-size", type=_positive_int, default=90, help="clips in the dev split")
    sample.add_argument("--test-size", type=_positive_int, default=90, help="clips in the test split")
    sample.add_argument("--workers", type=_positive_int, default=None, help="encoding processes (default: all cores)")
    sample.set_defaults(run=_run_sample)

    data = commands.add_parser("data", help="inspect datasets").add_subparsers(metavar="ACTION")
    check = data.add_parser("check", help="validate a dataset and report what it holds")
    _add_data_dir(check)
    check.add_argument("--json", action="store_true", help="print the report as JSON")
    check.add_argument("--no-decode", action="store_true", help="read the CSVs only; skip decoding the clips")
    check.add_argument("--workers", type=_positive_int, default=None, help="decoding processes (default: all cores)")
    check.set_defaults(run=_run_data_check)

    params = commands.add_parser("params", help="parameter counts per component")
    _add_model_arguments(params)
    params.add_argument("--json", action="store_true", help="print the counts as JSON")
    params.set_defaults(run=_run_params)

    train = commands.add_parser("train", help="train the fusion model",
                                description="Train the fusion model. Hyperparameters are taken as SageMaker passes "
                                "them (--epochs 10 --batch-size 16 --learning-rate 0.0001; booleans as true/false).")  # fmt: skip
    _add_data_dir(train)
    train.add_argument("--model-dir", type=Path, help="where the best model goes (default: SM_MODEL_DIR in a job, else runs/RUN/model)")
    train.add_argument("--output-data-dir", type=Path, help="per-epoch history (default: SM_OUTPUT_DATA_DIR, else runs/RUN/output)")
    train.add_argument("--tensorboard-dir", type=Path, help="TensorBoard logs (default: /opt/ml/output/tensorboard in a job, else runs/RUN/tensorboard)")
    train.add_argument("--run-name", help="names the local runs/ folder (default: the start time)")
    _add_model_arguments(train)
    add_config_arguments(train, TextConfig)
    add_config_arguments(train, MediaConfig)
    add_config_arguments(train, TrainConfig)
    train.set_defaults(run=_run_train)

    evaluate = commands.add_parser("evaluate", help="score a model dir on a split")
    evaluate.add_argument("--model-dir", type=Path, required=True, help="a model dir written by mmsent train")
    _add_data_dir(evaluate)
    evaluate.add_argument("--split", default="test", choices=["train", "dev", "test"], help="which split to score (default: test)")
    evaluate.add_argument("--out", type=Path, help="where the report and figures go (default: MODEL_DIR/evaluation-SPLIT)")
    evaluate.add_argument("--batch-size", type=_positive_int, default=32)
    evaluate.add_argument("--num-workers", type=int, default=2)
    evaluate.set_defaults(run=_run_evaluate)
    return parser


def _add_data_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", type=Path, help="MELD.Raw-style or flat folder (default: the SM_CHANNEL_* "
                        "folders inside a SageMaker job, else the built-in sample dataset)")


def _add_model_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--modalities", type=parse_names, default=None, metavar="A,B",
                        help="any subset of text,audio,video (default: all three)")
    add_config_arguments(parser, ModelConfig, skip=("modalities",))


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _error(message: str) -> int:
    print(f"mmsent: error: {message}", file=sys.stderr)
    return EXIT_BAD_INPUT


def _resolve_splits(args: argparse.Namespace, env: Environment):
    """(splits, whether they are the built-in sample): --data-dir, else SageMaker channels, else the sample."""
    from mmsent.data.layout import find_splits, splits_from_channels
    from mmsent.data.sample import cached_sample

    if args.data_dir is not None:
        return find_splits(args.data_dir), False
    if env.channels:
        return splits_from_channels(env.channels), False
    sample = cached_sample(env.cache_dir)
    print(f"using the built-in sample dataset in {sample}", file=sys.stderr)
    return find_splits(sample), True


def _run_sample(args: argparse.Namespace, env: Environment) -> int:
    from mmsent.data.sample import SampleConfig, cached_sample, write_sample

    cfg = SampleConfig(train_size=args.train_size, dev_size=args.dev_size, test_size=args.test_size, seed=args.seed)
    if args.out is None:
        print(f"the sample dataset is in {cached_sample(env.cache_dir, cfg)}")
        return EXIT_OK
    try:
        out = write_sample(args.out, cfg, workers=args.workers)
    except FileExistsError as error:
        return _error(str(error))
    print(f"wrote the sample dataset to {out} ({sum(cfg.sizes().values())} clips)")
    return EXIT_OK


def _run_data_check(args: argparse.Namespace, env: Environment) -> int:
    from mmsent.data.check import check_split, default_workers, format_report, report_as_dict
    from mmsent.data.layout import DatasetLayoutError
    from mmsent.data.meld import MeldFormatError

    try:
        splits, _ = _resolve_splits(args, env)
        reports = [
            check_split(files, MediaConfig(), decode=not args.no_decode, workers=args.workers or default_workers())
            for files in splits.values()
        ]
    except (DatasetLayoutError, MeldFormatError) as error:
        return _error(str(error))
    print(json.dumps(report_as_dict(reports), indent=2) if args.json else format_report(reports))
    return EXIT_OK


def _model_config(args: argparse.Namespace) -> ModelConfig:
    extra = {"modalities": args.modalities} if args.modalities is not None else {}
    return config_from_args(ModelConfig, args, **extra)


def _run_params(args: argparse.Namespace, env: Environment) -> int:
    from dataclasses import asdict

    from mmsent.model.fusion import MultimodalSentimentModel
    from mmsent.model.summary import format_parameter_counts, parameter_counts

    model_cfg = _model_config(args)
    rows = parameter_counts(MultimodalSentimentModel(model_cfg, pretrained=False))
    print(json.dumps([asdict(r) for r in rows], indent=2) if args.json else format_parameter_counts(rows))
    return EXIT_OK


def _run_train(args: argparse.Namespace, env: Environment) -> int:
    from mmsent.data.layout import DatasetLayoutError
    from mmsent.data.meld import MeldFormatError
    from mmsent.training.loop import RunPaths, TrainingError, train

    model_cfg = _model_config(args)
    train_cfg = config_from_args(TrainConfig, args)
    try:
        splits, on_sample = _resolve_splits(args, env)
    except (DatasetLayoutError, MeldFormatError) as error:
        return _error(str(error))
    media_defaults = {k: v for k, v in SAMPLE_MEDIA.items() if not given(args, k)} if on_sample else {}
    if media_defaults:
        print(f"built-in sample: {media_defaults} (set --num-frames/--frame-size to change)", file=sys.stderr)
    data_cfg = DataConfig(
        text=config_from_args(TextConfig, args),
        media=config_from_args(MediaConfig, args, **media_defaults),
        modalities=model_cfg.modalities,
    )
    paths = _run_paths(args, env)
    try:
        train(splits, data_cfg, model_cfg, train_cfg, paths)
    except (TrainingError, MeldFormatError) as error:
        return _error(str(error))
    print(f"\nmodel:       {paths.model_dir}  (model.pth, config.json, labels.json, metrics.json)")
    print(f"plots:       {paths.model_dir}/confusion_emotion.png, confusion_sentiment.png, training_curves.png")
    print(f"tensorboard: tensorboard --logdir {paths.tensorboard_dir}")
    return EXIT_OK


def _run_paths(args: argparse.Namespace, env: Environment):
    from mmsent.training.loop import RunPaths

    run = Path("runs") / (args.run_name or time.strftime("%Y%m%d-%H%M%S"))
    return RunPaths(
        model_dir=args.model_dir or env.model_dir or run / "model",
        tensorboard_dir=args.tensorboard_dir or env.tensorboard_dir or run / "tensorboard",
        output_dir=args.output_data_dir or env.output_data_dir or run / "output",
    )


def _run_evaluate(args: argparse.Namespace, env: Environment) -> int:
    from mmsent.data.layout import DatasetLayoutError
    from mmsent.data.meld import MeldFormatError
    from mmsent.inference.evaluate import evaluate_model_dir
    from mmsent.model_dir import ModelDirError

    try:
        splits, _ = _resolve_splits(args, env)
        if args.split not in splits:
            return _error(f"no {args.split} split in the data; found {', '.join(splits)}")
        out = args.out or args.model_dir / f"evaluation-{args.split}"
        text = evaluate_model_dir(args.model_dir, splits[args.split], out, args.batch_size, args.num_workers)
    except (DatasetLayoutError, MeldFormatError, ModelDirError) as error:
        return _error(str(error))
    print(text)
    print(f"\nreport: {out / 'report.json'}; figures: {out}/confusion_emotion.png, confusion_sentiment.png")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
