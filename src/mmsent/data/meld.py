"""MELD CSVs: the published schema, strict validation, and text repair for the tokenizer.

MELD's CSVs are valid UTF-8 full of typographic punctuation. They are read as UTF-8 explicitly
(a platform default encoding turns ’ into â€™) and each utterance is normalised with ftfy, which
also repairs real mojibake in copies that another tool decoded with the wrong encoding and re-saved.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import ftfy

from mmsent.labels import EMOTION_TO_INDEX, EMOTIONS, SENTIMENT_TO_INDEX, SENTIMENTS
from mmsent.errors import MmsentError

# The columns of MELD's published train/dev/test CSVs, in their order.
MELD_COLUMNS: tuple[str, ...] = (
    "Sr No.",
    "Utterance",
    "Speaker",
    "Emotion",
    "Sentiment",
    "Dialogue_ID",
    "Utterance_ID",
    "Season",
    "Episode",
    "StartTime",
    "EndTime",
)
# Without these a row cannot be trained on or matched to its clip.
REQUIRED_COLUMNS: tuple[str, ...] = ("Utterance", "Emotion", "Sentiment", "Dialogue_ID", "Utterance_ID")
LABEL_COLUMNS: tuple[str, ...] = ("Emotion", "Sentiment")
_INTEGER_COLUMNS: tuple[str, ...] = ("Sr No.", "Dialogue_ID", "Utterance_ID", "Season", "Episode")


class MeldFormatError(MmsentError, ValueError):
    """A CSV that cannot be used as it is; the message names the file, the row and the value."""


@dataclass(frozen=True)
class Utterance:
    """One row of a MELD CSV, validated, with its text normalised for the tokenizer."""

    sr_no: int | None
    text: str
    speaker: str
    emotion: int  # index into labels.EMOTIONS; None only in a CSV read with require_labels=False
    sentiment: int  # index into labels.SENTIMENTS; likewise
    dialogue_id: int
    utterance_id: int
    season: int | None
    episode: int | None
    start_time: str
    end_time: str

    @property
    def clip_name(self) -> str:
        """MELD.Raw's file name for this row's clip."""
        return f"dia{self.dialogue_id}_utt{self.utterance_id}.mp4"

    @property
    def emotion_name(self) -> str:
        return EMOTIONS[self.emotion]

    @property
    def sentiment_name(self) -> str:
        return SENTIMENTS[self.sentiment]


def normalize_text(text: str) -> str:
    """Repair mojibake and normalise punctuation: ’ becomes ', … becomes ..., â€™ becomes '."""
    return ftfy.fix_text(text, normalization="NFKC").strip()


def read_meld_csv(path: Path, require_labels: bool = True) -> list[Utterance]:
    """Read and validate a MELD-format CSV. Raises MeldFormatError naming the file, row and value.
    `require_labels` False accepts a CSV without the Emotion and Sentiment columns (rows to
    predict): its utterances have None for both. Where the columns are there, they are checked."""
    path = Path(path)
    try:
        # utf-8-sig: also accept the byte-order mark that spreadsheet programs prepend.
        with path.open(encoding="utf-8-sig", newline="") as handle:
            reader = csv.DictReader(handle)
            header = reader.fieldnames or []
            labelled = require_labels or any(column in header for column in LABEL_COLUMNS)
            required = REQUIRED_COLUMNS if labelled else tuple(c for c in REQUIRED_COLUMNS if c not in LABEL_COLUMNS)
            missing = [column for column in required if column not in header]
            if missing:
                raise MeldFormatError(
                    f"{path}: missing column(s) {', '.join(repr(c) for c in missing)}; "
                    f"the header is {', '.join(repr(c) for c in header) or '(empty)'}, "
                    f"a MELD CSV has {', '.join(MELD_COLUMNS)}"
                )
            utterances, lines = [], {}
            for row in reader:
                utterance = _parse_row(path, reader.line_num, row, labelled)
                key = (utterance.dialogue_id, utterance.utterance_id)
                if key in lines:  # the clip name dia{D}_utt{U}.mp4 would then belong to two rows
                    raise MeldFormatError(f"{path}: rows at lines {lines[key]} and {reader.line_num} are both "
                                          f"Dialogue_ID {key[0]}, Utterance_ID {key[1]}; each utterance must appear once")  # fmt: skip
                lines[key] = reader.line_num
                utterances.append(utterance)
            if not utterances:
                raise MeldFormatError(f"{path}: a header and no rows; a split needs at least one utterance")
            return utterances
    except UnicodeDecodeError as error:
        raise MeldFormatError(
            f"{path}: not valid UTF-8 at byte {error.start} ({error.object[error.start:error.start + 4]!r}); "
            "MELD CSVs are UTF-8: re-save the file as UTF-8"
        ) from error
    except csv.Error as error:
        raise MeldFormatError(f"{path}: not a readable CSV: {error}") from error
    except FileNotFoundError as error:
        raise MeldFormatError(f"{path}: no such CSV file") from error
    except OSError as error:  # permission denied, a folder named like a CSV, an I/O error
        raise MeldFormatError(f"{path}: cannot read the CSV ({error.strerror or error})") from error


def _parse_row(path: Path, line: int, row: dict[str, str | None], labelled: bool = True) -> Utterance:
    where = f"{path}: row at line {line}"
    if None in row:  # csv.DictReader puts surplus fields under the key None
        raise MeldFormatError(f"{where}: more fields than the header's {len(row) - 1} columns")

    def text_of(column: str) -> str:
        value = row.get(column)
        return "" if value is None else value.strip()

    def label(column: str, index: dict[str, int]) -> int:
        value = text_of(column)
        try:
            return index[value.lower()]
        except KeyError:
            raise MeldFormatError(
                f"{where}: unknown {column.lower()} {value!r}; expected one of {', '.join(index)}"
            ) from None

    def integer(column: str) -> int | None:
        value = text_of(column)
        if column not in row or (value == "" and column not in REQUIRED_COLUMNS):
            return None
        try:
            return int(value)
        except ValueError:
            raise MeldFormatError(f"{where}: {column} must be an integer, got {value!r}") from None

    ints = {column: integer(column) for column in _INTEGER_COLUMNS}
    return Utterance(
        sr_no=ints["Sr No."],
        text=normalize_text(row["Utterance"] or ""),
        speaker=text_of("Speaker"),
        emotion=label("Emotion", EMOTION_TO_INDEX) if labelled else None,
        sentiment=label("Sentiment", SENTIMENT_TO_INDEX) if labelled else None,
        dialogue_id=ints["Dialogue_ID"],
        utterance_id=ints["Utterance_ID"],
        season=ints["Season"],
        episode=ints["Episode"],
        start_time=text_of("StartTime"),
        end_time=text_of("EndTime"),
    )


def write_meld_csv(path: Path, rows: list[dict[str, object]]) -> None:
    """Write rows (dicts keyed by MELD_COLUMNS) as a MELD CSV, UTF-8, in the published column order."""
    with Path(path).open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=MELD_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
