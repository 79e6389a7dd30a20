"""The model dir's README.md: a model card in the Hugging Face convention (YAML front matter, then
prose and tables), so a model dir, or the endpoint archive that packs one, says what produced it: the
data and its splits, the labels, the encoders, the training settings, the best epoch's metrics per
class, how to use it, and what it is not for."""

from __future__ import annotations

from dataclasses import asdict

from mmsent import __version__
from mmsent.config import AUDIO_CNN, VIDEO_R3D, DataConfig, ModelConfig, TrainConfig
from mmsent.labels import TASKS

_TEXT_MODELS = {"default": "all-MiniLM-L6-v2 (offline, 6-layer BERT, mean-pooled)"}


def model_card(final: dict, splits: dict[str, dict], data_cfg: DataConfig, model_cfg: ModelConfig,
               train_cfg: TrainConfig) -> str:  # fmt: skip
    """`final`: the run's metrics.json; `splits`: each split's CSV path and item count."""
    best = final["best_epoch"]
    scored = [split for split in ("validation", "test") if split in final]
    front = ["---", "library_name: mmsent", "tags:", "- emotion-recognition", "- sentiment-analysis", "- multimodal",
             *[f"- {m}" for m in model_cfg.modalities], "metrics:", "- f1", "- accuracy", "---", ""]  # fmt: skip
    lines = [
        "# Emotion and sentiment of a conversation clip",
        "",
        f"A fusion model of {', '.join(model_cfg.modalities)} trained by mmsent {__version__} (`mmsent train`). For each "
        "utterance (a short clip, its transcript, or both) it predicts one of 7 emotions "
        f"({', '.join(TASKS['emotion'])}) and one of 3 sentiments ({', '.join(TASKS['sentiment'])}).",
        "",
        "## Use",
        "",
        "```bash",
        "mmsent predict --model-dir THIS_FOLDER CLIP.mp4 --text \"what was said\"",
        "mmsent evaluate --model-dir THIS_FOLDER --data-dir DATA --split test",
        "mmsent serve --model-dir THIS_FOLDER --port 8080",
        "```",
        "",
        "## Data",
        "",
        "| split | items | CSV |",
        "|---|---:|---|",
        *[f"| {split} | {info['items']} | `{info['csv']}` |" for split, info in splits.items()],
        "",
        f"Clips are read as {data_cfg.media.num_frames} frames of {data_cfg.media.frame_size} px and "
        f"{data_cfg.media.audio_seconds:g} s of {data_cfg.media.sample_rate} Hz audio ({data_cfg.media.n_mels} mel bins); "
        f"transcripts up to {data_cfg.text.max_tokens} tokens, with {data_cfg.text.context_past} turn(s) before and "
        f"{data_cfg.text.context_future} after.",
        "",
        "## Encoders",
        "",
        *_encoders(model_cfg),
        "",
        f"## Metrics (best epoch {best} of {final['epochs_run']}, chosen on validation emotion weighted F1)",
        "",
        "| split | head | accuracy | weighted F1 | macro F1 |",
        "|---|---|---:|---:|---:|",
        *[f"| {split} | {task} | {final[split][task]['accuracy']:.4f} | {final[split][task]['weighted_f1']:.4f} | "
          f"{final[split][task]['macro_f1']:.4f} |" for split in scored for task in TASKS],  # fmt: skip
        *_without_text(final, scored),
        "",
        f"Per class ({scored[-1]}):",
        "",
        "| head | class | precision | recall | F1 | support |",
        "|---|---|---:|---:|---:|---:|",
        *[f"| {task} | {name} | {row['precision']:.4f} | {row['recall']:.4f} | {row['f1']:.4f} | {row['support']} |"
          for task in TASKS for name, row in final[scored[-1]][task]["per_class"].items()],  # fmt: skip
        "",
        "## Training settings",
        "",
        "| setting | value |",
        "|---|---|",
        *[f"| {name} | {_show(value)} |" for name, value in asdict(train_cfg).items()],
        "",
        "`config.json` holds these with the model and data settings; `metrics.json` every number above.",
        "",
        "## Intended use and limits",
        "",
        "- Research and prototyping on short (about 1-10 s) English conversation clips of the kind it was trained on.",
        "- The labels are a single annotator-agreed emotion per utterance; mixed or subtle emotions are forced into one.",
        "- Scores on other speakers, languages, recording conditions or cultures may be far lower than above: "
        "measure on your own labelled data (`mmsent evaluate`) before relying on it.",
        "- Not for decisions about people (hiring, health, policing, credit).",
    ]
    return "\n".join(front + lines) + "\n"


def _encoders(model_cfg: ModelConfig) -> list[str]:
    frozen = set(model_cfg.freeze)
    state = {name: "frozen" if name in frozen else "fine-tuned" for name in ("text", "video", "audio")}
    audio = (f"a CNN over log-mel spectrograms (channels {','.join(map(str, model_cfg.audio_channels))}), trained from scratch"
             if model_cfg.audio_model == AUDIO_CNN else f"`{model_cfg.audio_model}` over the waveform, {state['audio']}")
    video = (f"R3D-18, weights `{model_cfg.video_weights}`" if model_cfg.video_model == VIDEO_R3D else f"`{model_cfg.video_model}`")
    rows = {
        "text": f"- text: `{_TEXT_MODELS.get(model_cfg.text_model, model_cfg.text_model)}`, {state['text']}",
        "audio": f"- audio: {audio}",
        "video": f"- video: {video}, {state['video']}",
    }  # fmt: skip
    fusion = (f"- fusion: each modality projected to {model_cfg.embed_dim}, concatenated with presence flags, a "
              f"{model_cfg.fusion_dim}-wide layer, one head per task (dropout {model_cfg.dropout:g})")  # fmt: skip
    return [rows[m] for m in model_cfg.modalities] + [fusion]


def _without_text(final: dict, scored: list[str]) -> list[str]:
    rows = [f"| {split} (text hidden) | {task} | {final[split]['without_text'][task]['accuracy']:.4f} | "
            f"{final[split]['without_text'][task]['weighted_f1']:.4f} | {final[split]['without_text'][task]['macro_f1']:.4f} |"
            for split in scored if "without_text" in final[split] for task in TASKS]  # fmt: skip
    return rows


def _show(value) -> str:
    if isinstance(value, tuple):
        return ",".join(map(str, value)) or "none"
    return str(value)
