"""`--asr-model`: transcripts from speech for clips without one, through the real transformers
automatic-speech-recognition pipeline and conftest's tiny random Whisper (its transcripts are
garbage: the tests check the plumbing, not the words)."""

from __future__ import annotations

import json

import av
import pytest

from mmsent.data.media import decode_clip
from mmsent.errors import SettingsError
from mmsent.inference.asr import Transcriber
from mmsent.inference.predict import Predictor, Request
from tests.inference.test_predict import _good_clips, _noise_clip
from tests.cli import mmsent, status_and_stderr


@pytest.fixture(scope="module")
def listening_predictor(tiny_model_dir, tiny_whisper) -> Predictor:
    return Predictor(tiny_model_dir, workers=1, asr_model=str(tiny_whisper))


def test_a_clip_without_text_is_classified_with_its_transcript(listening_predictor, tiny_whisper, sample_dir):
    clip = _good_clips(sample_dir)[0]
    (heard,) = listening_predictor.predict([Request(clip=clip)])
    media = listening_predictor.data_cfg.media
    waveform = decode_clip(clip, media, video=False).waveform
    expected = Transcriber(str(tiny_whisper), listening_predictor.device).transcribe([waveform], media.sample_rate)[0]
    assert heard.transcribed and heard.text == expected and expected  # what the pipeline hears in the clip's audio
    assert heard.present == {"text": True, "audio": True, "video": True}
    # The same clip with that transcript given scores the same: the transcript is used as a given one would be.
    (given,) = listening_predictor.predict([Request(clip=clip, text=expected)])
    assert not given.transcribed and given.probabilities == heard.probabilities


def test_given_transcripts_and_clips_without_audio_are_not_transcribed(listening_predictor, sample_dir, tmp_path):
    clip = _good_clips(sample_dir)[0]
    silent = tmp_path / "silent.mp4"
    _noise_clip(tmp_path / "noise.mkv", 1)
    with av.open(str(tmp_path / "noise.mkv")) as source, av.open(str(silent), "w") as target:  # the video stream alone
        stream = target.add_stream_from_template(source.streams.video[0])
        for packet in source.demux(source.streams.video[0]):
            if packet.dts is not None:
                packet.stream = stream
                target.mux(packet)
    given, mute, text_only = listening_predictor.predict([Request(clip=clip, text="I know!"), Request(clip=silent),
                                                          Request(text="Oh my God")])  # fmt: skip
    assert not given.transcribed and given.text == "I know!"
    assert not mute.transcribed and mute.text is None and mute.present["text"] is False  # nothing to hear: text absent
    assert not text_only.transcribed and text_only.text == "Oh my God"


def test_predict_command_with_asr_model(tiny_model_dir, tiny_whisper, sample_dir, tmp_path):
    clip = _good_clips(sample_dir)[0]
    result = mmsent("predict", "--model-dir", str(tiny_model_dir), str(clip), "--asr-model", str(tiny_whisper), "--json",
                    "--num-workers", "0", "--out", str(tmp_path / "out.csv"))  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    (row,) = [json.loads(line) for line in result.stdout.splitlines()]
    assert row["transcribed"] is True and row["text"] and row["present"]["text"] is True
    table = mmsent("predict", "--model-dir", str(tiny_model_dir), str(clip), "--asr-model", str(tiny_whisper), "--num-workers", "0")
    assert table.returncode == 0 and "text(asr),audio,video" in table.stdout


def test_bad_asr_models_are_named(tiny_model_dir, tmp_path):
    status, stderr = status_and_stderr(["predict", "--model-dir", str(tiny_model_dir), "--text", "hi",
                                        "--asr-model", str(tmp_path / "no-such-model")])  # fmt: skip
    assert status == 2 and f"--asr-model {tmp_path / 'no-such-model'}: no such folder" in stderr
    assert len(stderr.strip().splitlines()) == 1
    status, stderr = status_and_stderr(["serve", "--model-dir", str(tiny_model_dir), "--port", "0",
                                        "--asr-model", str(tmp_path / "no-such-model")])  # fmt: skip
    assert status == 2 and "no such folder" in stderr  # refused before serving anything
    with pytest.raises(SettingsError, match="--asr-model .*cannot load a speech-recognition model"):
        Predictor(tiny_model_dir, asr_model=str(tiny_model_dir))  # a folder, but no speech-recognition model in it
