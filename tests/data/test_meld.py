import csv
from collections import Counter
from pathlib import Path

import ftfy.bad_codecs  # noqa: F401  registers the sloppy-windows-1252 codec
import pytest

from mmsent.data.meld import MELD_COLUMNS, MeldFormatError, normalize_text, read_meld_csv, write_meld_csv
from mmsent.labels import EMOTIONS, SENTIMENTS

# ../shared/data/meld/README.md
TRAIN_EMOTIONS = {"neutral": 4710, "joy": 1743, "surprise": 1205, "anger": 1109, "sadness": 683, "disgust": 271, "fear": 268}
TRAIN_SENTIMENTS = {"neutral": 4710, "negative": 2945, "positive": 2334}


def test_reads_the_real_train_csv_with_its_published_counts(meld_dir):
    rows = read_meld_csv(meld_dir / "train_sent_emo.csv")
    assert len(rows) == 9989
    assert Counter(EMOTIONS[r.emotion] for r in rows) == TRAIN_EMOTIONS
    assert Counter(SENTIMENTS[r.sentiment] for r in rows) == TRAIN_SENTIMENTS
    first = rows[0]
    assert (first.dialogue_id, first.utterance_id, first.clip_name) == (0, 0, "dia0_utt0.mp4")
    assert first.speaker == "Chandler" and first.season == 8 and first.episode == 21
    assert first.text == "also I was the point person on my company's transition from the KL-5 to GR-6 system."


def test_reads_the_real_dev_csv(meld_dir):
    assert len(read_meld_csv(meld_dir / "dev_sent_emo.csv")) == 1109


def test_typographic_punctuation_is_normalised_and_nothing_is_mojibake(meld_dir):
    rows = read_meld_csv(meld_dir / "train_sent_emo.csv")
    texts = "".join(r.text for r in rows)
    for character in ("’", "‘", "“", "”", "…", "â€"):
        assert character not in texts
    assert texts.count("'") > 3500


def test_a_copy_damaged_by_a_cp1252_round_trip_is_repaired(meld_dir, tmp_path):
    original = (meld_dir / "train_sent_emo.csv").read_text(encoding="utf-8")
    # What a tool does that decodes UTF-8 bytes as Windows-1252 and saves the result as UTF-8.
    damaged = original.encode("utf-8").decode("sloppy-windows-1252")
    assert "â€™" in damaged
    copy = tmp_path / "train_sent_emo.csv"
    copy.write_text(damaged, encoding="utf-8")
    repaired = [r.text for r in read_meld_csv(copy)]
    assert repaired == [r.text for r in read_meld_csv(meld_dir / "train_sent_emo.csv")]


def test_normalize_text_examples():
    assert normalize_text("You must’ve had… “fun”") == "You must've had... \"fun\""
    assert normalize_text("company\u00e2\u20ac\u2122s") == "company's"


