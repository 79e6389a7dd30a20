"""One-pass media decoding with PyAV (which bundles FFmpeg): no system ffmpeg, no temporary files.

Each clip is opened once and its packets demuxed once. Video frames are sampled evenly across the
whole clip (the frame nearest each of N evenly spaced instants, by timestamp, not the first N),
resized so that the short side fits, centre-cropped, converted to RGB and turned upright by the
stream's display rotation (phone clips); only the chosen frames are converted. Audio is downmixed to mono and resampled to the target rate by FFmpeg's resampler,
whatever its channel layout. Demuxing stops once the last target frame and enough audio are in.

Short H.264 clips hold one keyframe, so sampling across the clip means decoding it all. What can
be skipped is decoding the frames nothing else refers to (FFmpeg's `skip_frame = NONREF`: most
B-frames, about half of a broadcast encode): the nearest decoded frame is then at most a frame or
two from each target. When a clip's frames fall further apart than `MAX_FRAME_OFFSET` allows, it
is decoded again for the exact nearest frames (`skip_nonref=False`), so sampling never drifts more
than that from the even spacing. That exact pass decodes the non-reference frames that could be one
(within half a frame interval of a target), and checks its choice against every packet's time.

Broken media never raises: a missing, empty, unreadable, truncated or stream-less clip gives
`None` for the modality it lacks and names the problem in `DecodedClip.issues`, so that the dataset
can yield an empty input with a mask saying the modality is absent, and reports can count it.
"""

from __future__ import annotations

import bisect
import contextlib
import ctypes
import functools
import math
import os
import signal
import sys
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import av
from av.video.reformatter import VideoReformatter
import numpy as np
import torch
import torchaudio

from mmsent.config import MediaConfig

# Kinetics-400 statistics that torchvision's R3D-18 weights were trained with (RGB, 0..1 scale).
VIDEO_MEAN: tuple[float, float, float] = (0.43216, 0.394666, 0.37645)
VIDEO_STD: tuple[float, float, float] = (0.22803, 0.22145, 0.216989)

# Problems a clip can have; each names what was wrong in reports and dataset items.
MISSING = "missing"  # no file at the clip's path
EMPTY_FILE = "empty_file"  # zero bytes
UNREADABLE = "unreadable"  # FFmpeg cannot open it as media
NO_VIDEO = "no_video_stream"
NO_AUDIO = "no_audio_stream"
NO_VIDEO_FRAMES = "no_video_frames"  # a video stream that yields nothing
NO_AUDIO_SAMPLES = "no_audio_samples"
CORRUPT = "corrupt_data"  # packets that failed to demux or decode (a truncated file, say)
SHORTER_THAN_HEADER = "shorter_than_header"  # frames stop well before the duration the header states
AUDIO_CONVERSION_FAILED = "audio_conversion_failed"  # an audio layout FFmpeg could not downmix

ISSUES: tuple[str, ...] = (
    MISSING, EMPTY_FILE, UNREADABLE, NO_VIDEO, NO_AUDIO, NO_VIDEO_FRAMES, NO_AUDIO_SAMPLES,
    CORRUPT, SHORTER_THAN_HEADER, AUDIO_CONVERSION_FAILED,
)  # fmt: skip

# Above this many unfilled sampling targets, the stream ended early rather than by rounding.
_SHORT_TOLERANCE_FRAMES = 1
_MAX_STREAMS = 8  # stream_options entries: more than any clip's stream count
_PR_SET_PDEATHSIG = 1  # linux/prctl.h: the signal a process gets when its parent dies
# How far (in frame intervals) a frame sampled with non-reference frames skipped may lie from its
# target before the clip is decoded again in full.
MAX_FRAME_OFFSET = 2.0
_INDEXED_DEMUXER = "mov,mp4,m4a,3gp,3g2,mj2"  # FFmpeg's demuxer for the ISO/QuickTime family
_INDEXED_SUFFIXES = (".mp4", ".mov", ".m4a", ".m4v", ".3gp")
_NOT_NEAREST = math.inf  # _decode_open's offset when the exact pass must decode every frame instead


