"""`mmsent tune`: a SageMaker hyperparameter tuning job over `mmsent train`'s settings.

Every training job of it is the job `mmsent launch` would create (image, sources, channels, instances,
spot, the same static hyperparameters), with some settings drawn from ranges by the tuning strategy,
maximising validation emotion weighted F1 as the training code's own metric definitions read it from
the log. Ranges are given as `--range NAME=SPEC`, NAME a `mmsent train` option without its dashes:

    learning-rate=1e-5:1e-3:log     from MIN to MAX (scale: auto, linear, log, reverse-log); a number
    epochs=2:6                      option's type decides: an integer option gives an integer range
    batch-size=8,16,32              the values listed, as categories

Both ends of a range, and each category, are checked by `mmsent train`'s own validation before any call.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from mmsent.config import TrainConfig
from mmsent.errors import MmsentError
from mmsent.sagemaker.request import JobSettings, LaunchValidationError, build_request, is_service_name, validate_request
from mmsent.training.tracking import METRIC_DEFINITIONS

OBJECTIVE = "validation:emotion_weighted_f1"
STRATEGIES: tuple[str, ...] = ("Bayesian", "Random", "Hyperband")
SCALES: dict[str, str] = {"auto": "Auto", "linear": "Linear", "log": "Logarithmic", "reverse-log": "ReverseLogarithmic"}
TUNING_JOB_NAME_LENGTH = 32  # the service's limit
MAX_PARENT_JOBS = 5  # warm start: the service's limit
MAX_CATEGORIES = 30
# Hyperband spends resource in epochs: a trial is stopped early between these (mmsent train's --epochs is
# the maximum a trial may reach; the strategy's own early stopping replaces TrainingJobEarlyStoppingType).
HYPERBAND_MIN_EPOCHS = 1
assert OBJECTIVE in {d["Name"] for d in METRIC_DEFINITIONS}


class TuningValidationError(LaunchValidationError):
    """The tuning request breaks SageMaker's rules or mmsent train's; the message lists each problem."""

    request = "tuning job"


@dataclass(frozen=True)
class ParameterRange:
    name: str  # a `mmsent train` option without its dashes
    kind: str  # Integer, Continuous or Categorical
    values: tuple[str, ...]  # (min, max), or the categories
    scaling: str = "Auto"

    def as_request(self) -> dict:
        if self.kind == "Categorical":
            return {"Name": self.name, "Values": list(self.values)}
        return {"Name": self.name, "MinValue": self.values[0], "MaxValue": self.values[1], "ScalingType": self.scaling}


def parse_range(text: str, number_kinds: dict[str, type]) -> ParameterRange:
    """`NAME=MIN:MAX[:SCALE]` or `NAME=A,B,C`; `number_kinds` maps each numeric train option to int or float."""
    name, separator, spec = text.partition("=")
    name = name.strip().removeprefix("--")
    if not separator or not name or not spec:
        raise TuningValidationError([f"--range {text!r}: expected NAME=MIN:MAX[:SCALE] or NAME=A,B,C"])
    if "," in spec or ":" not in spec:
        values = tuple(v.strip() for v in spec.split(","))
        if any(not v for v in values) or len(set(values)) != len(values) or len(values) > MAX_CATEGORIES:
            raise TuningValidationError([f"--range {text!r}: 1 to {MAX_CATEGORIES} distinct values, comma-separated"])
        return ParameterRange(name, "Categorical", values)
    parts = spec.split(":")
    if len(parts) not in (2, 3):
        raise TuningValidationError([f"--range {text!r}: expected MIN:MAX or MIN:MAX:SCALE"])
    scale = parts[2] if len(parts) == 3 else "auto"
    if scale not in SCALES:
        raise TuningValidationError([f"--range {text!r}: scale {scale!r}, expected one of {', '.join(SCALES)}"])
    kind = number_kinds.get(name)
    if kind is None:
        raise TuningValidationError([f"--range {text!r}: {name} is not a numeric mmsent train setting; list its values (A,B,C)"])
    try:
        low, high = (kind(p) for p in parts[:2])
    except ValueError:
        raise TuningValidationError([f"--range {text!r}: {name} takes {'integers' if kind is int else 'numbers'}"]) from None
    problems = []
    if not low < high:
        problems.append(f"--range {text!r}: MIN must be below MAX")
    if scale in ("log", "reverse-log") and low <= 0:
        problems.append(f"--range {text!r}: a {scale} scale needs MIN above 0")
    if scale == "reverse-log" and (kind is int or high >= 1):
        problems.append(f"--range {text!r}: a reverse-log scale needs a continuous range below 1")
    if problems:
        raise TuningValidationError(problems)
    return ParameterRange(name, "Integer" if kind is int else "Continuous", (parts[0], parts[1]), SCALES[scale])


@dataclass(frozen=True)
class TuningSettings:
    tuning_job_name: str
    job: JobSettings  # the training job every trial runs; its training_args are the static hyperparameters
    ranges: tuple[ParameterRange, ...]
    strategy: str = "Bayesian"
    max_jobs: int = 10
    max_parallel_jobs: int = 2
    early_stopping: bool = False
    warm_start: tuple[str, ...] = ()  # earlier tuning jobs, same data and algorithm
    tags: dict[str, str] = field(default_factory=dict)


def build_tuning_request(t: TuningSettings) -> dict:
    """The CreateHyperParameterTuningJob request: the training job's request as its definition, the ranged
    settings left out of its static hyperparameters."""
    training = build_request(t.job)
    ranged = {r.name for r in t.ranges}
    definition = {
        "StaticHyperParameters": {k: v for k, v in training["HyperParameters"].items() if k not in ranged},
        "AlgorithmSpecification": {k: v for k, v in training["AlgorithmSpecification"].items() if k != "EnableSageMakerMetricsTimeSeries"},
        **{key: training[key] for key in ("RoleArn", "InputDataConfig", "OutputDataConfig", "ResourceConfig",
                                          "StoppingCondition", "EnableManagedSpotTraining", "CheckpointConfig")},
    }  # fmt: skip
    config: dict = {
        "Strategy": t.strategy,
        "HyperParameterTuningJobObjective": {"Type": "Maximize", "MetricName": OBJECTIVE},
        "ResourceLimits": {"MaxNumberOfTrainingJobs": t.max_jobs, "MaxParallelTrainingJobs": t.max_parallel_jobs},
        "ParameterRanges": {
            f"{kind}ParameterRanges": [r.as_request() for r in t.ranges if r.kind == kind]
            for kind in ("Integer", "Continuous", "Categorical")
        },
        "TrainingJobEarlyStoppingType": "Auto" if t.early_stopping else "Off",
    }
    if t.strategy == "Hyperband":
        static = definition["StaticHyperParameters"]
        epochs = int(json.loads(static["epochs"])) if "epochs" in static else TrainConfig().epochs
        config["StrategyConfig"] = {"HyperbandStrategyConfig": {"MinResource": HYPERBAND_MIN_EPOCHS, "MaxResource": epochs}}
    request = {"HyperParameterTuningJobName": t.tuning_job_name, "HyperParameterTuningJobConfig": config,
               "TrainingJobDefinition": definition, "Tags": [{"Key": k, "Value": v} for k, v in t.tags.items()]}  # fmt: skip
    if t.warm_start:
        request["WarmStartConfig"] = {"ParentHyperParameterTuningJobs": [{"HyperParameterTuningJobName": n} for n in t.warm_start],
                                      "WarmStartType": "IdenticalDataAndAlgorithm"}  # fmt: skip
    return request


def validate_tuning(t: TuningSettings) -> None:
    """Raise TuningValidationError naming each rule the tuning job breaks (the training job's own rules
    included, as launch checks them)."""
    problems: list[str] = []
    try:
        validate_request(build_request(t.job))
    except MmsentError as error:
        problems += getattr(error, "problems", [str(error)])
    if not is_service_name(t.tuning_job_name, TUNING_JOB_NAME_LENGTH):
        problems.append(f"tuning job name {t.tuning_job_name!r}: 1-32 letters, digits and hyphens, starting and ending "
                        "with a letter or digit")  # fmt: skip
    if t.strategy not in STRATEGIES:
        problems.append(f"strategy {t.strategy!r}: one of {', '.join(STRATEGIES)}")
    if not t.ranges:
        problems.append("no --range: a tuning job needs at least one setting to vary")
    names = [r.name for r in t.ranges]
    if len(set(names)) != len(names):
        problems.append(f"a setting is ranged twice: {', '.join(sorted({n for n in names if names.count(n) > 1}))}")
    if not 1 <= t.max_parallel_jobs <= t.max_jobs:
        problems.append(f"--max-parallel-jobs {t.max_parallel_jobs}: 1 to --max-jobs ({t.max_jobs})")
    if t.max_jobs < 1:
        problems.append(f"--max-jobs {t.max_jobs}: at least 1")
    if t.strategy == "Hyperband":
        if t.early_stopping:
            problems.append("--early-stopping: Hyperband stops trials early by itself; leave it out")
        if "epochs" in names:
            problems.append("--range epochs: Hyperband gives each trial its epochs (up to --epochs); range other settings")
    if len(t.warm_start) > MAX_PARENT_JOBS:
        problems.append(f"--warm-start: {len(t.warm_start)} parent jobs, at most {MAX_PARENT_JOBS}")
    for parent in t.warm_start:
        if not is_service_name(parent, TUNING_JOB_NAME_LENGTH):
            problems.append(f"--warm-start {parent!r}: not a tuning job name")
    if problems:
        raise TuningValidationError(problems)


def format_trials(trials: list[dict]) -> str:
    """The tuning job's training jobs, best objective first (those without a value last)."""
    ordered = sorted(trials, key=lambda t: -t.get("FinalHyperParameterTuningJobObjectiveMetric", {}).get("Value", float("-inf")))
    lines = [f"{'training job':<44} {'status':<11} {OBJECTIVE:>30}  settings"]
    for trial in ordered:
        value = trial.get("FinalHyperParameterTuningJobObjectiveMetric", {}).get("Value")
        settings = " ".join(f"{k}={v}" for k, v in sorted(trial.get("TunedHyperParameters", {}).items()))
        shown = f"{value:.4f}" if value is not None else "-"
        lines.append(f"{trial['TrainingJobName']:<44} {trial['TrainingJobStatus']:<11} {shown:>30}  {settings}")
    return "\n".join(lines)