def _write(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


GOOD_ROW = ["1", "Hi there", "Joey", "joy", "positive", "0", "0", "1", "1", "00:00:01,000", "00:00:02,000"]


def test_missing_column_is_a_clear_error(tmp_path):
    header = [c for c in MELD_COLUMNS if c != "Emotion"]
    row = [v for c, v in zip(MELD_COLUMNS, GOOD_ROW) if c != "Emotion"]
    path = _write(tmp_path / "bad.csv", header, [row])
    with pytest.raises(MeldFormatError, match=r"bad\.csv: missing column\(s\) 'Emotion'"):
        read_meld_csv(path)


def test_unknown_label_names_file_row_and_value(tmp_path):
    rows = [GOOD_ROW, [*GOOD_ROW[:3], "happy", *GOOD_ROW[4:]]]
    path = _write(tmp_path / "bad.csv", list(MELD_COLUMNS), rows)
    with pytest.raises(MeldFormatError, match=r"bad\.csv: row at line 3: unknown emotion 'happy'; expected one of anger"):
        read_meld_csv(path)


def test_unknown_sentiment_is_a_clear_error(tmp_path):
    path = _write(tmp_path / "bad.csv", list(MELD_COLUMNS), [[*GOOD_ROW[:4], "meh", *GOOD_ROW[5:]]])
    with pytest.raises(MeldFormatError, match=r"line 2: unknown sentiment 'meh'"):
        read_meld_csv(path)


def test_non_integer_id_names_the_column_and_value(tmp_path):
    path = _write(tmp_path / "bad.csv", list(MELD_COLUMNS), [[*GOOD_ROW[:5], "seven", *GOOD_ROW[6:]]])
    with pytest.raises(MeldFormatError, match=r"line 2: Dialogue_ID must be an integer, got 'seven'"):
        read_meld_csv(path)


def test_empty_required_id_is_an_error(tmp_path):
    path = _write(tmp_path / "bad.csv", list(MELD_COLUMNS), [[*GOOD_ROW[:6], "", *GOOD_ROW[7:]]])
    with pytest.raises(MeldFormatError, match=r"Utterance_ID must be an integer, got ''"):
        read_meld_csv(path)


def test_surplus_fields_are_an_error(tmp_path):
    path = _write(tmp_path / "bad.csv", list(MELD_COLUMNS), [[*GOOD_ROW, "extra"]])
    with pytest.raises(MeldFormatError, match=r"line 2: more fields than the header's 11 columns"):
        read_meld_csv(path)


def test_non_utf8_file_is_a_clear_error(tmp_path):
    path = tmp_path / "latin.csv"
    path.write_bytes(",".join(MELD_COLUMNS).encode() + b"\n1,Caf\xe9,Joey,joy,positive,0,0,1,1,a,b\n")
    with pytest.raises(MeldFormatError, match=r"latin\.csv: not valid UTF-8 at byte"):
        read_meld_csv(path)


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(MeldFormatError, match=r"nope\.csv: no such CSV file"):
        read_meld_csv(tmp_path / "nope.csv")


def test_byte_order_mark_and_upper_case_labels_are_accepted(tmp_path):
    path = _write(tmp_path / "bom.csv", list(MELD_COLUMNS), [[*GOOD_ROW[:3], "Joy", "POSITIVE", *GOOD_ROW[5:]]])
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    (row,) = read_meld_csv(path)
    assert (row.emotion_name, row.sentiment_name, row.sr_no) == ("joy", "positive", 1)


def test_optional_columns_may_be_absent(tmp_path):
    path = _write(tmp_path / "min.csv", ["Utterance", "Emotion", "Sentiment", "Dialogue_ID", "Utterance_ID"],
                  [["Hello", "neutral", "neutral", "4", "2"]])
    (row,) = read_meld_csv(path)
    assert (row.clip_name, row.season, row.sr_no, row.speaker) == ("dia4_utt2.mp4", None, None, "")


def test_write_then_read_round_trips(tmp_path):
    write_meld_csv(tmp_path / "x.csv", [dict(zip(MELD_COLUMNS, GOOD_ROW))])
    (row,) = read_meld_csv(tmp_path / "x.csv")
    assert (row.text, row.emotion_name, row.start_time) == ("Hi there", "joy", "00:00:01,000")


def test_a_csv_that_cannot_be_read_is_a_clear_error(tmp_path):
    folder = tmp_path / "train_sent_emo.csv"
    folder.mkdir()
    with pytest.raises(MeldFormatError, match=r"train_sent_emo\.csv: cannot read the CSV \(Is a directory\)"):
        read_meld_csv(folder)


def test_a_repeated_dialogue_and_utterance_id_names_both_lines(tmp_path):
    second = [*GOOD_ROW[:3], "anger", "negative", *GOOD_ROW[5:]]  # the same ids, a conflicting label
    path = _write(tmp_path / "twice.csv", list(MELD_COLUMNS), [GOOD_ROW, ["2", "Next", "Ross", *GOOD_ROW[3:5], "0", "1", *GOOD_ROW[7:]], second])
    with pytest.raises(MeldFormatError, match=r"twice\.csv: rows at lines 2 and 4 are both Dialogue_ID 0, Utterance_ID 0"):
        read_meld_csv(path)
    from tests.cli import mmsent

    (tmp_path / "flat").mkdir()
    path.rename(tmp_path / "flat" / "train_sent_emo.csv")
    result = mmsent("data", "check", "--data-dir", str(tmp_path / "flat"), "--no-decode")
    assert result.returncode == 2 and "rows at lines 2 and 4 are both Dialogue_ID 0" in result.stderr


def test_a_split_with_only_a_header_names_the_file_through_the_cli(tmp_path):
    from tests.cli import mmsent

    folder = tmp_path / "flat"
    folder.mkdir()
    _write(folder / "train_sent_emo.csv", list(MELD_COLUMNS), [])
    result = mmsent("data", "check", "--data-dir", str(folder))
    assert result.returncode == 2, result.stderr
    assert f"{folder / 'train_sent_emo.csv'}: a header and no rows" in result.stderr and "Traceback" not in result.stderr