@dataclass(frozen=True)
class DecodedClip:
    frames: np.ndarray | None  # (T, H, W, 3) uint8 RGB, or None when the video is absent
    waveform: np.ndarray | None  # (samples,) float32 mono at MediaConfig.sample_rate, or None
    duration: float | None  # seconds, as the container states it
    audio_channels: int | None  # channels of the source audio before the downmix to mono
    issues: tuple[str, ...] = ()

    @property
    def has_video(self) -> bool:
        return self.frames is not None

    @property
    def has_audio(self) -> bool:
        return self.waveform is not None


# Given a clip's duration (None when its header has none), the (start, end) seconds to decode as
# separate windows, or None for the whole clip as one.
WindowPlan = Callable[[float | None], list[tuple[float, float]] | None]


def decode_clip(
    path: Path | None, cfg: MediaConfig, *, video: bool = True, audio: bool = True, skip_nonref: bool = True
) -> DecodedClip:
    """Decode one clip in one pass; never raises for broken media (see the module docstring).
    `skip_nonref` False decodes every frame (the exact nearest frame to each target)."""
    return decode_windows(path, cfg, None, video=video, audio=audio, skip_nonref=skip_nonref)[0]


def decode_windows(
    path: Path | None, cfg: MediaConfig, plan: WindowPlan | None, *, video: bool = True, audio: bool = True,
    skip_nonref: bool = True, every_frame: bool = False,
) -> list[DecodedClip]:
    """`decode_clip` for each window `plan` chooses once the duration is known (still one pass over
    the file): each window gets `num_frames` frames evenly across it and the audio from its start.
    A clip that cannot be opened gives one DecodedClip naming the problem, whatever the plan.
    `skip_nonref` False picks the exact nearest frame to each target: non-reference frames are decoded
    only where one could be that frame (within half a frame interval of a target), and the choice is checked
    against every packet's time; `every_frame` decodes them all (where that check fails)."""
    if path is None or not Path(path).is_file():
        return [DecodedClip(None, None, None, None, (MISSING,))]
    if Path(path).stat().st_size == 0:
        return [DecodedClip(None, None, None, None, (EMPTY_FILE,))]
    try:
        container = _open(Path(path), skip_nonref)
    except (av.FFmpegError, OSError, ValueError):
        return [DecodedClip(None, None, None, None, (UNREADABLE,))]
    with container:
        clips, offset = _decode_open(container, cfg, plan, want_video=video, want_audio=audio, skip_nonref=skip_nonref,
                                     every_frame=every_frame)  # fmt: skip
    if skip_nonref and offset > MAX_FRAME_OFFSET:
        return decode_windows(path, cfg, plan, video=video, audio=audio, skip_nonref=False)
    if offset == _NOT_NEAREST:  # the exact pass skipped a frame it needed (a gap in the frame times): every frame then
        return decode_windows(path, cfg, plan, video=video, audio=audio, skip_nonref=False, every_frame=True)
    return clips


def _open(path: Path, skip_nonref: bool) -> av.container.InputContainer:
    """The clip, opened. Opening probes the streams by decoding their first frames: for 720p H.264 with
    B-frames, about 12 ms of a 100 ms decode. An MP4 or MOV file's index already says what we need (size,
    rate, start, duration, channels), so its probe decodes nothing; other containers (Matroska, say) take
    a stream's start from its first decoded frame, so there the probe decodes, skipping only non-reference
    frames where the decode will. The suffix only picks the first try: the demuxer's name decides."""
    if path.suffix.lower() in _INDEXED_SUFFIXES:
        container = av.open(str(path), metadata_errors="ignore", stream_options=[{"skip_frame": "all"}] * _MAX_STREAMS)
        if container.format.name == _INDEXED_DEMUXER:
            return container
        container.close()
    probe = [{"skip_frame": "noref"}] * _MAX_STREAMS if skip_nonref else None  # FFmpeg's AVDiscard names
    return av.open(str(path), metadata_errors="ignore", stream_options=probe)


