"""`mmsent launch` and `mmsent jobs`: SageMaker training jobs, remote or through the local toolkit."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from mmsent.arguments import config_from_args
from mmsent.commands.common import (
    EXIT_OK, RaisingParser, add_training_settings, aws, aws_session, check_text_length, error, model_config, positive_int,
)  # fmt: skip
from mmsent.config import KINETICS, VIDEO_R3D, MediaConfig, TextConfig, TrainConfig
from mmsent.environment import Environment
from mmsent.errors import SettingsError
from mmsent.pretrained import DEFAULT_TEXT_MODEL, describe


def add_parsers(commands) -> None:
    launch = commands.add_parser("launch", help="run mmsent train as a SageMaker training job",
                                 description="Package mmsent, upload data and sources, and create a SageMaker training job "
                                 "running `mmsent train`; arguments after -- go to mmsent train.")  # fmt: skip
    _add_job_options(launch)
    launch.add_argument("--job-name", help="default: mmsent-YYYYMMDD-HHMMSS")
    launch.add_argument("--dry-run", action="store_true", help="print the exact request as JSON; upload and create nothing")
    launch.add_argument("--wait", action="store_true", help="follow the job until it ends; exit non-zero unless it completes")
    launch.add_argument("--poll-seconds", type=float, default=30.0, help=argparse.SUPPRESS)
    launch.add_argument("--local", action="store_true", help="run the job's container contract here through the "
                        "real SageMaker training toolkit, without Docker")
    launch.add_argument("--local-dir", type=Path, help="with --local: the /opt/ml-style folder (default: runs/JOB-NAME)")
    launch.add_argument("--python", type=Path, help="with --local: the Python the toolkit and the job run under, e.g. a "
                        "venv holding the training image's packages (make image-check); it needs sagemaker-training. "
                        "Default: this one")
    launch.add_argument("training_args", nargs=argparse.REMAINDER, help="-- then mmsent train arguments")
    launch.set_defaults(run=_run_launch)

    tune = commands.add_parser("tune", help="a SageMaker hyperparameter tuning job over mmsent train's settings",
                               description="Create a tuning job whose training jobs are the one `mmsent launch` would "
                               "create, with --range settings drawn by the strategy, maximising validation emotion "
                               "weighted F1; arguments after -- are the settings every trial shares.")  # fmt: skip
    _add_job_options(tune)
    tune.add_argument("--tuning-job-name", help="at most 32 characters (default: mmsent-tune-YYMMDD-HHMMSS)")
    tune.add_argument("--range", action="append", default=[], metavar="NAME=SPEC", dest="ranges",
                      help="a train setting to vary (repeatable): MIN:MAX[:auto|linear|log|reverse-log] for a number, "
                      "A,B,C for listed values, e.g. learning-rate=1e-5:1e-3:log, batch-size=8,16,32")  # fmt: skip
    tune.add_argument("--strategy", default="Bayesian", choices=["Bayesian", "Random", "Hyperband"], help="default: Bayesian")
    tune.add_argument("--max-jobs", type=positive_int, default=10, help="training jobs in all (default: 10)")
    tune.add_argument("--max-parallel-jobs", type=positive_int, default=2, help="training jobs at a time (default: 2)")
    tune.add_argument("--early-stopping", action="store_true", help="let SageMaker stop trials that fall behind (not with Hyperband)")
    tune.add_argument("--warm-start", action="append", default=[], metavar="TUNING_JOB",
                      help="start from what an earlier tuning job on the same data learnt (repeatable, up to 5)")
    tune.add_argument("--dry-run", action="store_true", help="print the exact request as JSON; upload and create nothing")
    tune.add_argument("training_args", nargs=argparse.REMAINDER, help="-- then mmsent train arguments every trial shares")
    tune.set_defaults(run=_run_tune)
    tuning = commands.add_parser("tuning", help="SageMaker tuning jobs").add_subparsers(metavar="ACTION")
    trials = tuning.add_parser("describe", help="a tuning job's status and its training jobs, best first")
    trials.add_argument("tuning_job", help="tuning job name")
    trials.add_argument("--region", help="AWS region (default: boto3's)")
    trials.set_defaults(run=_run_tuning_describe)

    jobs = commands.add_parser("jobs", help="SageMaker training jobs").add_subparsers(metavar="ACTION")
    listing = jobs.add_parser("list", help="recent training jobs")
    listing.add_argument("--name-contains", default="mmsent", help="filter (default: mmsent; '' for all)")
    listing.add_argument("--limit", type=positive_int, default=20, help="newest jobs shown (default: 20)")
    describe = jobs.add_parser("describe", help="a job's full description as JSON")
    stop = jobs.add_parser("stop", help="stop a running job")
    pull = jobs.add_parser("pull", help="download a job's model (unpacked, a model dir) and TensorBoard logs")
    pull.add_argument("--out", type=Path, required=True, help="folder for model/ and tensorboard/")
    pull.add_argument("--best-of", metavar="TUNING_JOB", help="pull the best training job of this tuning job (no JOB then)")
    for action, run in ((listing, _run_jobs_list), (describe, _run_jobs_describe), (stop, _run_jobs_stop), (pull, _run_jobs_pull)):
        if action is pull:
            action.add_argument("job", nargs="?", help="training job name")
        elif action is not listing:
            action.add_argument("job", help="training job name")
        action.add_argument("--region", help="AWS region (default: boto3's)")
        action.set_defaults(run=run)


def _add_job_options(parser: argparse.ArgumentParser) -> None:
    """What a training job is made of, for `launch` and `tune` alike: where it runs, on what, from which data."""
    parser.add_argument("--role", help="IAM role ARN the job runs as (not needed with --local)")
    parser.add_argument("--bucket", help="S3 bucket for data, sources, checkpoints, outputs (not needed with --local)")
    parser.add_argument("--prefix", default="mmsent", help="key prefix in the bucket (default: mmsent)")
    parser.add_argument("--region", help="AWS region (default: boto3's, from AWS_DEFAULT_REGION or the profile)")
    parser.add_argument("--data-dir", type=Path, help="local dataset to upload to the channels (default with --local: the built-in sample)")
    parser.add_argument("--train-uri", help="s3:// prefix of the train channel, used as it is")
    parser.add_argument("--validation-uri", help="s3:// prefix of the validation channel")
    parser.add_argument("--test-uri", help="s3:// prefix of the test channel")
    parser.add_argument("--instance-type", default="ml.g5.xlarge", help="default: ml.g5.xlarge (one A10G GPU)")
    parser.add_argument("--instance-count", type=positive_int, default=1, help="instances; more than 1 needs --distribution torchrun (default: 1)")
    parser.add_argument("--volume-size", type=int, default=50, help="GB of instance storage (default: 50)")
    parser.add_argument("--spot", action="store_true", help="managed spot capacity; checkpoints sync to S3")
    parser.add_argument("--max-run", type=int, default=24 * 3600, help="seconds before the job is stopped (default: 86400)")
    parser.add_argument("--max-wait", type=int, help="spot only: seconds of run plus waiting for capacity (default: 2 x max run)")
    parser.add_argument("--input-mode", default="File", help="File (copy to the instance) or FastFile (stream from S3)")
    parser.add_argument("--image-uri", help="training image (default: the AWS PyTorch training image for the region)")
    parser.add_argument("--framework-version", default=None, help="PyTorch version of the AWS training image (default: "
                        "the newest one mmsent knows, see mmsent.sagemaker.images); the job's requirements.txt pins that "
                        "image's torch, torchvision and torchaudio, so with --image-uri name the version it is built on")
    parser.add_argument("--distribution", default="none", choices=["none", "torchrun"],
                        help="torchrun over several GPUs or instances (sagemaker_torch_distributed_enabled): "
                        "one DDP process per GPU; --batch-size is per process")
    parser.add_argument("--tag", action="append", default=[], metavar="KEY=VALUE", help="tag the job (repeatable)")


def _training_hyperparameters(args: argparse.Namespace) -> dict[str, str]:
    """`-- --epochs 3 --amp` -> {"epochs": "3", "amp": "true"}, checked against mmsent train's options."""
    tokens = _training_tokens(args)
    model_cfg = _checked_training_tokens(tokens)
    hyperparameters = dict(_token_pairs(tokens))
    local = getattr(args, "local", False)
    if "video-weights" not in hyperparameters and "video" in model_cfg.modalities and model_cfg.video_model == VIDEO_R3D:
        # Written out, so the request says what the job runs: in a job, train's default is Kinetics-400's
        # weights (downloaded at start-up); a local rehearsal keeps the offline default.
        hyperparameters["video-weights"] = "none" if local else KINETICS
        if local:
            print(f"local job: --video-weights none (a real job's default, {KINETICS}, is downloaded at its start; "
                  "give it to rehearse that)", file=sys.stderr)  # fmt: skip
    return hyperparameters


