"""The built-in sample dataset: a small MELD-format dataset generated on the spot, nothing downloaded.

Each modality carries a learnable but partial signal of the emotion, so that a model must fuse
them to do best. Every emotion has a code of three cues, one per modality, each cue taking one of
three values (a text theme, a voice pitch, a scene colour):

    emotion   text  audio  video          emotion   text  audio  video
    anger      0     0      0             sadness    1     2      0
    disgust    0     1      1             surprise   2     0      2
    fear       0     2      2             neutral    1     1      2
    joy        1     0      1

Any two cues identify the emotion; one cue alone leaves up to three candidates. Each cue is
replaced by a random value with probability `cue_noise`, so even all three together are not
perfect. With `text_cue="emotion"` the transcript instead names its emotion (one theme each, of
seven), without noise, while audio and video keep their noisy codes: text alone then identifies the
emotion, and a model trained with it always present has no reason to learn the others (what
modality dropout is for); audio and video together still identify it without the text. Sentiment
follows the emotion as in MELD (surprise is positive or negative at random).

The clips are H.264 + AAC mp4s in MELD.Raw's layout. A few are broken on purpose (missing, without
an audio stream, truncated mid-stream, zero bytes) and one has 5.1 audio, so that the robustness
path of every consumer is always exercised.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import av
import numpy as np

from mmsent.data.layout import CLIP_FOLDERS, MEDIA_NOTE
from mmsent.data.meld import write_meld_csv
from mmsent.labels import EMOTIONS
from mmsent.errors import SettingsError

SAMPLE_FORMAT_VERSION = 2  # bump when the generated content changes, so cached copies are rebuilt; 2: mmsent-media.json
# The sample's clips are 128x96 and its video cue is a colour: small inputs carry it and keep an epoch on a
# 2-core CPU in seconds. Written beside each split's CSV (layout.MEDIA_NOTE), so every command that decodes
# the sample, however it reaches it (a folder, a SageMaker channel), reads it alike unless told otherwise.
SAMPLE_MEDIA = {"num_frames": 4, "frame_size": 64}

# The (text, audio, video) cue of each emotion, as in the module docstring.
CUES: dict[str, tuple[int, int, int]] = {
    "anger": (0, 0, 0),
    "disgust": (0, 1, 1),
    "fear": (0, 2, 2),
    "joy": (1, 0, 1),
    "neutral": (1, 1, 2),
    "sadness": (1, 2, 0),
    "surprise": (2, 0, 2),
}
# Imbalanced like MELD, with neutral the largest class, but every class common enough to learn.
EMOTION_SHARES: dict[str, float] = {
    "neutral": 0.30, "joy": 0.15, "surprise": 0.13, "anger": 0.12,
    "sadness": 0.11, "fear": 0.10, "disgust": 0.09,
}  # fmt: skip

TEXT_THEMES: tuple[tuple[str, ...], ...] = (
    ("this is a disaster", "I can't stand it anymore", "get that thing away from me", "that is horrible",
     "you ruined everything", "I hate this place"),
    ("we went to the store", "I had a sandwich for lunch", "the meeting is at noon", "she called me back",
     "we watched a movie", "he moved to a new apartment"),
    ("what?! no way", "are you kidding me?!", "oh my god, really?!", "wait, what just happened?!",
     "you did what?!", "I don't believe it!"),
)  # fmt: skip
# With text_cue "emotion": a theme per emotion, so the transcript alone tells the emotion.
EMOTION_TEXTS: dict[str, tuple[str, ...]] = {
    "anger": ("I am so angry with you", "how dare you do that", "you make me furious", "get out of my sight",
              "stop yelling at me", "I have had it with you"),
    "disgust": ("that is disgusting", "ew, gross", "that smells rotten", "I feel sick just looking at it",
                "how revolting", "please never touch that again"),
    "fear": ("I'm scared", "did you hear that noise?", "please don't leave me alone", "something is following us",
             "I'm terrified of it", "what if they find us?"),
    "joy": ("this is wonderful", "I'm so happy for you", "we won!", "best day ever",
            "I love it, thank you", "that was so much fun"),
    "neutral": TEXT_THEMES[1],  # the mundane theme
    "sadness": ("I miss her so much", "I feel so alone", "he's never coming back", "I just want to cry",
                "nothing matters anymore", "it's all over between us"),
    "surprise": TEXT_THEMES[2],  # the exclaiming theme
}  # fmt: skip
TEXT_CUE_KINDS: tuple[str, ...] = ("theme", "emotion")
FILLERS: tuple[str, ...] = ("", "well, ", "so, ", "yeah, ", "hey, ", "um, ", "okay, ")
SPEAKERS: tuple[str, ...] = ("Avery", "Blake", "Casey", "Devon", "Emery", "Finley")
PITCHES_HZ: tuple[float, ...] = (170.0, 340.0, 680.0)  # one octave apart: distinct mel bands
COLOURS_RGB: tuple[tuple[int, int, int], ...] = ((200, 60, 50), (60, 170, 70), (60, 80, 200))

# Deliberately broken clips: (split, position in the split, kind).
BROKEN: tuple[tuple[str, int, str], ...] = (
    ("train", 3, "missing"),
    ("train", 7, "no_audio"),
    ("train", 11, "truncated"),
    ("train", 13, "zero_length"),
    ("train", 17, "surround_audio"),  # valid, with 5.1 audio to downmix
    ("dev", 2, "missing"),
    ("test", 5, "no_audio"),
)

MANIFEST = "sample.json"
assert set(CUES) == set(EMOTIONS) == set(EMOTION_SHARES) == set(EMOTION_TEXTS)


@dataclass(frozen=True)
class SampleConfig:
    train_size: int = 420  # clips per split; the defaults train a fused model in minutes on a CPU
    dev_size: int = 90
    test_size: int = 90
    seed: int = 0  # the same seed writes the same dataset
    cue_noise: float = 0.2  # chance that each modality's cue is replaced by a random one
    text_cue: str = "theme"  # theme: 3 themes shared by emotions; emotion: the transcript names its emotion, noise-free
    width: int = 128  # clip frame size; small, so that decoding costs little
    height: int = 96
    fps: int = 12
    audio_rate: int = 48_000  # MELD's clips carry 48 kHz stereo AAC
    min_seconds: float = 1.5
    max_seconds: float = 3.5

    def __post_init__(self) -> None:
        if min(self.train_size, self.dev_size, self.test_size) < 1:
            raise SettingsError("every split of the sample needs at least one clip")
        if not 0.0 <= self.cue_noise <= 1.0:
            raise SettingsError(f"cue_noise must lie in [0, 1], got {self.cue_noise}")
        if self.text_cue not in TEXT_CUE_KINDS:
            raise SettingsError(f"text_cue must be one of {', '.join(TEXT_CUE_KINDS)}, got {self.text_cue!r}")
        if self.width % 2 or self.height % 2:
            raise SettingsError("clip width and height must be even (H.264 with 4:2:0 chroma)")

    def sizes(self) -> dict[str, int]:
        return {"train": self.train_size, "dev": self.dev_size, "test": self.test_size}


@dataclass(frozen=True)
class _Clip:
    """What one clip shows and sounds like; planned up front so clips can be encoded in parallel."""

    path: Path
    video_cue: int
    audio_cue: int
    seconds: float
    kind: str | None  # one of BROKEN's kinds, or None for a sound clip
    seed: int


def write_sample(out: Path, cfg: SampleConfig = SampleConfig(), workers: int | None = None,
                 progress: bool | None = None) -> Path:
    """Write the sample dataset to `out` (which must not exist, or be empty), atomically.

    The content depends on `cfg` alone, not on the number of worker processes.
    """
    from tqdm import tqdm

    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise FileExistsError(f"{out}: already exists and is not an empty folder; choose another --out")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        rng = np.random.default_rng(cfg.seed)
        clips: list[_Clip] = []
        for split, size in cfg.sizes().items():
            (staging / split / CLIP_FOLDERS[split]).mkdir(parents=True)
            rows = _plan_split(staging, split, size, cfg, rng, clips)
            write_meld_csv(staging / split / f"{split}_sent_emo.csv", rows)
            (staging / split / MEDIA_NOTE).write_text(json.dumps({"media": SAMPLE_MEDIA}, indent=2) + "\n")
        workers = workers or os.cpu_count() or 1
        disable = None if progress is None else not progress
        with ProcessPoolExecutor(max_workers=workers) as pool:
            done = pool.map(_write_clip, clips, [cfg] * len(clips), chunksize=8)
            for _ in tqdm(done, total=len(clips), desc="sample clips", unit="clip", disable=disable):
                pass
        (staging / MANIFEST).write_text(
            json.dumps({"format_version": SAMPLE_FORMAT_VERSION, **asdict(cfg)}, indent=2) + "\n"
        )
        try:
            if out.exists():
                out.rmdir()
            os.replace(staging, out)
        except OSError as error:  # another writer (a second `mmsent sample --out` on it) filled it meanwhile
            raise FileExistsError(f"{out}: filled by another process while this one wrote; that copy is left as it is") from error
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out


def _plan_split(root: Path, split: str, size: int, cfg: SampleConfig, rng: np.random.Generator,
                clips: list[_Clip]) -> list[dict]:
    broken = {position: kind for s, position, kind in BROKEN if s == split}
    themes = TEXT_THEMES if cfg.text_cue == "theme" else tuple(EMOTION_TEXTS[name] for name in EMOTIONS)
    names = list(EMOTION_SHARES)
    shares = np.array([EMOTION_SHARES[n] for n in names])
    rows = []
    clock = 0.0
    for position in range(size):
        emotion = names[rng.choice(len(names), p=shares / shares.sum())]
        text_cue, audio_cue, video_cue = (
            c if rng.random() >= cfg.cue_noise else int(rng.integers(3)) for c in CUES[emotion]
        )
        if cfg.text_cue == "emotion":  # noise-free; the draws above still happen, so the clips stay the same
            text_cue = EMOTIONS.index(emotion)
        seconds = float(rng.uniform(cfg.min_seconds, cfg.max_seconds))
        dialogue_id, utterance_id = divmod(position, 5)
        theme = themes[text_cue]
        text = FILLERS[rng.integers(len(FILLERS))] + theme[rng.integers(len(theme))]
        path = root / split / CLIP_FOLDERS[split] / f"dia{dialogue_id}_utt{utterance_id}.mp4"
        clips.append(_Clip(path, video_cue, audio_cue, seconds, broken.get(position), int(rng.integers(2**31))))
        rows.append({
            "Sr No.": position + 1,
            "Utterance": text[0].upper() + text[1:],
            "Speaker": SPEAKERS[rng.integers(len(SPEAKERS))],
            "Emotion": emotion,
            "Sentiment": _sentiment(emotion, rng),
            "Dialogue_ID": dialogue_id,
            "Utterance_ID": utterance_id,
            "Season": 1,
            "Episode": 1 + dialogue_id // 20,
            "StartTime": _timestamp(clock),
            "EndTime": _timestamp(clock + seconds),
        })  # fmt: skip
        clock += seconds + 0.5
    return rows


def _write_clip(clip: _Clip, cfg: SampleConfig) -> None:
    if clip.kind == "missing":
        return
    rng = np.random.default_rng(clip.seed)
    frames = _video(clip.video_cue, clip.seconds, cfg, rng)
    audio = _audio(clip.audio_cue, clip.seconds, cfg, rng, channels=6 if clip.kind == "surround_audio" else 2)
    encode_clip(clip.path, frames, cfg.fps, None if clip.kind == "no_audio" else audio, cfg.audio_rate)
    if clip.kind == "truncated":
        _truncate(clip.path)
    elif clip.kind == "zero_length":
        clip.path.write_bytes(b"")


def _sentiment(emotion: str, rng: np.random.Generator) -> str:
    if emotion == "neutral":
        return "neutral"
    if emotion == "joy" or (emotion == "surprise" and rng.random() < 0.5):
        return "positive"
    return "negative"


def _timestamp(seconds: float) -> str:
    millis = round(seconds * 1000)
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    secs, millis = divmod(millis, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d},{millis:03d}"


def _video(cue: int, seconds: float, cfg: SampleConfig, rng: np.random.Generator) -> np.ndarray:
    """A scene tinted with the cue's colour, blotchy noise, and a grey square moving across it."""
    count = max(2, round(seconds * cfg.fps))
    base = np.array(COLOURS_RGB[cue], dtype=np.float32) + rng.normal(0, 20, 3)
    # Noise in 8x8-pixel blocks: as distracting to a model as pixel noise, far cheaper to encode.
    block = 8
    noise = rng.normal(0, 25, (count, -(-cfg.height // block), -(-cfg.width // block), 3)).astype(np.float32)
    # Coloured per block, then blown up to pixels: the same frames as blowing up the noise first, at 1/64 of the work.
    blocks = np.clip(base + noise, 0, 255).astype(np.uint8)
    frames = np.ascontiguousarray(blocks.repeat(block, axis=1).repeat(block, axis=2)[:, : cfg.height, : cfg.width])
    side = cfg.height // 4
    start = rng.uniform(0, [cfg.width - side, cfg.height - side])
    velocity = rng.normal(0, 2.0, 2)
    for i in range(count):
        x, y = (start + velocity * i) % [cfg.width - side, cfg.height - side]
        frames[i, int(y) : int(y) + side, int(x) : int(x) + side] = 128
    return frames


def _audio(cue: int, seconds: float, cfg: SampleConfig, rng: np.random.Generator, channels: int) -> np.ndarray:
    """A voiced tone at the cue's pitch with vibrato and syllable-like bursts, in background noise."""
    t = np.arange(round(seconds * cfg.audio_rate)) / cfg.audio_rate
    pitch = PITCHES_HZ[cue] * rng.uniform(0.92, 1.08)
    phase = 2 * np.pi * np.cumsum(pitch * (1 + 0.02 * np.sin(2 * np.pi * 5 * t))) / cfg.audio_rate
    sine, cosine = np.sin(phase), np.cos(phase)
    voice = sine * (1 + cosine + (3 - 4 * sine * sine) / 3)  # sin p + sin 2p / 2 + sin 3p / 3, with two transcendentals
    envelope = 0.5 + 0.5 * np.maximum(np.sin(2 * np.pi * rng.uniform(2, 4) * t + rng.uniform(0, 6)), 0)
    mono = (0.2 * voice * envelope + rng.normal(0, 0.03, t.size)).astype(np.float32)
    return np.repeat(mono[None, :], channels, axis=0)


def encode_clip(path: Path, frames: np.ndarray | None, fps: int, audio: np.ndarray | None = None,
                audio_rate: int = 48_000, crf: int = 28, preset: str = "ultrafast",
                x264_params: str | None = None) -> None:
    """Write an H.264 + AAC mp4: frames (T, H, W, 3) uint8 RGB, audio (channels, samples) float32.
    `preset` is x264's: ultrafast writes no B-frames; veryfast and slower ones do, as broadcast
    encodes like MELD's do. `x264_params` passes x264's own options through ("bframes=5:b-pyramid=none").

    Audio of 1, 2 or 6 channels is written as mono, stereo or 5.1. None leaves that stream out.
    """
    # faststart puts the index first, as streaming-ready clips like MELD's have it; a truncated
    # copy then still opens and fails only where its data stops.
    with av.open(str(path), "w", options={"movflags": "+faststart"}) as out:
        video = None
        if frames is not None:
            video = out.add_stream("libx264", rate=fps)
            video.height, video.width = frames.shape[1:3]
            video.pix_fmt = "yuv420p"
            video.options = {"preset": preset, "crf": str(crf)} | ({"x264-params": x264_params} if x264_params else {})
        sound = None
        if audio is not None:
            sound = out.add_stream("aac", rate=audio_rate)
            sound.layout = {1: "mono", 2: "stereo", 6: "5.1"}[audio.shape[0]]
            sound.options = {"aac_coder": "fast"}  # the default coder is 5x slower for no gain here
        if video is not None:
            for image in frames:
                out.mux(video.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
            out.mux(video.encode())
        if sound is not None:
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(audio), format="fltp", layout=sound.layout.name)
            frame.sample_rate, frame.pts = audio_rate, 0
            out.mux(sound.encode(frame))
            out.mux(sound.encode())


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 3 // 5])


def sample_is_complete(root: Path) -> bool:
    """Whether `root` holds a sample written by this version (write_sample renames it in whole)."""
    manifest = Path(root) / MANIFEST
    if not manifest.is_file():
        return False
    try:
        return json.loads(manifest.read_text()).get("format_version") == SAMPLE_FORMAT_VERSION
    except (OSError, ValueError):
        return False



def cached_sample(cache_dir: Path, cfg: SampleConfig = SampleConfig(), progress: bool | None = None) -> Path:
    """The sample for `cfg` under `cache_dir`, generated on first use and reused after."""
    root = Path(cache_dir) / f"sample-v{SAMPLE_FORMAT_VERSION}-{_cfg_key(cfg)}"
    if sample_is_complete(root):
        return root
    if root.exists():  # an older or foreign folder in our place: move it aside, never delete it
        os.replace(root, root.with_name(root.name + f".stale-{os.getpid()}"))
    try:
        return write_sample(root, cfg, progress=progress)
    except FileExistsError:
        if sample_is_complete(root):  # another process (a second run started at once) wrote it meanwhile
            return root
        raise


def _cfg_key(cfg: SampleConfig) -> str:
    return hashlib.sha256(json.dumps(asdict(cfg), sort_keys=True).encode()).hexdigest()[:12]