def _decode_open(container: av.container.InputContainer, cfg: MediaConfig, plan: WindowPlan | None, *,
                 want_video: bool, want_audio: bool, skip_nonref: bool, every_frame: bool = False,
                 ) -> tuple[list[DecodedClip], float]:  # fmt: skip
    """The clip's windows, and how far (in frame intervals) the farthest sampled frame lies from its target
    (_NOT_NEAREST: an exact pass chose a frame that is not the nearest, having skipped that one)."""
    issues: list[str] = []
    video_stream = container.streams.video[0] if container.streams.video else None
    audio_stream = container.streams.audio[0] if container.streams.audio else None
    if video_stream is None:
        issues.append(NO_VIDEO)
    if audio_stream is None:
        issues.append(NO_AUDIO)
    duration = _duration(container, video_stream)
    windows = plan(duration) if plan is not None else None

    sampler = None
    if want_video and video_stream is not None:
        # Slice threads only: measured on 2 cores, frame threading's pipeline costs more than it
        # gains on clips this short, above all with non-reference frames skipped.
        video_stream.thread_type = "SLICE"
        rate = video_stream.average_rate or video_stream.guessed_rate
        if skip_nonref and rate:
            video_stream.codec_context.skip_frame = "NONREF"
        sampler = _EvenFrameSampler(cfg, duration, _start_time(video_stream), float(rate) if rate else None, windows)
    # The exact pass: every packet's time is seen; non-reference frames far from any target are not decoded.
    targeted = (not skip_nonref and not every_frame and sampler is not None and sampler.targets is not None
                and sampler.frame_rate is not None and video_stream.time_base is not None)  # fmt: skip
    seen: list[float] = []
    collector = None
    if want_audio and audio_stream is not None:
        wanted = math.ceil(max(end for _, end in windows) * cfg.sample_rate) if windows else cfg.audio_samples
        collector = _AudioCollector(cfg, wanted)
    streams = [s for s, used in ((video_stream, sampler), (audio_stream, collector)) if used is not None]

    if streams:
        try:
            for packet in container.demux(streams):
                if (sampler is None or sampler.done) and (collector is None or collector.full):
                    break  # every target frame and enough audio: the rest is not needed
                if packet.stream is audio_stream and collector.full:
                    continue  # enough audio: skip decoding the rest, the video still needs every packet
                if targeted and packet.stream is video_stream and packet.pts is not None:
                    time = float(packet.pts * video_stream.time_base) - sampler.start
                    seen.append(time)
                    video_stream.codec_context.skip_frame = "DEFAULT" if sampler.could_choose(time) else "NONREF"
                try:
                    frames = packet.decode()
                except av.FFmpegError:
                    _add(issues, CORRUPT)
                    continue
                for frame in frames:
                    if packet.stream is video_stream:
                        sampler.offer(frame)
                    else:
                        collector.offer(frame)
        except av.FFmpegError:  # the container itself broke off: keep what was decoded
            _add(issues, CORRUPT)

    frames = None
    if sampler is not None:
        frames, unfilled = sampler.result()
        if frames is None:
            issues.append(NO_VIDEO_FRAMES)
        elif unfilled > _SHORT_TOLERANCE_FRAMES:
            issues.append(SHORTER_THAN_HEADER)
    waveform = None
    if collector is not None:
        try:
            waveform = collector.result()
        except (av.FFmpegError, ValueError):
            issues.append(AUDIO_CONVERSION_FAILED)
        else:
            if waveform is None:
                issues.append(NO_AUDIO_SAMPLES)
    offset = sampler.worst_offset_frames if sampler is not None else 0.0
    if targeted and not sampler.nearest_among(seen):
        offset = _NOT_NEAREST
    audio_channels = (collector.channels or None) if collector is not None else None
    if audio_channels is None and audio_stream is not None:
        audio_channels = audio_stream.codec_context.channels or None  # known without decoding when not probed away
    if windows is None:
        return [DecodedClip(frames, waveform, duration, audio_channels, tuple(issues))], offset
    clips = []
    for number, (start, end) in enumerate(windows):
        own = list(issues)
        window_frames = frames[number * cfg.num_frames : (number + 1) * cfg.num_frames] if frames is not None else None
        window_audio = None
        if waveform is not None:
            window_audio = waveform[round(start * cfg.sample_rate) : round(end * cfg.sample_rate)]
            if window_audio.size == 0:  # the audio ended before this window
                window_audio = None
                _add(own, NO_AUDIO_SAMPLES)
        clips.append(DecodedClip(window_frames, window_audio, duration, audio_channels, tuple(own)))
    return clips, offset


