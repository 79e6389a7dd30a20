"""The `mmsent` command line. `main(argv)` returns the exit status, so tests can call it directly.

Subcommands:
  sample        write the built-in MELD-format sample dataset
  data check    validate a dataset: rows, labels, broken clips, durations
  data download fetch and unpack MELD.Raw (resumable), then check it
  cache         decode every clip once into a memory-mapped media cache
  params        parameter counts per component, for any model settings
  train         train the fusion model (the same script runs inside a SageMaker training job)
  evaluate      score a model dir on a split: per-class table, confusion matrices, JSON report
  predict       emotion and sentiment of your own clips or transcripts, with a model dir
  serve         a model dir behind HTTP: SageMaker's GET /ping and POST /invocations
  launch        run `mmsent train` as a SageMaker training job (or locally through the real toolkit)
  jobs          list, describe, stop SageMaker training jobs; pull a job's model and TensorBoard logs
  tune          a SageMaker hyperparameter tuning job over train's settings; `tuning describe` lists its trials
  deploy        serve a model dir (or a job's model) from a SageMaker endpoint, real-time or serverless
  endpoints     list, invoke, delete SageMaker endpoints
  transform     classify many clips as a SageMaker batch transform job; `transforms results` reads its answers
"""

from __future__ import annotations

import argparse
import sys

from mmsent import __version__
from mmsent.commands import data, endpoints, inference, model, sagemaker, transform
from mmsent.commands.common import EXIT_BAD_INPUT, EXIT_INTERRUPTED, error
from mmsent.environment import Environment
from mmsent.errors import MmsentError


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "run"):
        parser.print_help()
        return EXIT_BAD_INPUT
    try:
        return args.run(args, Environment.read())
    except MmsentError as problem:  # input or a state the user can fix: the message names it. Anything else is a bug: its traceback shows
        return error(str(problem))
    except KeyboardInterrupt:  # Ctrl-C (a second one, during training): one line, the shell's status for SIGINT
        print("\nmmsent: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mmsent", description="Train multimodal emotion and sentiment classifiers on "
                                     "MELD-format video, and use them: predict, serve, deploy.")  # fmt: skip
    parser.add_argument("--version", action="version", version=f"mmsent {__version__}")
    commands = parser.add_subparsers(metavar="COMMAND")
    for area in (data, model, inference, sagemaker, endpoints, transform):
        area.add_parsers(commands)
    return parser


if __name__ == "__main__":
    sys.exit(main())