def _training_tokens(args: argparse.Namespace) -> list[str]:
    return [t for t in args.training_args if t != "--"] if args.training_args[:1] == ["--"] else list(args.training_args)


def _checked_training_tokens(tokens: list[str]):
    """The ModelConfig of `mmsent train TOKENS`, after every config train builds from them was built: a bad
    value fails here, not inside the paid job."""
    for folder in ("--data-dir", "--model-dir", "--output-data-dir", "--tensorboard-dir", "--checkpoint-dir"):
        if folder in tokens:
            raise SettingsError(f"training arguments: {folder} is set by the job's container contract; leave it out")
    parsed = _train_parser().parse_args(tokens)
    try:
        model_cfg = model_config(parsed)
        text_cfg = config_from_args(TextConfig, parsed)
        for settings in (MediaConfig, TrainConfig):
            config_from_args(settings, parsed)
        if "text" in model_cfg.modalities and model_cfg.text_model == DEFAULT_TEXT_MODEL:
            # The offline default can be read here; other names and paths are the job's to resolve (a path
            # names a file in the job's own filesystem), so train checks them at the job's start.
            check_text_length(text_cfg, {"text": describe("text", DEFAULT_TEXT_MODEL)})
    except ValueError as problem:
        raise SettingsError(f"training arguments: {problem}") from None
    return model_cfg


