import os
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from mmsent.config import MediaConfig
from mmsent.data import media
from mmsent.data.media import VIDEO_MEAN, VIDEO_STD, decode_clip, empty_frames, empty_log_mel, frames_to_tensor, log_mel
from mmsent.data.sample import encode_clip

FPS = 24
FRAMES = 96  # 4 s


def _numbered_frames(count: int = FRAMES, height: int = 90, width: int = 160) -> np.ndarray:
    """Flat grey frames whose brightness encodes their index: 20 + 2 * index."""
    levels = (20 + 2 * np.arange(count)).astype(np.uint8)
    return np.broadcast_to(levels[:, None, None, None], (count, height, width, 3)).copy()


def _tone(seconds: float, channels: int, rate: int = 48_000, hz: float = 440.0) -> np.ndarray:
    t = np.arange(round(seconds * rate)) / rate
    return np.repeat((0.3 * np.sin(2 * np.pi * hz * t))[None, :], channels, axis=0).astype(np.float32)


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("clips")
    paths = {name: folder / f"{name}.mp4" for name in
             ("good", "surround", "silent_film", "audio_only", "truncated", "garbage", "empty", "no_index")}  # fmt: skip
    encode_clip(paths["good"], _numbered_frames(), FPS, _tone(4.0, 2))
    encode_clip(paths["surround"], _numbered_frames(48), FPS, _tone(2.0, 6))
    encode_clip(paths["silent_film"], _numbered_frames(48), FPS, None)
    encode_clip(paths["audio_only"], None, FPS, _tone(2.0, 1))
    encode_clip(paths["truncated"], _numbered_frames(), FPS, _tone(4.0, 2))
    data = paths["truncated"].read_bytes()
    paths["truncated"].write_bytes(data[: len(data) // 2])
    paths["garbage"].write_bytes(os.urandom(5000))
    paths["empty"].write_bytes(b"")
    # Without faststart the index sits at the end, so a truncated copy cannot even be opened.
    with av.open(str(paths["no_index"]), "w") as out:
        stream = out.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = 160, 90, "yuv420p"
        for image in _numbered_frames(48):
            out.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        out.mux(stream.encode())
    data = paths["no_index"].read_bytes()
    paths["no_index"].write_bytes(data[: len(data) // 2])
    return paths


def _frame_indices(frames: np.ndarray) -> list[int]:
    return [round((float(f.mean()) - 20) / 2) for f in frames]


def test_frames_are_sampled_evenly_across_the_whole_clip(clips):
    decoded = decode_clip(clips["good"], MediaConfig(num_frames=8))
    # The frame nearest the centre of each eighth of the clip: 6, 18, ..., 90 — not the first 8.
    expected = [round((i + 0.5) * FRAMES / 8) for i in range(8)]
    assert all(abs(a - b) <= 1 for a, b in zip(_frame_indices(decoded.frames), expected)), _frame_indices(decoded.frames)
    assert decoded.issues == ()


def test_decode_shapes_types_and_ranges(clips):
    cfg = MediaConfig()
    decoded = decode_clip(clips["good"], cfg)
    assert decoded.frames.shape == (16, 112, 112, 3) and decoded.frames.dtype == np.uint8
    assert decoded.waveform.dtype == np.float32
    assert abs(decoded.waveform.size - cfg.audio_samples) <= 0.02 * cfg.audio_samples  # 4 s at 16 kHz
    assert decoded.audio_channels == 2
    assert decoded.duration == pytest.approx(4.0, abs=0.05)

    video = frames_to_tensor(decoded.frames)
    assert video.shape == (3, 16, 112, 112) and video.dtype == torch.float32
    # Normalised with the video model's statistics: a pixel of value v maps to (v/255 - mean) / std.
    pixel = decoded.frames[0, 0, 0, 0] / 255
    assert video[0, 0, 0, 0].item() == pytest.approx((pixel - VIDEO_MEAN[0]) / VIDEO_STD[0], rel=1e-5)
    assert video.min() >= (0 - max(VIDEO_MEAN)) / min(VIDEO_STD) and video.max() <= 1 / min(VIDEO_STD)

    mel = log_mel(decoded.waveform, cfg)
    assert mel.shape == (64, 401) and torch.isfinite(mel).all()
    assert mel.max() - mel.min() <= 80.0 + 1e-3  # decibels, at most 80 dB deep
    # A 440 Hz tone: the loudest mel band holds 440 Hz.
    import torchaudio

    centres = torchaudio.functional.melscale_fbanks(201, 0.0, 8000.0, 64, 16000).argmax(dim=0) * 8000 / 200
    assert abs(centres[mel.mean(dim=1).argmax()] - 440) < 120


def test_settings_change_the_shapes(clips):
    cfg = MediaConfig(num_frames=4, frame_size=64, n_mels=40, audio_seconds=2.0, sample_rate=8000, n_fft=200, hop_length=80)
    decoded = decode_clip(clips["good"], cfg)
    assert decoded.frames.shape == (4, 64, 64, 3)
    assert decoded.waveform.size == 16_000
    assert log_mel(decoded.waveform, cfg).shape == (40, 201) == empty_log_mel(cfg).shape
    assert empty_frames(cfg).shape == (3, 4, 64, 64)


def test_short_audio_is_zero_padded_to_the_set_length(clips):
    cfg = MediaConfig(audio_seconds=6.0)
    decoded = decode_clip(clips["surround"], cfg)
    assert decoded.waveform.size < cfg.audio_samples
    assert log_mel(decoded.waveform, cfg).shape == (cfg.n_mels, cfg.mel_frames)


def test_six_channel_audio_is_downmixed_to_mono(clips):
    decoded = decode_clip(clips["surround"], MediaConfig())
    assert decoded.issues == ()
    assert decoded.audio_channels == 6
    assert decoded.waveform.ndim == 1 and np.abs(decoded.waveform).max() > 0.05


def test_clip_without_audio_stream_keeps_its_video(clips):
    decoded = decode_clip(clips["silent_film"], MediaConfig())
    assert decoded.has_video and not decoded.has_audio
    assert decoded.issues == (media.NO_AUDIO,)


def test_clip_without_video_stream_keeps_its_audio(clips):
    decoded = decode_clip(clips["audio_only"], MediaConfig())
    assert decoded.has_audio and not decoded.has_video
    assert decoded.issues == (media.NO_VIDEO,)


def test_truncated_clip_keeps_what_decodes_and_says_so(clips):
    decoded = decode_clip(clips["truncated"], MediaConfig())
    assert decoded.has_video and decoded.frames.shape == (16, 112, 112, 3)
    assert media.SHORTER_THAN_HEADER in decoded.issues or media.CORRUPT in decoded.issues


@pytest.mark.parametrize(
    ("name", "issue"),
    [("garbage", media.UNREADABLE), ("empty", media.EMPTY_FILE), ("no_index", media.UNREADABLE)],
)
def test_undecodable_files_give_no_media_and_name_the_problem(clips, name, issue):
    decoded = decode_clip(clips[name], MediaConfig())
    assert (decoded.frames, decoded.waveform, decoded.issues) == (None, None, (issue,))


def test_missing_clip(tmp_path):
    assert decode_clip(tmp_path / "nope.mp4", MediaConfig()).issues == (media.MISSING,)
    assert decode_clip(None, MediaConfig()).issues == (media.MISSING,)


def test_only_the_asked_modalities_are_decoded(clips):
    video_only = decode_clip(clips["good"], MediaConfig(), audio=False)
    audio_only = decode_clip(clips["good"], MediaConfig(), video=False)
    assert video_only.has_video and not video_only.has_audio and video_only.issues == ()
    assert audio_only.has_audio and not audio_only.has_video and audio_only.issues == ()


def test_nothing_is_written_next_to_the_input(clips):
    folder = clips["good"].parent
    before = sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in folder.iterdir())
    for path in clips.values():
        decode_clip(path, MediaConfig())
    assert sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in folder.iterdir()) == before


@pytest.mark.parametrize("field", ["num_frames", "frame_size", "n_mels", "sample_rate", "audio_seconds"])
def test_media_settings_must_be_positive(field):
    with pytest.raises(ValueError, match=field):
        MediaConfig(**{field: 0})


def _decoded_with_nonref_skipped(path: Path) -> int:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.codec_context.skip_frame = "NONREF"
        return sum(len(packet.decode()) for packet in container.demux(stream))


def test_skipping_non_reference_frames_keeps_samples_within_two_frames(tmp_path):
    path = tmp_path / "bframes.mp4"
    encode_clip(path, _numbered_frames(), FPS, _tone(4.0, 2), preset="veryfast", x264_params="bframes=3:b-adapt=0:scenecut=0:weightp=0")
    assert _decoded_with_nonref_skipped(path) <= FRAMES * 0.8  # the clip really has frames to skip
    cfg = MediaConfig(num_frames=8)
    targets = [(i + 0.5) * FRAMES / 8 for i in range(8)]
    fast, exact = decode_clip(path, cfg), decode_clip(path, cfg, skip_nonref=False)
    assert all(abs(a - t) <= media.MAX_FRAME_OFFSET for a, t in zip(_frame_indices(fast.frames), targets))
    assert all(abs(a - t) <= 0.5 for a, t in zip(_frame_indices(exact.frames), targets))
    assert fast.issues == exact.issues == () and fast.audio_channels == exact.audio_channels == 2
    assert np.array_equal(fast.waveform, exact.waveform)


def test_frames_too_far_apart_once_skipped_mean_a_full_decode(tmp_path):
    path = tmp_path / "long-b-runs.mp4"
    # Seven B-frames in a row, none a reference (no scene cuts for the changing brightness to force):
    # skipping them leaves gaps of eight frames.
    encode_clip(path, _numbered_frames(), FPS, None, preset="veryfast", x264_params="bframes=7:b-adapt=0:b-pyramid=none:scenecut=0:weightp=0")
    assert _decoded_with_nonref_skipped(path) <= FRAMES // 6
    cfg = MediaConfig(num_frames=8)
    assert np.array_equal(decode_clip(path, cfg).frames, decode_clip(path, cfg, skip_nonref=False).frames)


def _nearest_frames_decoding_every_one(path: Path, cfg: MediaConfig) -> np.ndarray:
    """The reference for the exact pass: every frame decoded, the nearest to each target kept (the earlier on a tie)."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        start = float(stream.start_time * stream.time_base)
        frames = [(frame.time - start, frame) for packet in container.demux(stream) for frame in packet.decode()]
        duration = media._duration(container, stream)  # the stream's, else the container's
        targets = [(i + 0.5) * duration / cfg.num_frames for i in range(cfg.num_frames)]
        chosen = [min(frames, key=lambda f: (abs(f[0] - t), f[0]))[1] for t in targets]
        return np.stack([media.resize_and_crop(frame, cfg.frame_size) for frame in chosen])


@pytest.mark.parametrize("x264", ["bframes=3:b-adapt=0:scenecut=0:weightp=0", "bframes=7:b-adapt=0:b-pyramid=none:scenecut=0:weightp=0"])
def test_the_exact_pass_picks_what_decoding_every_frame_picks_while_decoding_fewer(tmp_path, monkeypatch, x264):
    path = tmp_path / "bframes.mp4"
    encode_clip(path, _numbered_frames(), FPS, _tone(4.0, 2), preset="veryfast", x264_params=x264)
    cfg = MediaConfig(num_frames=8)
    offered = []
    original = media._EvenFrameSampler.offer
    monkeypatch.setattr(media._EvenFrameSampler, "offer", lambda self, frame: offered.append(frame.time) or original(self, frame))
    exact = decode_clip(path, cfg, skip_nonref=False)
    assert np.array_equal(exact.frames, _nearest_frames_decoding_every_one(path, cfg))
    assert len(offered) < FRAMES * 0.8  # non-reference frames far from every target were not decoded


def test_a_nearest_frame_the_exact_pass_skipped_means_every_frame_decoded(tmp_path, monkeypatch):
    path = tmp_path / "long-b-runs.mp4"
    encode_clip(path, _numbered_frames(), FPS, None, preset="veryfast", x264_params="bframes=7:b-adapt=0:b-pyramid=none:scenecut=0:weightp=0")
    cfg = MediaConfig(num_frames=8)
    offered = []
    original = media._EvenFrameSampler.offer
    monkeypatch.setattr(media._EvenFrameSampler, "offer", lambda self, frame: offered.append(frame.time) or original(self, frame))
    # As if the frame times had a gap (variable frame rate): every non-reference frame skipped. The check against
    # every packet's time finds frames chosen that are not the nearest, and the clip is decoded again, every frame.
    monkeypatch.setattr(media._EvenFrameSampler, "could_choose", lambda self, time: False)
    assert np.array_equal(decode_clip(path, cfg, skip_nonref=False).frames, _nearest_frames_decoding_every_one(path, cfg))
    assert len(offered) > FRAMES  # the skipping pass, then every frame


@pytest.mark.parametrize("name, indexed", [("clip.mp4", True), ("clip.mov", True), ("clip.mkv", False), ("matroska-inside.mp4", False)])
def test_the_open_probe_decodes_nothing_only_where_the_index_says_it_all(tmp_path, name, indexed):
    """An MP4 or MOV file's index gives the streams' size, rate, start and duration: its probe decodes no frame.
    Matroska takes a stream's start from its first decoded frame, so its probe decodes (a probe decoding
    nothing there starts the video 21 ms late, at the audio's priming, and moves the sampled frames)."""
    path = tmp_path / name
    container_format = "matroska" if not indexed else None
    with av.open(str(path), "w", format=container_format) as out:  # PyAV's x264 and AAC, as any muxer gets them
        video, audio = out.add_stream("libx264", rate=FPS), out.add_stream("aac", rate=48_000)
        video.width, video.height, video.pix_fmt, video.options = 160, 90, "yuv420p", {"bframes": "3"}
        audio.layout = "stereo"
        for frame in _numbered_frames():
            out.mux(video.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        out.mux(video.encode())
        tone = _tone(4.0, 2)
        for start in range(0, tone.shape[1], 1024):
            chunk = av.AudioFrame.from_ndarray(np.ascontiguousarray(tone[:, start : start + 1024]), format="fltp", layout="stereo")
            chunk.sample_rate = 48_000
            out.mux(audio.encode(chunk))
        out.mux(audio.encode())
    with media._open(path, skip_nonref=True) as container:
        assert (container.streams.video[0].format is None) == indexed  # no frame decoded: no pixel format known yet
    cfg = MediaConfig()
    assert np.array_equal(decode_clip(path, cfg, skip_nonref=False).frames, _nearest_frames_decoding_every_one(path, cfg))


def test_every_decoder_option_is_one_ffmpeg_knows(clips):
    # FFmpeg reports an unknown option value only through its log, which PyAV keeps silent unless
    # asked: torchvision 0.25 (in the SageMaker training image) turns it on at import, and a
    # misspelt skip_frame value then printed two lines per clip while the probe skipped nothing.
    import subprocess
    import sys

    code = ("import av.logging; av.logging.set_level(av.logging.ERROR)\n"
            "from mmsent.config import MediaConfig; from mmsent.data.media import decode_clip\n"
            f"print(decode_clip({str(clips['good'])!r}, MediaConfig(num_frames=4, frame_size=32)).issues)")  # fmt: skip
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.strip() == "()", result.stderr
    assert result.stderr == ""


def test_windows_sample_their_own_span_in_one_pass(clips):
    """Each planned window gets num_frames frames evenly across it, and the audio from its start."""
    cfg = MediaConfig(num_frames=4, audio_seconds=1.0)
    windows = media.decode_windows(clips["good"], cfg, lambda duration: [(0.0, 2.0), (2.0, 4.0)])
    assert len(windows) == 2
    for (start, end), window in zip([(0.0, 2.0), (2.0, 4.0)], windows):
        expected = [round((start + (i + 0.5) * (end - start) / 4) * FPS) for i in range(4)]
        assert all(abs(a - b) <= 1 for a, b in zip(_frame_indices(window.frames), expected)), _frame_indices(window.frames)
        assert window.waveform.size == round((end - start) * cfg.sample_rate)
    # Whole-clip decoding is the plan that returns None: the same as decode_clip.
    whole = media.decode_windows(clips["good"], cfg, lambda duration: None)
    assert len(whole) == 1 and np.array_equal(whole[0].frames, decode_clip(clips["good"], cfg).frames)


def test_a_window_past_the_audio_names_the_missing_samples(clips):
    windows = media.decode_windows(clips["surround"], MediaConfig(num_frames=2), lambda duration: [(0.0, 1.0), (3.0, 4.0)])
    assert windows[0].has_audio and not windows[1].has_audio
    assert media.NO_AUDIO_SAMPLES in windows[1].issues


def test_a_broken_clip_is_one_result_whatever_the_plan(clips):
    (only,) = media.decode_windows(clips["garbage"], MediaConfig(), lambda duration: [(0.0, 1.0), (1.0, 2.0)])
    assert only.issues == (media.UNREADABLE,)


@pytest.mark.parametrize("rotation, white", [(0, "left"), (90, "bottom"), (180, "right"), (270, "top")])
def test_a_clip_with_a_display_rotation_decodes_as_players_show_it(tmp_path, rotation, white):
    """A phone's clip: stored landscape, with a display matrix that turns it (as FFmpeg's autorotate shows it)."""
    path = tmp_path / f"rotated-{rotation}.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 32, "yuv420p"
        stream.set_display_rotation(rotation)  # counter-clockwise degrees
        stored = np.zeros((32, 64, 3), np.uint8)
        stored[:, :32] = 255  # the stored frame's left half white
        for _ in range(10):
            for packet in stream.encode(av.VideoFrame.from_ndarray(stored, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    frame = decode_clip(path, MediaConfig(num_frames=2, frame_size=32)).frames[0].mean(axis=2)
    halves = {"left": frame[:, :16], "right": frame[:, 16:], "top": frame[:16], "bottom": frame[16:]}
    brightest = max(halves, key=lambda side: halves[side].mean())
    assert brightest == white and halves[white].mean() > 200
