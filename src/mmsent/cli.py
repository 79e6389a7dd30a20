"""The `mmsent` command line. `main(argv)` returns the exit status, so tests can call it directly.

Subcommands:
  sample        write the built-in MELD-format sample dataset
  data check    validate a dataset: rows, labels, broken clips, durations
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from mmsent.config import MediaConfig
from mmsent.environment import Environment

EXIT_OK = 0
EXIT_BAD_INPUT = 2  # a usage error, or data that cannot be used as it is


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "run"):
        parser.print_help()
        return EXIT_BAD_INPUT
    return args.run(args, Environment.read())


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mmsent", description=__doc__.split("\n\n")[0])
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
    check.add_argument("--data-dir", type=Path, help="MELD.Raw-style or flat folder (default: the SM_CHANNEL_* "
                       "folders inside a SageMaker job, else the built-in sample dataset)")
    check.add_argument("--json", action="store_true", help="print the report as JSON")
    check.add_argument("--no-decode", action="store_true", help="read the CSVs only; skip decoding the clips")
    check.add_argument("--workers", type=_positive_int, default=None, help="decoding processes (default: all cores)")
    check.set_defaults(run=_run_data_check)
    return parser


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
    from mmsent.data.layout import DatasetLayoutError, find_splits, splits_from_channels
    from mmsent.data.meld import MeldFormatError
    from mmsent.data.sample import cached_sample

    try:
        if args.data_dir is not None:
            splits = find_splits(args.data_dir)
        elif env.channels:
            splits = splits_from_channels(env.channels)
        else:
            sample = cached_sample(env.cache_dir)
            print(f"checking the built-in sample dataset in {sample}", file=sys.stderr)
            splits = find_splits(sample)
        reports = [
            check_split(files, MediaConfig(), decode=not args.no_decode, workers=args.workers or default_workers())
            for files in splits.values()
        ]
    except (DatasetLayoutError, MeldFormatError) as error:
        return _error(str(error))
    print(json.dumps(report_as_dict(reports), indent=2) if args.json else format_report(reports))
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
