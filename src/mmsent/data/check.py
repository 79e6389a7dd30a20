"""`mmsent data check`: what a dataset holds and what is wrong with it, before any training.

Every clip is decoded exactly as the training loader decodes it, so the verdicts here are the ones
training will meet: a clip counted as missing its audio here trains with its audio masked out.
"""

from __future__ import annotations

import functools
import os
import statistics
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

from mmsent.config import MediaConfig
from mmsent.data.layout import SplitFiles
from mmsent.data.media import DecodedClip, decode_clip, map_clips
from mmsent.data.meld import read_meld_csv
from mmsent.labels import EMOTIONS, SENTIMENTS

EXAMPLES_PER_ISSUE = 5  # clip names listed per kind of problem


@dataclass
class SplitReport:
    split: str
    csv_path: str
    clip_dir: str | None
    rows: int
    emotions: dict[str, int]
    sentiments: dict[str, int]
    clips_checked: int = 0  # 0 when the split has no clips (text-only) or decoding was skipped
    clips_ok: int = 0  # decoded with video and audio and no problem at all
    issues: dict[str, int] = field(default_factory=dict)  # media.ISSUES -> clips with it
    issue_examples: dict[str, list[str]] = field(default_factory=dict)
    audio_channels: dict[str, int] = field(default_factory=dict)  # source channel count -> clips
    duration_seconds: dict[str, float] = field(default_factory=dict)  # min, median, mean, max

    @property
    def clips_absent(self) -> bool:
        return self.clip_dir is None


def check_split(files: SplitFiles, cfg: MediaConfig, decode: bool = True, workers: int = 1,
                progress: bool | None = None) -> SplitReport:
    """Read a split's CSV (raising MeldFormatError if it is unusable) and decode each of its clips."""
    utterances = read_meld_csv(files.csv_path)
    report = SplitReport(
        split=files.split,
        csv_path=str(files.csv_path),
        clip_dir=None if files.clip_dir is None else str(files.clip_dir),
        rows=len(utterances),
        emotions=_counts(EMOTIONS, (u.emotion for u in utterances)),
        sentiments=_counts(SENTIMENTS, (u.sentiment for u in utterances)),
    )
    if files.clip_dir is None or not decode:
        return report
    names = [u.clip_name for u in utterances]
    paths = [files.clip_dir / name for name in names]
    clips = list(map_clips(functools.partial(_probe, cfg=cfg), paths, workers, f"check {files.split}", progress))
    issues: Counter = Counter()
    channels: Counter = Counter()
    durations = []
    for name, clip in zip(names, clips):
        for issue in clip.issues:
            issues[issue] += 1
            examples = report.issue_examples.setdefault(issue, [])
            if len(examples) < EXAMPLES_PER_ISSUE:
                examples.append(name)
        if clip.audio_channels is not None:
            channels[str(clip.audio_channels)] += 1
        if clip.duration is not None:
            durations.append(clip.duration)
        report.clips_ok += not clip.issues
    report.clips_checked = len(clips)
    report.issues = dict(sorted(issues.items()))
    report.audio_channels = dict(sorted(channels.items()))
    if durations:
        report.duration_seconds = {
            "min": min(durations),
            "median": statistics.median(durations),
            "mean": statistics.fmean(durations),
            "max": max(durations),
        }
    return report


def _counts(names: tuple[str, ...], indices) -> dict[str, int]:
    counts = Counter(indices)
    return {name: counts.get(i, 0) for i, name in enumerate(names)}


def _probe(path: Path, cfg: MediaConfig) -> DecodedClip:
    clip = decode_clip(path, cfg)
    # Only the verdicts travel back from a worker, not the pixels and samples.
    return DecodedClip(None, None, clip.duration, clip.audio_channels, clip.issues)


def default_workers() -> int:
    return max(1, os.cpu_count() or 1)


def report_as_dict(reports: list[SplitReport]) -> dict:
    return {"splits": [asdict(r) | {"clips_absent": r.clips_absent} for r in reports]}


def format_report(reports: list[SplitReport]) -> str:
    """The report as plain-text tables, for a terminal or a log."""
    splits = [r.split for r in reports]
    sections = [_table(["split", "rows", "clips", "ok", "clip folder"], [
        [r.split, r.rows, "absent" if r.clips_absent else r.clips_checked,
         "-" if r.clips_absent else r.clips_ok, r.clip_dir or "no clips: text-only"]
        for r in reports
    ], left=(0, 4))]  # fmt: skip
    for title, names, key in (("emotion", EMOTIONS, "emotions"), ("sentiment", SENTIMENTS, "sentiments")):
        rows = [[name] + [f"{getattr(r, key)[name]} ({100 * getattr(r, key)[name] / max(r.rows, 1):.1f}%)" for r in reports]
                for name in names]  # fmt: skip
        sections.append(_table([title, *splits], rows))
    checked = [r for r in reports if r.clips_checked]
    if checked:
        names = [r.split for r in checked]
        kinds = sorted({k for r in checked for k in r.issues})
        sections.append(_table(["clip problem", *names], [[k] + [r.issues.get(k, 0) for r in checked] for k in kinds]
                               or [["(none)"] + [0] * len(checked)]))
        sections.append(_table(["duration (s)", *names], [
            [stat] + [f"{r.duration_seconds[stat]:.2f}" if r.duration_seconds else "-" for r in checked]
            for stat in ("min", "median", "mean", "max")
        ]))  # fmt: skip
        counts = sorted({c for r in checked for c in r.audio_channels}, key=int)
        sections.append(_table(["audio channels", *names], [[c] + [r.audio_channels.get(c, 0) for r in checked] for c in counts]))
        examples = [
            f"{r.split} {kind}: {', '.join(names)}{' ...' if r.issues[kind] > len(names) else ''}"
            for r in checked for kind, names in r.issue_examples.items()
        ]  # fmt: skip
        if examples:
            sections.append("\n".join(examples))
    notes = [f"{r.split}: no clips found beside {r.csv_path}; usable for text-only training" for r in reports if r.clips_absent]
    if notes:
        sections.append("\n".join(notes))
    return "\n\n".join(sections)


def _table(header: list[str], rows: list[list], left: tuple[int, ...] = (0,)) -> str:
    cells = [header, *[[str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) if i in left else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))) for row in cells]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(line.rstrip() for line in lines)
