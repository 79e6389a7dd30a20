"""`mmsent params`, `mmsent train` and `mmsent evaluate`."""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
import os
import sys
import time
from pathlib import Path

from mmsent.arguments import config_from_args, parse_names
from mmsent.commands.common import (
    EXIT_OK, add_data_dir, add_model_arguments, add_training_settings, check_text_length, encoder_media, encoder_specs,
    error, media_config, model_config, non_negative_int, positive_int, resolve_splits,
)  # fmt: skip
from mmsent.config import DataConfig, TextConfig, TrainConfig
from mmsent.environment import Environment
from mmsent.pretrained import check_video_weights

# Inside a SageMaker job, a wall-clock checkpoint this often: what a stop or spot reclaim can lose
# when its SIGTERM never reaches the script (each save costs seconds; an epoch of MELD, many minutes).
SAGEMAKER_CHECKPOINT_MINUTES = 10.0


def add_parsers(commands) -> None:
    params = commands.add_parser("params", help="parameter counts per component")
    add_model_arguments(params)
    params.add_argument("--json", action="store_true", help="print the counts as JSON")
    params.set_defaults(run=_run_params)

    train = commands.add_parser("train", help="train the fusion model",
                                description="Train the fusion model. Hyperparameters are taken as SageMaker passes "
                                "them (--epochs 6 --batch-size 16 --learning-rate 3e-4; booleans as true/false).")  # fmt: skip
    add_data_dir(train, decodes=True)
    train.add_argument("--model-dir", type=Path, help="where the best model goes (default: SM_MODEL_DIR in a job, else runs/RUN/model)")
    train.add_argument("--output-data-dir", type=Path, help="per-epoch history (default: SM_OUTPUT_DATA_DIR, else runs/RUN/output)")
    train.add_argument("--tensorboard-dir", type=Path, help="TensorBoard logs (default: /opt/ml/output/tensorboard in a job, else runs/RUN/tensorboard)")
    train.add_argument("--checkpoint-dir", type=Path, help="checkpoints, and where a restarted run resumes from "
                       "(default: /opt/ml/checkpoints in a job, else runs/RUN/checkpoints)")
    train.add_argument("--run-name", help="names the local runs/ folder (default: the start time; give it to resume a run)")
    add_training_settings(train)
    train.set_defaults(run=_run_train)

    evaluate = commands.add_parser("evaluate", help="score a model dir on a split")
    evaluate.add_argument("--model-dir", type=Path, required=True, help="a model dir written by mmsent train")
    add_data_dir(evaluate)
    evaluate.add_argument("--split", default="test", choices=["train", "dev", "test"], help="which split to score (default: test)")
    evaluate.add_argument("--out", type=Path, help="where the report and figures go (default: MODEL_DIR/evaluation-SPLIT[-without-A])")
    evaluate.add_argument("--batch-size", type=positive_int, default=32, help="items per forward pass (default: 32)")
    evaluate.add_argument("--num-workers", type=non_negative_int, default=2, help="loader processes decoding clips (default: 2)")
    evaluate.add_argument("--absent", type=parse_names, default=(), metavar="A,B",
                          help="score as if these modalities were missing from every item, e.g. text: how the model "
                          "does on clips without a transcript (default: none)")
    evaluate.set_defaults(run=_run_evaluate)


def _run_params(args: argparse.Namespace, env: Environment) -> int:
    from dataclasses import asdict

    from mmsent.model.fusion import MultimodalSentimentModel
    from mmsent.model.summary import format_parameter_counts, parameter_counts

    model_cfg = model_config(args, env)
    encoder_specs(model_cfg)  # a bad model name is one line, not a traceback from the middle of building
    rows = parameter_counts(MultimodalSentimentModel(model_cfg, pretrained=False))
    print(json.dumps([asdict(r) for r in rows], indent=2) if args.json else format_parameter_counts(rows))
    return EXIT_OK