def _add(issues: list[str], issue: str) -> None:
    if issue not in issues:
        issues.append(issue)


def _duration(container: av.container.InputContainer, stream: av.video.stream.VideoStream | None) -> float | None:
    if stream is not None and stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    if container.duration:
        return container.duration / av.time_base
    return None


def _start_time(stream: av.video.stream.VideoStream) -> float:
    if stream.start_time is None or stream.time_base is None:
        return 0.0
    return float(stream.start_time * stream.time_base)


class _EvenFrameSampler:
    """Keeps, for each of N evenly spaced instants, the decoded frame nearest to it.

    Frames arrive in presentation order. Only chosen frames are scaled and converted to RGB,
    so the cost over a bare decode is N small conversions.
    """

    def __init__(self, cfg: MediaConfig, duration: float | None, start: float, frame_rate: float | None,
                 windows: list[tuple[float, float]] | None = None) -> None:
        self.cfg = cfg
        self.frame_rate = frame_rate
        self.worst_offset_frames = 0.0  # the farthest a chosen frame lies from its target, in frame intervals
        self.start = start
        self.duration = duration
        windows = windows or ([(0.0, duration)] if duration else None)
        per_window = cfg.num_frames
        self.count = per_window * len(windows) if windows else per_window
        # The centre of each of N equal slices of each window (windows in order, so targets ascend).
        self.targets = ([a + (i + 0.5) * (b - a) / per_window for a, b in windows for i in range(per_window)]
                        if windows else None)  # fmt: skip
        self.chosen: list[np.ndarray] = []
        self.chosen_times: list[float] = []
        self.previous: tuple[float, av.VideoFrame] | None = None
        self.last_rgb: tuple[av.VideoFrame, np.ndarray] | None = None
        self.unknown_duration_frames: list[np.ndarray] = []
        # One scaler for every frame of the clip: frame.reformat builds a new one (its filters) each call.
        self.reformatter = VideoReformatter()

    def offer(self, frame: av.VideoFrame) -> None:
        time = (frame.time if frame.time is not None else 0.0) - self.start
        if self.targets is None:
            # No duration in the header: nothing to aim at, so keep every frame (small) and pick later.
            self.unknown_duration_frames.append(self._rgb(frame))
            return
        while len(self.chosen) < self.count and time >= self.targets[len(self.chosen)]:
            target = self.targets[len(self.chosen)]
            if self.previous is not None and target - self.previous[0] <= time - target:
                chosen_time, chosen = self.previous
            else:
                chosen_time, chosen = time, frame
            self.chosen.append(self._rgb(chosen))
            self.chosen_times.append(chosen_time)
            if self.frame_rate:
                self.worst_offset_frames = max(self.worst_offset_frames, abs(chosen_time - target) * self.frame_rate)
        self.previous = (time, frame)

    def could_choose(self, time: float) -> bool:
        """Whether a frame at `time` could be the nearest to a target: at a constant frame rate the nearest
        lies within half a frame interval of it (both, on a tie). A stream whose frames are further apart
        somewhere is caught by nearest_among, and decoded again, every frame."""
        after = bisect.bisect_left(self.targets, time)
        near = [self.targets[i] for i in (after - 1, after) if 0 <= i < len(self.targets)]
        return any(abs(time - target) <= 0.5 / self.frame_rate + 1e-6 for target in near)

    def nearest_among(self, times: list[float]) -> bool:
        """Whether each frame chosen is the one `offer` would have chosen had it been offered a frame at
        every time in `times` (every packet's, decoded or not); frames beyond the last time count as none."""
        ordered = sorted(times)
        for target, chosen_time in zip(self.targets, self.chosen_times):
            after = bisect.bisect_left(ordered, target)
            if after == len(ordered):
                continue  # the stream ended before this target: the last frame stands in, as in result()
            best = ordered[after]
            if after > 0 and target - ordered[after - 1] <= ordered[after] - target:
                best = ordered[after - 1]
            if not math.isclose(best, chosen_time, abs_tol=1e-9):
                return False
        return True

    @property
    def done(self) -> bool:
        return self.targets is not None and len(self.chosen) == self.count

    def result(self) -> tuple[np.ndarray | None, int]:
        """The (T, H, W, 3) frames and how many targets lay beyond the last decoded frame."""
        if self.targets is None:
            kept = self.unknown_duration_frames
            if not kept:
                return None, 0
            picks = np.linspace(0, len(kept) - 1, self.count).round().astype(int)
            return np.stack([kept[i] for i in picks]), 0
        unfilled = self.count - len(self.chosen)
        if unfilled and self.previous is not None:
            last = self._rgb(self.previous[1])
            self.chosen.extend([last] * unfilled)
        if not self.chosen:
            return None, unfilled
        return np.stack(self.chosen), unfilled

    def _rgb(self, frame: av.VideoFrame) -> np.ndarray:
        if self.last_rgb is not None and self.last_rgb[0] is frame:
            return self.last_rgb[1]
        rgb = display_rotated(resize_and_crop(frame, self.cfg.frame_size, self.reformatter), frame)
        self.last_rgb = (frame, rgb)
        return rgb


