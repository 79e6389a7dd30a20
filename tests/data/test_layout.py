
from pathlib import Path

import pytest

from mmsent.data.layout import MEDIA_NOTE, DatasetLayoutError, find_splits, media_defaults, splits_from_channels



def _touch(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
    return path


def test_meld_raw_layout_with_csvs_inside_split_folders(tmp_path):
    _touch(tmp_path / "train" / "train_sent_emo.csv")
    _touch(tmp_path / "train" / "train_splits" / "dia0_utt0.mp4")
    _touch(tmp_path / "dev" / "dev_sent_emo.csv")
    _touch(tmp_path / "dev" / "dev_splits_complete" / "dia0_utt0.mp4")
    splits = find_splits(tmp_path)
    assert list(splits) == ["train", "dev"]
    assert splits["dev"].clip_path("dia0_utt0.mp4") == tmp_path / "dev" / "dev_splits_complete" / "dia0_utt0.mp4"


def test_meld_raw_layout_with_csvs_at_the_top(tmp_path):
    for split, folder in (("train", "train_splits"), ("test", "output_repeated_splits_test")):
        _touch(tmp_path / f"{split}_sent_emo.csv")
        (tmp_path / folder).mkdir()
    splits = find_splits(tmp_path)
    assert splits["test"].clip_dir == tmp_path / "output_repeated_splits_test"


def test_csvs_without_clips_are_text_only(tmp_path):
    _touch(tmp_path / "train_sent_emo.csv")
    _touch(tmp_path / "dev_sent_emo.csv")
    splits = find_splits(tmp_path)
    assert [s.clip_dir for s in splits.values()] == [None, None]
    assert splits["train"].clip_path("dia0_utt0.mp4") is None


def test_flat_folder_with_one_csv_of_any_name(tmp_path):
    _touch(tmp_path / "my_clips.csv")
    _touch(tmp_path / "dia1_utt1.mp4")
    (files,) = find_splits(tmp_path).values()
    assert (files.split, files.csv_path.name, files.clip_dir) == ("train", "my_clips.csv", tmp_path)


def test_sagemaker_channels_map_to_splits(tmp_path):
    _touch(tmp_path / "t" / "train_sent_emo.csv")
    _touch(tmp_path / "t" / "dia0_utt0.mp4")
    _touch(tmp_path / "v" / "whatever.csv")
    splits = splits_from_channels({"train": tmp_path / "t", "validation": tmp_path / "v"})
    assert list(splits) == ["train", "dev"]
    assert splits["train"].clip_dir == tmp_path / "t" and splits["dev"].clip_dir is None


def test_channel_without_csv_is_a_clear_error(tmp_path):
    (tmp_path / "v").mkdir()
    with pytest.raises(DatasetLayoutError, match="channel 'validation'.*no CSV"):
        splits_from_channels({"validation": tmp_path / "v"})


def test_empty_or_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(DatasetLayoutError, match="no MELD CSV found"):
        find_splits(tmp_path)
    with pytest.raises(DatasetLayoutError, match="no such data folder"):
        find_splits(tmp_path / "absent")


def test_several_unnamed_csvs_are_ambiguous(tmp_path):
    _touch(tmp_path / "a.csv")
    _touch(tmp_path / "b.csv")
    with pytest.raises(DatasetLayoutError, match="several CSVs"):
        find_splits(tmp_path)


def test_a_file_or_an_unreadable_folder_is_a_clear_error(tmp_path, monkeypatch):
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(DatasetLayoutError, match=r"notes\.txt: a file, not a data folder"):
        find_splits(tmp_path / "notes.txt")

    def denied(self, pattern):  # what a folder without read permission does (root reads everything)
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "glob", denied)
    with pytest.raises(DatasetLayoutError, match=r"not readable \(Permission denied\)"):
        find_splits(tmp_path)


def test_a_dataset_names_its_own_decode_settings_beside_its_csv(sample_dir, tmp_path):
    # The sample says how to read it in each split, so a channel (one split's folder) carries it too.
    splits = find_splits(sample_dir)
    assert all((files.csv_path.parent / MEDIA_NOTE).is_file() for files in splits.values())
    assert media_defaults(splits) == ({"num_frames": 4, "frame_size": 64}, sample_dir / "train" / MEDIA_NOTE)
    assert media_defaults(splits_from_channels({"train": sample_dir / "train"}))[0] == {"num_frames": 4, "frame_size": 64}
    _touch(tmp_path / "train_sent_emo.csv")
    assert media_defaults(find_splits(tmp_path)) == ({}, None)  # MELD itself names none: MediaConfig's defaults


@pytest.mark.parametrize("note", ['{"media": {"frames": 4}}', "not json", '["media"]', '{"media": 4}'])
def test_a_media_note_that_cannot_be_used_names_its_file(tmp_path, note):
    _touch(tmp_path / "train_sent_emo.csv")
    (tmp_path / MEDIA_NOTE).write_text(note)
    with pytest.raises(DatasetLayoutError, match=f"{MEDIA_NOTE}: "):
        media_defaults(find_splits(tmp_path))


def test_the_sample_trains_alike_by_folder_or_as_the_built_in_default(sample_dir, capsys):
    """`mmsent train --data-dir SAMPLE` reads the clips as `mmsent train` on the built-in sample does;
    options given on the command line win."""
    import argparse

    from mmsent.commands.common import media_config

    splits = find_splits(sample_dir)
    given = argparse.Namespace(num_frames=None, frame_size=None)
    assert (media_config(given, splits).num_frames, media_config(given, splits).frame_size) == (4, 64)
    assert "the dataset's own decode settings" in capsys.readouterr().err
    chosen = media_config(argparse.Namespace(num_frames=8, frame_size=None), splits)
    assert (chosen.num_frames, chosen.frame_size) == (8, 64)