def _run_train(args: argparse.Namespace, env: Environment) -> int:
    from mmsent.training.distributed import DistInfo
    from mmsent.training.loop import TrainingInterrupted, train

    model_cfg = model_config(args, env)
    specs = encoder_specs(model_cfg)  # every encoder name checked, and what they fix read, before any work
    if "video" in model_cfg.modalities:
        check_video_weights(model_cfg.video_weights)
    text_cfg = config_from_args(TextConfig, args)
    check_text_length(text_cfg, specs)
    train_cfg = config_from_args(TrainConfig, args)
    if train_cfg.checkpoint_every_minutes is None:
        train_cfg = replace(train_cfg, checkpoint_every_minutes=SAGEMAKER_CHECKPOINT_MINUTES if env.in_sagemaker else 0.0)
    dist = DistInfo(rank=env.rank, local_rank=env.local_rank, world_size=env.world_size)
    if dist.rank >= dist.world_size:
        return error(f"RANK={dist.rank} is not below WORLD_SIZE={dist.world_size}")
    splits = resolve_splits(args, env)
    if all(files.clip_dir is None for files in splits.values()) and model_cfg.modalities != ("text",):
        # CSVs without clips: audio and video would be zeros for every row, their backbones work for nothing.
        if "text" not in model_cfg.modalities:
            return error(f"--modalities {','.join(model_cfg.modalities)} needs clips, and the data has none (CSVs only)")
        model_cfg = replace(model_cfg, modalities=("text",), freeze=tuple(f for f in model_cfg.freeze if f == "text"))
        if dist.is_main:
            print("the data has no clips (CSVs only): training text-only (--modalities text)", file=sys.stderr)
    data_cfg = DataConfig(text=text_cfg, media=media_config(args, splits, encoder_media(specs)),
                          modalities=model_cfg.modalities, audio_input=model_cfg.audio_input)  # fmt: skip
    paths = _run_paths(args, env)
    try:
        train(splits, data_cfg, model_cfg, train_cfg, paths, dist)
    except TrainingInterrupted as stopped:
        if dist.is_main:
            print(f"checkpoint saved: {stopped.checkpoint}\nthe same command started again resumes from it", file=sys.stderr)
        return 128 + stopped.signal_number  # the shell's convention for "ended by this signal"
    if not dist.is_main:
        return EXIT_OK
    print(f"checkpoints: {paths.checkpoint_dir}")
    print(f"\nmodel:       {paths.model_dir}  (model.pth, config.json, labels.json, metrics.json, README.md: the model card)")
    print(f"plots:       {paths.model_dir}/confusion_emotion.png, confusion_sentiment.png, training_curves.png")
    print(f"tensorboard: tensorboard --logdir {paths.tensorboard_dir}")
    return EXIT_OK


def _run_paths(args: argparse.Namespace, env: Environment):
    from mmsent.training.loop import RunPaths

    # The default name is unique per process, so two runs started in the same second never share
    # (and resume from) one checkpoint folder; resuming a run needs its --run-name given again.
    run = Path("runs") / (args.run_name or f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}")
    return RunPaths(
        model_dir=args.model_dir or env.model_dir or run / "model",
        tensorboard_dir=args.tensorboard_dir or env.tensorboard_dir or run / "tensorboard",
        output_dir=args.output_data_dir or env.output_data_dir or run / "output",
        checkpoint_dir=args.checkpoint_dir or env.checkpoint_dir or run / "checkpoints",
        cache_dir=args.cache_dir,
        rebuild_cache=args.rebuild_cache,
    )


def _run_evaluate(args: argparse.Namespace, env: Environment) -> int:
    from mmsent.inference.evaluate import evaluate_model_dir

    splits = resolve_splits(args, env)
    if args.split not in splits:
        return error(f"no {args.split} split in the data; found {', '.join(splits)}")
    out = args.out or args.model_dir / (f"evaluation-{args.split}" + "".join(f"-without-{name}" for name in args.absent))
    text = evaluate_model_dir(args.model_dir, splits[args.split], out, args.batch_size, args.num_workers, args.absent)
    print(text)
    print(f"\nreport: {out / 'report.json'}; figures: {out}/confusion_emotion.png, confusion_sentiment.png")
    return EXIT_OK
