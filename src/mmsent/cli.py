"""The `mmsent` command line. `main(argv)` returns the exit status, so tests can call it directly.

Subcommands:
  sample        write the built-in MELD-format sample dataset
  data check    validate a dataset: rows, labels, broken clips, durations
  params        parameter counts per component, for any model settings
  train         train the fusion model (the same script runs inside a SageMaker training job)
  evaluate      score a model dir on a split: per-class table, confusion matrices, JSON report
  launch        run `mmsent train` as a SageMaker training job (or locally through the real toolkit)
  jobs          list, describe, stop SageMaker training jobs; pull a job's model and TensorBoard logs
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
    _add_training_settings(train)
    train.set_defaults(run=_run_train)

    evaluate = commands.add_parser("evaluate", help="score a model dir on a split")
    evaluate.add_argument("--model-dir", type=Path, required=True, help="a model dir written by mmsent train")
    _add_data_dir(evaluate)
    evaluate.add_argument("--split", default="test", choices=["train", "dev", "test"], help="which split to score (default: test)")
    evaluate.add_argument("--out", type=Path, help="where the report and figures go (default: MODEL_DIR/evaluation-SPLIT)")
    evaluate.add_argument("--batch-size", type=_positive_int, default=32)
    evaluate.add_argument("--num-workers", type=int, default=2)
    evaluate.set_defaults(run=_run_evaluate)

    launch = commands.add_parser("launch", help="run mmsent train as a SageMaker training job",
                                 description="Package mmsent, upload data and sources, and create a SageMaker training job "
                                 "running `mmsent train`; arguments after -- go to mmsent train.")  # fmt: skip
    launch.add_argument("--role", help="IAM role ARN the job runs as (not needed with --local)")
    launch.add_argument("--bucket", help="S3 bucket for data, sources, checkpoints, outputs (not needed with --local)")
    launch.add_argument("--prefix", default="mmsent", help="key prefix in the bucket (default: mmsent)")
    launch.add_argument("--region", help="AWS region (default: boto3's, from AWS_DEFAULT_REGION or the profile)")
    launch.add_argument("--job-name", help="default: mmsent-YYYYMMDD-HHMMSS")
    launch.add_argument("--data-dir", type=Path, help="local dataset to upload to the channels (default with --local: the built-in sample)")
    launch.add_argument("--train-uri", help="s3:// prefix of the train channel, used as it is")
    launch.add_argument("--validation-uri", help="s3:// prefix of the validation channel")
    launch.add_argument("--test-uri", help="s3:// prefix of the test channel")
    launch.add_argument("--instance-type", default="ml.g5.xlarge", help="default: ml.g5.xlarge (one A10G GPU)")
    launch.add_argument("--instance-count", type=int, default=1)
    launch.add_argument("--volume-size", type=int, default=50, help="GB of instance storage (default: 50)")
    launch.add_argument("--spot", action="store_true", help="managed spot capacity; checkpoints sync to S3")
    launch.add_argument("--max-run", type=int, default=24 * 3600, help="seconds before the job is stopped (default: 86400)")
    launch.add_argument("--max-wait", type=int, help="spot only: seconds of run plus waiting for capacity (default: 2 x max run)")
    launch.add_argument("--input-mode", default="File", help="File (copy to the instance) or FastFile (stream from S3)")
    launch.add_argument("--image-uri", help="training image (default: the AWS PyTorch training image for the region)")
    launch.add_argument("--framework-version", default=None, help="PyTorch version of the default image")
    launch.add_argument("--distribution", default="none", choices=["none", "torchrun"],
                        help="torchrun over several GPUs or instances (sagemaker_torch_distributed_enabled); "
                        "refused until mmsent train runs distributed")
    launch.add_argument("--tag", action="append", default=[], metavar="KEY=VALUE", help="tag the job (repeatable)")
    launch.add_argument("--dry-run", action="store_true", help="print the exact request as JSON; upload and create nothing")
    launch.add_argument("--wait", action="store_true", help="follow the job until it ends; exit non-zero unless it completes")
    launch.add_argument("--poll-seconds", type=float, default=30.0, help=argparse.SUPPRESS)
    launch.add_argument("--local", action="store_true", help="run the job's container contract here through the "
                        "real SageMaker training toolkit, without Docker")
    launch.add_argument("--local-dir", type=Path, help="with --local: the /opt/ml-style folder (default: runs/local-TIME)")
    launch.add_argument("training_args", nargs=argparse.REMAINDER, help="-- then mmsent train arguments")
    launch.set_defaults(run=_run_launch)

    jobs = commands.add_parser("jobs", help="SageMaker training jobs").add_subparsers(metavar="ACTION")
    listing = jobs.add_parser("list", help="recent training jobs")
    listing.add_argument("--name-contains", default="mmsent", help="filter (default: mmsent; '' for all)")
    listing.add_argument("--limit", type=_positive_int, default=20)
    describe = jobs.add_parser("describe", help="a job's full description as JSON")
    stop = jobs.add_parser("stop", help="stop a running job")
    pull = jobs.add_parser("pull", help="download a job's model (unpacked, a model dir) and TensorBoard logs")
    pull.add_argument("--out", type=Path, required=True, help="folder for model/ and tensorboard/")
    for action, run in ((listing, _run_jobs_list), (describe, _run_jobs_describe), (stop, _run_jobs_stop), (pull, _run_jobs_pull)):
        if action is not listing:
            action.add_argument("job", help="training job name")
        action.add_argument("--region", help="AWS region (default: boto3's)")
        action.set_defaults(run=run)
    return parser


def _add_training_settings(parser: argparse.ArgumentParser) -> None:
    _add_model_arguments(parser)
    add_config_arguments(parser, TextConfig)
    add_config_arguments(parser, MediaConfig)
    add_config_arguments(parser, TrainConfig)


class _RaisingParser(argparse.ArgumentParser):
    """A parser whose errors are exceptions, for checking arguments meant for another process."""

    def error(self, message: str):
        raise ValueError(f"training arguments: {message}")


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
    if env.world_size > 1:
        # Until training is DDP-aware, N processes would each train alone and race on the model dir.
        return _error(f"WORLD_SIZE={env.world_size}: distributed (torchrun) training is not supported yet; "
                      "run one process (launch with --distribution none)")  # fmt: skip
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


def _aws_session(region: str | None):
    import boto3

    session = boto3.Session(region_name=region)
    if not session.region_name:
        raise ValueError("no AWS region: pass --region or set AWS_DEFAULT_REGION")
    return session


def _training_hyperparameters(args: argparse.Namespace) -> dict[str, str]:
    """`-- --epochs 3 --amp` -> {"epochs": "3", "amp": "true"}, checked against mmsent train's options."""
    tokens = [t for t in args.training_args if t != "--"] if args.training_args[:1] == ["--"] else list(args.training_args)
    for folder in ("--data-dir", "--model-dir", "--output-data-dir", "--tensorboard-dir"):
        if folder in tokens:
            raise ValueError(f"training arguments: {folder} is set by the job's container contract; leave it out")
    probe = _RaisingParser(prog="mmsent train")
    _add_training_settings(probe)
    probe.parse_args(tokens)
    hyperparameters: dict[str, str] = {}
    index = 0
    while index < len(tokens):
        name = tokens[index]
        if not name.startswith("--"):
            raise ValueError(f"training arguments: expected --name, got {name!r}")
        if index + 1 < len(tokens) and not tokens[index + 1].startswith("--"):
            hyperparameters[name[2:]] = tokens[index + 1]
            index += 2
        else:
            hyperparameters[name[2:]] = "true"
            index += 1
    return hyperparameters