def display_rotated(rgb: np.ndarray, frame: av.VideoFrame) -> np.ndarray:
    """The frame as a player shows it: turned by its stream's display matrix (a phone's portrait clip is
    stored landscape with a 90 degree rotation), as FFmpeg's autorotate does. `frame.rotation` is
    counter-clockwise degrees (libavutil's av_display_rotation_get; fftools' get_rotation negates it and turns
    clockwise by the result: the same turn); np.rot90 turns counter-clockwise.
    Turning the square centre crop equals cropping the turned frame: the centre and the short side stay."""
    turns = round((frame.rotation or 0) / 90) % 4
    return np.ascontiguousarray(np.rot90(rgb, k=turns)) if turns else rgb


def resize_and_crop(frame: av.VideoFrame, size: int, reformatter: VideoReformatter | None = None) -> np.ndarray:
    """Scale so the short side is `size` (aspect kept, as R3D-18 was trained), centre-crop to size²."""
    scale = size / min(frame.width, frame.height)
    width = max(size, round(frame.width * scale))
    height = max(size, round(frame.height * scale))
    # swscale's bilinear widens its filter when shrinking, so it averages like AREA without its cost.
    scaled = (reformatter or VideoReformatter()).reformat(frame, width=width, height=height, format="rgb24", interpolation="BILINEAR")
    rgb = scaled.to_ndarray()
    top = (height - size) // 2
    left = (width - size) // 2
    return np.ascontiguousarray(rgb[top : top + size, left : left + size])


class _AudioCollector:
    """Downmixes and resamples audio frames with FFmpeg's resampler, up to the configured length."""

    def __init__(self, cfg: MediaConfig, wanted: int) -> None:
        self.wanted = wanted  # samples at cfg.sample_rate: enough for the model, or for the last window
        self.resampler = av.AudioResampler(format="flt", layout="mono", rate=cfg.sample_rate)
        self.chunks: list[np.ndarray] = []
        self.samples = 0
        self.channels = 0  # of the source, from the first decoded frame
        self.error: Exception | None = None

    @property
    def full(self) -> bool:
        return self.samples >= self.wanted or self.error is not None

    def offer(self, frame: av.AudioFrame) -> None:
        self.channels = self.channels or frame.layout.nb_channels
        try:
            self._keep(self.resampler.resample(frame))
        except (av.FFmpegError, ValueError) as error:
            self.error = error

    def result(self) -> np.ndarray | None:
        if self.error is not None:
            raise self.error
        if not self.full:
            self._keep(self.resampler.resample(None))  # flush what the resampler holds back
        if not self.chunks:
            return None
        return np.concatenate(self.chunks)[: self.wanted]

    def _keep(self, frames: list[av.AudioFrame]) -> None:
        for out in frames:
            # Mono float: the plane's first `samples` floats, read in place (to_ndarray stacks planes and copies:
            # five times the cost, over a clip's hundreds of frames); concatenated once in result().
            chunk = np.frombuffer(out.planes[0], dtype=np.float32, count=out.samples)
            self.chunks.append(chunk)
            self.samples += chunk.size