def _train_parser() -> RaisingParser:
    """`mmsent train`'s settings as a parser whose errors are SettingsErrors, to check arguments meant for a job."""
    parser = RaisingParser(prog="mmsent train")
    add_training_settings(parser)
    return parser


def _token_pairs(tokens: list[str]) -> list[tuple[str, str]]:
    """`--epochs 3 --amp` -> [("epochs", "3"), ("amp", "true")]."""
    pairs = []
    index = 0
    while index < len(tokens):
        name = tokens[index]
        if not name.startswith("--"):
            raise SettingsError(f"training arguments: expected --name, got {name!r}")
        if index + 1 < len(tokens) and not tokens[index + 1].startswith("--"):
            pairs.append((name[2:], tokens[index + 1]))
            index += 2
        else:
            pairs.append((name[2:], "true"))
            index += 1
    return pairs


def _shared_tokens(args: argparse.Namespace, leaving_out: str) -> list[str]:
    """The training arguments every trial shares, without the one a range sets."""
    return [token for name, value in _token_pairs(_training_tokens(args)) if name != leaving_out for token in (f"--{name}", value)]


def _number_kinds() -> dict[str, type]:
    """Each numeric `mmsent train` option (without its dashes) and its type, int or float."""
    kinds = {"int": int, "float": float}
    return {action.option_strings[0][2:]: kinds[action.type.__name__] for action in _train_parser()._actions
            if action.option_strings and getattr(action.type, "__name__", None) in kinds}  # fmt: skip


def _run_launch(args: argparse.Namespace, env: Environment) -> int:
    hyperparameters = _training_hyperparameters(args)
    if args.local:
        return _launch_local(args, env, hyperparameters)
    return _launch_remote(args, hyperparameters)


