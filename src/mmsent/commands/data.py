"""`mmsent sample`, `mmsent data check` and `mmsent cache`."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from mmsent.arguments import add_config_arguments
from mmsent.commands.common import (
    EXIT_OK, add_data_dir, add_rebuild_cache, error, media_config, positive_int, resolve_splits,
)  # fmt: skip
from mmsent.config import MediaConfig
from mmsent.environment import Environment


def add_parsers(commands) -> None:
    sample = commands.add_parser("sample", help="write the built-in MELD-format sample dataset")
    sample.add_argument("--out", type=Path, help="folder to create, which must not exist or be empty "
                        "(default: generate once into the cache folder and print its path)")
    sample.add_argument("--seed", type=int, default=0, help="the same seed writes the same dataset")
    sample.add_argument("--train-size", type=positive_int, default=420, help="clips in the train split")
    sample.add_argument("--dev-size", type=positive_int, default=90, help="clips in the dev split")
    sample.add_argument("--test-size", type=positive_int, default=90, help="clips in the test split")
    sample.add_argument("--text-cue", choices=("theme", "emotion"), default="theme",
                        help="theme: a transcript tells one of three themes, and two modalities together identify the "
                             "emotion; emotion: the transcript names its emotion without noise, so text alone identifies "
                             "it, and audio with video still do (default: theme)")  # fmt: skip
    sample.add_argument("--workers", type=positive_int, default=None, help="encoding processes (default: all cores)")
    sample.set_defaults(run=_run_sample)

    data = commands.add_parser("data", help="inspect datasets").add_subparsers(metavar="ACTION")
    check = data.add_parser("check", help="validate a dataset and report what it holds")
    add_data_dir(check)
    check.add_argument("--json", action="store_true", help="print the report as JSON")
    check.add_argument("--no-decode", action="store_true", help="read the CSVs only; skip decoding the clips")
    check.add_argument("--workers", type=positive_int, default=None, help="decoding processes (default: all cores)")
    check.set_defaults(run=_run_data_check)

    download = data.add_parser("download", help="download MELD.Raw (about 10 GB) and extract it into the layout train reads",
                                description="Download MELD.Raw.tar.gz (resumed after an interruption), check its size "
                                "(and SHA-256), extract it and its split archives safely into OUT/MELD.Raw, then report "
                                "on it as `data check` does. A second run finds it whole and does nothing.")  # fmt: skip
    download.add_argument("--out", type=Path, required=True, help="folder to download into (MELD.Raw/ is made there)")
    download.add_argument("--url", default=None, help="where MELD.Raw.tar.gz is (default: its authors' address)")
    download.add_argument("--sha256", help="the archive's expected SHA-256, checked before it is extracted")
    download.add_argument("--no-decode", action="store_true", help="report from the CSVs only; skip decoding the clips")
    download.add_argument("--workers", type=positive_int, default=None, help="decoding processes (default: all cores)")
    download.set_defaults(run=_run_data_download)

    cache = commands.add_parser("cache", help="decode every clip once into a memory-mapped media cache",
                                description="Decode every clip once (frames as uint8, log-mel as float16) into a "
                                "memory-mapped cache that `mmsent train --cache-dir` reads instead of decoding. "
                                "Up-to-date splits are kept, changed ones rebuilt, an interrupted build resumed.")  # fmt: skip
    add_data_dir(cache, decodes=True)
    cache.add_argument("--cache-dir", type=Path, required=True, help="the cache folder (created if absent)")
    cache.add_argument("--workers", type=positive_int, default=None, help="decoding processes (default: all cores)")
    add_rebuild_cache(cache)
    add_config_arguments(cache, MediaConfig)
    cache.set_defaults(run=_run_cache)


def _run_sample(args: argparse.Namespace, env: Environment) -> int:
    from mmsent.data.sample import SampleConfig, cached_sample, write_sample

    cfg = SampleConfig(train_size=args.train_size, dev_size=args.dev_size, test_size=args.test_size, seed=args.seed,
                       text_cue=args.text_cue)  # fmt: skip
    if args.out is None:
        print(f"the sample dataset is in {cached_sample(env.cache_dir, cfg)}")
        return EXIT_OK
    try:
        out = write_sample(args.out, cfg, workers=args.workers)
    except FileExistsError as problem:
        return error(str(problem))
    print(f"wrote the sample dataset to {out} ({sum(cfg.sizes().values())} clips)")
    return EXIT_OK


def _run_data_check(args: argparse.Namespace, env: Environment) -> int:
    from mmsent.data.check import check_split, default_workers, format_report, report_as_dict
    splits = resolve_splits(args, env)
    reports = [check_split(files, MediaConfig(), decode=not args.no_decode, workers=args.workers or default_workers())
               for files in splits.values()]  # fmt: skip
    print(json.dumps(report_as_dict(reports), indent=2) if args.json else format_report(reports))
    return EXIT_OK


def _run_data_download(args: argparse.Namespace, env: Environment) -> int:
    from mmsent.data.check import check_split, default_workers, format_report
    from mmsent.data.download import MELD_URL, download_meld
    from mmsent.data.layout import find_splits

    if args.sha256 is not None and (len(args.sha256) != 64 or any(c not in "0123456789abcdefABCDEF" for c in args.sha256)):
        return error(f"--sha256 {args.sha256!r}: 64 hexadecimal digits expected")
    data = download_meld(args.out, args.url or MELD_URL, args.sha256)
    reports = [check_split(files, MediaConfig(), decode=not args.no_decode, workers=args.workers or default_workers())
               for files in find_splits(data).values()]  # fmt: skip
    print(format_report(reports))
    return EXIT_OK


def _run_cache(args: argparse.Namespace, env: Environment) -> int:
    from mmsent.data.cache import build_cache
    from mmsent.data.check import default_workers

    splits = resolve_splits(args, env)
    media = media_config(args, splits)
    caches = build_cache(splits, media, args.cache_dir, args.workers or default_workers(), rebuild=args.rebuild_cache)
    if not caches:
        return error("no clips to cache: the data is text-only")
    for split, cache in caches.items():
        print(f"{split}: {cache.rows} clips in {cache.folder}")
    data = f"--data-dir {args.data_dir} " if args.data_dir is not None else ""
    print(f"train from it: mmsent train {data}--cache-dir {args.cache_dir} ...")
    return EXIT_OK
