"""The `mmsent` command line. `main(argv)` returns the exit status, so tests can call it directly.

Subcommands:
  sample        write the built-in MELD-format sample dataset
  data check    validate a dataset: rows, labels, broken clips, durations
  params        parameter counts per component, for any model settings
  train         train the fusion model (the same script runs inside a SageMaker training job)
  evaluate      score a model dir on a split: per-class table, confusion matrices, JSON report
  predict       emotion and sentiment of your own clips or transcripts, with a model dir
  serve         a model dir behind HTTP: SageMaker's GET /ping and POST /invocations
  launch        run `mmsent train` as a SageMaker training job (or locally through the real toolkit)
  jobs          list, describe, stop SageMaker training jobs; pull a job's model and TensorBoard logs
  deploy        serve a model dir (or a job's model) from a SageMaker endpoint, real-time or serverless
  endpoints     list, invoke, delete SageMaker endpoints
"""

from __future__ import annotations

import argparse
import sys

from mmsent.commands import data, endpoints, inference, model, sagemaker
from mmsent.commands.common import EXIT_BAD_INPUT, EXIT_INTERRUPTED, error
from mmsent.environment import Environment


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "run"):
        parser.print_help()
        return EXIT_BAD_INPUT
    try:
        return args.run(args, Environment.read())
    except ValueError as problem:  # a config's own validation: the message names the setting
        return error(str(problem))
    except KeyboardInterrupt:  # Ctrl-C (a second one, during training): one line, the shell's status for SIGINT
        print("\nmmsent: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mmsent", description="Train multimodal emotion and sentiment classifiers on MELD-format video.",
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n")[1])  # fmt: skip
    commands = parser.add_subparsers(metavar="COMMAND")
    for area in (data, model, inference, sagemaker, endpoints):
        area.add_parsers(commands)
    return parser


if __name__ == "__main__":
    sys.exit(main())