# ----------------------------------------------------------------------------------------------
# From decoded media to model inputs.


def frames_to_tensor(frames: np.ndarray) -> torch.Tensor:
    """(T, H, W, 3) uint8 RGB -> (3, T, H, W) float32, normalised with the video model's mean and std."""
    video = torch.from_numpy(frames).permute(3, 0, 1, 2).float().div_(255.0)
    mean = torch.tensor(VIDEO_MEAN).view(3, 1, 1, 1)
    std = torch.tensor(VIDEO_STD).view(3, 1, 1, 1)
    return video.sub_(mean).div_(std)


def empty_frames(cfg: MediaConfig) -> torch.Tensor:
    """The video input of an item whose video is absent: zeros, masked out by the model."""
    return torch.zeros(3, cfg.num_frames, cfg.frame_size, cfg.frame_size)


def log_mel(waveform: np.ndarray, cfg: MediaConfig) -> torch.Tensor:
    """Mono waveform -> (n_mels, mel_frames) log-mel spectrogram in decibels (at most 80 dB deep).

    The waveform is cut or zero-padded to `audio_seconds` first, so every item has the same shape.
    """
    samples = torch.zeros(cfg.audio_samples)
    length = min(waveform.size, cfg.audio_samples)
    samples[:length] = torch.from_numpy(waveform[:length])
    mel, to_db = _mel_transforms(cfg.sample_rate, cfg.n_fft, cfg.hop_length, cfg.n_mels)
    with torch.no_grad():
        return to_db(mel(samples))


def empty_log_mel(cfg: MediaConfig) -> torch.Tensor:
    """The audio input of an item whose audio is absent: zeros, masked out by the model."""
    return torch.zeros(cfg.n_mels, cfg.mel_frames)


@functools.lru_cache(maxsize=8)
def _mel_transforms(sample_rate: int, n_fft: int, hop_length: int, n_mels: int):
    mel = torchaudio.transforms.MelSpectrogram(
        sample_rate=sample_rate, n_fft=n_fft, hop_length=hop_length, n_mels=n_mels
    )
    return mel, torchaudio.transforms.AmplitudeToDB(stype="power", top_db=80.0)


def map_clips(fn: Callable, paths: Iterable, workers: int, desc: str, progress: bool | None = None) -> Iterator:
    """`fn(path)` for each path, in order, with a progress bar (`progress` None: only on a
    terminal): in this process for one worker, else in a pool of `workers` processes."""
    from tqdm import tqdm

    paths = list(paths)
    pool = ProcessPoolExecutor(max_workers=workers, initializer=pool_worker) if workers > 1 else None
    with pool or contextlib.nullcontext():  # one worker: no pool to start (and easy to profile)
        results = pool.map(fn, paths, chunksize=2) if pool else map(fn, paths)
        yield from tqdm(results, total=len(paths), desc=desc, unit="clip", disable=None if progress is None else not progress)


def pool_worker() -> None:
    """Set-up of a decoding pool process: one torch thread, and (on Linux) ended by the kernel when
    its parent dies, however it dies: a SIGTERM'd or killed `mmsent cache` leaves no worker behind."""
    one_torch_thread()
    if sys.platform == "linux":
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() == 1:  # the parent died before the line above took effect
            os._exit(1)


def one_torch_thread(*_worker_id) -> None:
    """Set-up of a decoding process (pool or DataLoader worker): one torch thread each, so N
    workers use N cores, not N squared."""
    torch.set_num_threads(1)