def _run_launch(args: argparse.Namespace, env: Environment) -> int:
    from mmsent.sagemaker.launch import LaunchError

    try:
        hyperparameters = _training_hyperparameters(args)
        if args.local:
            return _launch_local(args, env, hyperparameters)
        return _launch_remote(args, hyperparameters)
    except LaunchError as error:
        return _error(str(error))


def _launch_local(args: argparse.Namespace, env: Environment, hyperparameters: dict[str, str]) -> int:
    import importlib.util

    from mmsent.data.layout import CHANNELS, find_splits

    if importlib.util.find_spec("sagemaker_training") is None:
        return _error("--local runs the SageMaker training toolkit, which is not installed: pip install 'mmsent[local]'")
    from mmsent.sagemaker.local import job_outcome, prepare_tree, run_toolkit
    from mmsent.sagemaker.package import build_sourcedir

    if args.data_dir is None:
        from mmsent.data.sample import cached_sample

        args.data_dir = cached_sample(env.cache_dir)
        print(f"using the built-in sample dataset in {args.data_dir}", file=sys.stderr)
        hyperparameters = {k.replace("_", "-"): str(v) for k, v in SAMPLE_MEDIA.items()} | hyperparameters
    splits = find_splits(args.data_dir)
    channels = {CHANNELS[split]: _channel_folder(files) for split, files in splits.items()}
    job_name = args.job_name or time.strftime("mmsent-local-%Y%m%d-%H%M%S")
    base = args.local_dir or Path("runs") / job_name
    sourcedir = build_sourcedir(base / "sourcedir.tar.gz")
    try:
        prepare_tree(base, sourcedir, channels, {k: json.dumps(v) for k, v in hyperparameters.items()}, args.input_mode)
    except FileExistsError as error:
        return _error(str(error))
    code = run_toolkit(base, job_name)
    status, reason = job_outcome(base)
    print(f"\nlocal job {job_name}: {status} (toolkit exit status {code})")
    if status != "Completed":
        print(reason.strip()[-2000:], file=sys.stderr)
        return 1
    print(f"model:       {base / 'model'}\ntensorboard: tensorboard --logdir {base / 'output' / 'tensorboard'}")
    return EXIT_OK


def _channel_folder(files) -> Path:
    """The folder a channel is made of: the split's folder in MELD.Raw, or the CSV's folder."""
    return files.csv_path.parent


