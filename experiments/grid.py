"""What the experiment scripts share: a grid of named settings run over seeds, and its summary."""

from __future__ import annotations

import argparse
import statistics


def grid_arguments(description: str, settings: dict[str, list[str]], default: str, epochs: int) -> argparse.ArgumentParser:
    """A parser with --settings (names from `settings`), --seeds and --epochs; the script adds the rest."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--settings", default=default, help=f"comma-separated, of: {', '.join(settings)}")
    parser.add_argument("--seeds", default="1,2,3")
    parser.add_argument("--epochs", type=int, default=epochs)
    return parser


def chosen(parser: argparse.ArgumentParser, args: argparse.Namespace, settings: dict[str, list[str]]) -> tuple[list[str], list[int]]:
    """The setting names and seeds asked for; an unknown name is a usage error listing the known ones."""
    names = args.settings.split(",")
    unknown = [n for n in names if n not in settings]
    if unknown:
        parser.error(f"unknown setting(s) {', '.join(unknown)}; known: {', '.join(settings)}")
    return names, [int(s) for s in args.seeds.split(",")]


def mean_sd(values: list[float]) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.3f} ± {sd:.3f}"