def _launch_local(args: argparse.Namespace, env: Environment, hyperparameters: dict[str, str]) -> int:
    import importlib.util

    from mmsent.data.layout import CHANNELS, find_splits

    python = str(args.python) if args.python else sys.executable
    if args.python is not None and not args.python.is_file():
        return error(f"--python {args.python}: no such interpreter")
    if args.python is None and importlib.util.find_spec("sagemaker_training") is None:
        return error("--local runs the SageMaker training toolkit, which is not installed: pip install 'mmsent[local]'")
    from mmsent.sagemaker.images import DEFAULT_FRAMEWORK_VERSION
    from mmsent.sagemaker.local import job_outcome, prepare_tree, run_toolkit
    from mmsent.sagemaker.package import build_sourcedir, image_conflicts, this_environment

    if args.data_dir is None:
        from mmsent.data.sample import cached_sample

        args.data_dir = cached_sample(env.cache_dir)
        print(f"using the built-in sample dataset in {args.data_dir}", file=sys.stderr)
    splits = find_splits(args.data_dir)
    # A channel is the split's folder in MELD.Raw (CSV and clip folder), or the CSV's folder.
    channels = {CHANNELS[split]: files.csv_path.parent for split, files in splits.items()}
    job_name = args.job_name or time.strftime("mmsent-local-%Y%m%d-%H%M%S")
    # Absolute: the toolkit runs with the tree as its working directory and SAGEMAKER_BASE_DIR both.
    base = (args.local_dir or Path("runs") / job_name).resolve()
    sourcedir = base / "sourcedir.tar.gz"
    try:  # refuses a folder that holds a job already, before writing anything into it
        prepare_tree(base, sourcedir, channels, {k: json.dumps(v) for k, v in hyperparameters.items()}, args.input_mode)
    except FileExistsError as problem:
        return error(str(problem))
    framework_version = args.framework_version or DEFAULT_FRAMEWORK_VERSION
    if args.python is None:
        # Under this Python the toolkit's pip install would swap this environment's torch for the
        # image's: the job pins what is installed here instead (make image-check runs the image's).
        here = this_environment()
        print(f"local job in this environment: its torch {here.torch}, torchvision {here.torchvision}, torchaudio "
              f"{here.torchaudio} are pinned as they are (--python VENV runs another set)", file=sys.stderr)  # fmt: skip
        build_sourcedir(sourcedir, framework_version, image=here)
    else:
        for conflict in image_conflicts(framework_version):  # here only a warning: a rehearsal may mean to see it fail
            print(f"warning: {conflict}", file=sys.stderr)
        build_sourcedir(sourcedir, framework_version)
    code = run_toolkit(base, job_name, python=python)
    status, reason = job_outcome(base)
    print(f"\nlocal job {job_name}: {status} (toolkit exit status {code})")
    if status != "Completed":
        print(reason.strip()[-2000:], file=sys.stderr)
        return 1
    print(f"model:       {base / 'model'}\ntensorboard: tensorboard --logdir {base / 'output' / 'tensorboard'}")
    return EXIT_OK


def _launch_remote(args: argparse.Namespace, hyperparameters: dict[str, str]) -> int:
    from mmsent.sagemaker.launch import launch, print_request, wait_for_job

    job_name = args.job_name or time.strftime("mmsent-%Y%m%d-%H%M%S")
    settings, session, framework_version = _job_settings(args, hyperparameters, job_name)
    request = aws(lambda: launch(settings, session, framework_version, data_dir=args.data_dir, dry_run=args.dry_run))
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


def _job_settings(args: argparse.Namespace, hyperparameters: dict[str, str], job_name: str):
    """The training job launch (or each trial of tune) creates: its JobSettings, the boto3 session and the
    training image's framework version. Refuses missing or conflicting options first."""
    from mmsent.sagemaker.images import DEFAULT_FRAMEWORK_VERSION, training_image_uri
    from mmsent.sagemaker.launch import Storage, data_channels, job_uris
    from mmsent.sagemaker.package import image_conflicts
    from mmsent.sagemaker.request import JobSettings

    missing = [flag for flag, value in (("--role", args.role), ("--bucket", args.bucket)) if not value]
    if missing:
        raise SettingsError(f"{' and '.join(missing)} required" + (" (or --local to run here)" if hasattr(args, "local") else ""))
    if args.data_dir is not None and args.train_uri:
        raise SettingsError("give --data-dir or --train-uri/--validation-uri, not both")
    if args.data_dir is None and not args.train_uri:
        raise SettingsError("no training data: give --data-dir (uploaded to S3) or --train-uri s3://...")
    tags = {}
    for tag in args.tag:
        key, separator, value = tag.partition("=")
        if not separator:
            raise SettingsError(f"--tag {tag!r}: expected KEY=VALUE")
        tags[key] = value
    session = aws_session(args.region)
    storage = Storage(args.bucket, args.prefix)
    if args.data_dir is not None:
        channels = data_channels(args.data_dir, storage)
    else:
        channels = {name: uri for name, uri in (("train", args.train_uri), ("validation", args.validation_uri),
                                                ("test", args.test_uri)) if uri}  # fmt: skip
    framework_version = args.framework_version or DEFAULT_FRAMEWORK_VERSION
    if conflicts := image_conflicts(framework_version):  # the job would install, start, then fail at import
        raise SettingsError(f"pytorch-training {framework_version} cannot run the job's requirements:\n  " + "\n  ".join(conflicts))
    image = args.image_uri or training_image_uri(session.region_name, args.instance_type, framework_version)
    settings = JobSettings(
        job_name=job_name, role_arn=args.role, image_uri=image, region=session.region_name, channels=channels,
        training_args=hyperparameters, instance_type=args.instance_type, instance_count=args.instance_count,
        volume_size_gb=args.volume_size, input_mode=args.input_mode, spot=args.spot, max_run_seconds=args.max_run,
        max_wait_seconds=args.max_wait, distribution=args.distribution, tags=tags, **job_uris(storage, job_name),
    )  # fmt: skip
    return settings, session, framework_version