def list_trials(sagemaker, tuning_job_name: str) -> list[dict]:
    """Every training job of the tuning job, best objective first."""
    found = []
    paginator = sagemaker.get_paginator("list_training_jobs_for_hyper_parameter_tuning_job")
    for page in paginator.paginate(HyperParameterTuningJobName=tuning_job_name, SortBy="FinalObjectiveMetricValue",
                                   SortOrder="Descending"):  # fmt: skip
        found += page["TrainingJobSummaries"]
    return found


def best_training_job(sagemaker, tuning_job_name: str) -> str:
    """The training job the tuning job found best so far."""
    job = sagemaker.describe_hyper_parameter_tuning_job(HyperParameterTuningJobName=tuning_job_name)
    best = job.get("BestTrainingJob", {}).get("TrainingJobName")
    if best is None:
        raise MmsentError(f"tuning job {tuning_job_name} ({job['HyperParameterTuningJobStatus']}) has no best training job yet")
    return best


def launch_tuning(t: TuningSettings, session, framework_version: str, data_dir=None, dry_run: bool = False) -> dict:
    """Validate, then (unless dry_run) upload what every trial reads, as launch does, and create the tuning job."""
    from mmsent.sagemaker.launch import upload_inputs

    validate_tuning(t)
    request = build_tuning_request(t)
    if dry_run:
        return request
    upload_inputs(t.job, session, framework_version, data_dir)
    session.client("sagemaker").create_hyper_parameter_tuning_job(**request)
    print(f"created tuning job {t.tuning_job_name}: {t.strategy}, up to {t.max_jobs} training jobs, {t.max_parallel_jobs} at a "
          f"time, each {t.job.instance_count} x {t.job.instance_type}{', spot' if t.job.spot else ''}")  # fmt: skip
    return request