def _launch_remote(args: argparse.Namespace, hyperparameters: dict[str, str]) -> int:
    from mmsent.sagemaker.images import DEFAULT_FRAMEWORK_VERSION, training_image_uri
    from mmsent.sagemaker.launch import Storage, data_channels, job_uris, launch, print_request, wait_for_job
    from mmsent.sagemaker.request import JobSettings

    if args.distribution == "torchrun":
        return _error("--distribution torchrun: mmsent train does not run distributed (DDP) yet; "
                      "use one instance with --distribution none")  # fmt: skip
    missing = [flag for flag, value in (("--role", args.role), ("--bucket", args.bucket)) if not value]
    if missing:
        return _error(f"{' and '.join(missing)} required (or --local to run here)")
    if args.data_dir is not None and args.train_uri:
        return _error("give --data-dir or --train-uri/--validation-uri, not both")
    if args.data_dir is None and not args.train_uri:
        return _error("no training data: give --data-dir (uploaded to S3) or --train-uri s3://...")
    tags = {}
    for tag in args.tag:
        key, separator, value = tag.partition("=")
        if not separator:
            return _error(f"--tag {tag!r}: expected KEY=VALUE")
        tags[key] = value
    session = _aws_session(args.region)
    storage = Storage(args.bucket, args.prefix)
    job_name = args.job_name or time.strftime("mmsent-%Y%m%d-%H%M%S")
    if args.data_dir is not None:
        channels = data_channels(args.data_dir, storage)
    else:
        channels = {name: uri for name, uri in (("train", args.train_uri), ("validation", args.validation_uri),
                                                ("test", args.test_uri)) if uri}  # fmt: skip
    image = args.image_uri or training_image_uri(session.region_name, args.instance_type,
                                                 args.framework_version or DEFAULT_FRAMEWORK_VERSION)  # fmt: skip
    settings = JobSettings(
        job_name=job_name, role_arn=args.role, image_uri=image, region=session.region_name, channels=channels,
        training_args=hyperparameters, instance_type=args.instance_type, instance_count=args.instance_count,
        volume_size_gb=args.volume_size, input_mode=args.input_mode, spot=args.spot, max_run_seconds=args.max_run,
        max_wait_seconds=args.max_wait, distribution=args.distribution, tags=tags, **job_uris(storage, job_name),
    )  # fmt: skip
    from boto3.exceptions import Boto3Error
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        request = launch(settings, session, storage, data_dir=args.data_dir, dry_run=args.dry_run)
    except (ClientError, BotoCoreError, Boto3Error) as error:
        return _error(f"AWS: {error}")
    if args.dry_run:
        print_request(request)
        return EXIT_OK
    print(f"follow it:   mmsent jobs describe {job_name}; pull it: mmsent jobs pull {job_name} --out runs/{job_name}")
    print(f"tensorboard: tensorboard --logdir {settings.tensorboard_uri}  (or after pulling: runs/{job_name}/tensorboard)")
    if not args.wait:
        return EXIT_OK
    job = wait_for_job(session, job_name, args.poll_seconds)
    if job["TrainingJobStatus"] != "Completed":
        print(f"job {job_name} {job['TrainingJobStatus']}: {job.get('FailureReason', 'no reason given')}", file=sys.stderr)
        return 1
    return EXIT_OK


def _sagemaker_call(args: argparse.Namespace, call):
    from boto3.exceptions import Boto3Error
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        return call(_aws_session(args.region))
    except (ClientError, BotoCoreError, Boto3Error) as error:
        raise ValueError(f"SageMaker: {error}") from None


def _run_jobs_list(args: argparse.Namespace, env: Environment) -> int:
    from mmsent.sagemaker.jobs import format_jobs, list_jobs

    jobs = _sagemaker_call(args, lambda s: list_jobs(s.client("sagemaker"), args.name_contains, args.limit))
    print(format_jobs(jobs))
    return EXIT_OK


def _run_jobs_describe(args: argparse.Namespace, env: Environment) -> int:
    job = _sagemaker_call(args, lambda s: s.client("sagemaker").describe_training_job(TrainingJobName=args.job))
    job.pop("ResponseMetadata", None)
    print(json.dumps(job, indent=2, default=str))
    return EXIT_OK


def _run_jobs_stop(args: argparse.Namespace, env: Environment) -> int:
    _sagemaker_call(args, lambda s: s.client("sagemaker").stop_training_job(TrainingJobName=args.job))
    print(f"asked {args.job} to stop")
    return EXIT_OK


def _run_jobs_pull(args: argparse.Namespace, env: Environment) -> int:
    from mmsent.sagemaker.jobs import pull

    found = _sagemaker_call(args, lambda s: pull(s, args.job, args.out))
    if "model" in found:
        print(f"model:       {found['model']}  (mmsent evaluate --model-dir {found['model']})")
    if "tensorboard" in found:
        print(f"tensorboard: tensorboard --logdir {found['tensorboard']}")
    if not found:
        return _error(f"job {args.job} has no model artifacts or TensorBoard logs yet")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