def _run_tune(args: argparse.Namespace, env: Environment) -> int:
    from mmsent.sagemaker.launch import print_request
    from mmsent.sagemaker.tuning import TuningSettings, launch_tuning, parse_range

    hyperparameters = _training_hyperparameters(args)
    ranges = tuple(parse_range(text, _number_kinds()) for text in args.ranges)
    for ranged in ranges:  # each end (each category) as mmsent train itself would take it, with the shared settings
        for value in ranged.values:
            _checked_training_tokens([*_shared_tokens(args, ranged.name), f"--{ranged.name}", value])
    name = args.tuning_job_name or time.strftime("mmsent-tune-%y%m%d-%H%M%S")
    job, session, framework_version = _job_settings(args, hyperparameters, name)
    tuning = TuningSettings(tuning_job_name=name, job=job, ranges=ranges, strategy=args.strategy, max_jobs=args.max_jobs,
                            max_parallel_jobs=args.max_parallel_jobs, early_stopping=args.early_stopping,
                            warm_start=tuple(args.warm_start), tags=job.tags)  # fmt: skip
    request = aws(lambda: launch_tuning(tuning, session, framework_version, data_dir=args.data_dir, dry_run=args.dry_run))
    if args.dry_run:
        print_request(request)
        return EXIT_OK
    print(f"follow it: mmsent tuning describe {name}; pull the best: mmsent jobs pull --best-of {name} --out runs/{name}")
    return EXIT_OK


def _run_tuning_describe(args: argparse.Namespace, env: Environment) -> int:
    from mmsent.sagemaker.tuning import format_trials, list_trials

    def describe_and_list(session):
        sagemaker = session.client("sagemaker")
        job = sagemaker.describe_hyper_parameter_tuning_job(HyperParameterTuningJobName=args.tuning_job)
        return job, list_trials(sagemaker, args.tuning_job)

    job, trials = _sagemaker_call(args, describe_and_list)
    counts = job.get("TrainingJobStatusCounters", {})
    print(f"tuning job {args.tuning_job}: {job['HyperParameterTuningJobStatus']} "
          f"({', '.join(f'{v} {k.lower()}' for k, v in counts.items() if v) or 'no training jobs yet'})")  # fmt: skip
    if best := job.get("BestTrainingJob", {}).get("TrainingJobName"):
        print(f"best: {best}")
    print(format_trials(trials))
    return EXIT_OK


def _sagemaker_call(args: argparse.Namespace, call):
    return aws(lambda: call(aws_session(args.region)), "SageMaker")


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
    from mmsent.sagemaker.tuning import best_training_job

    if (args.job is None) == (args.best_of is None):
        return error("name a training job, or --best-of TUNING_JOB (one of them)")
    if args.best_of is not None:
        args.job = _sagemaker_call(args, lambda s: best_training_job(s.client("sagemaker"), args.best_of))
        print(f"the best training job of {args.best_of}: {args.job}")
    found = _sagemaker_call(args, lambda s: pull(s, args.job, args.out))
    if "model" in found:
        print(f"model:       {found['model']}  (mmsent evaluate --model-dir {found['model']})")
    if "tensorboard" in found:
        print(f"tensorboard: tensorboard --logdir {found['tensorboard']}")
    if not found:
        return error(f"job {args.job} has no model artifacts or TensorBoard logs yet")
    return EXIT_OK
