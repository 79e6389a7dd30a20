"""An utterance's token ids, alone or with the turns of its dialogue around it.

MELD's utterances are turns of conversations: "What?" is surprise or anger by what came before.
With `TextConfig.context_past`/`context_future` set, the text encoder reads

    [CLS] Speaker: turn ... Speaker: turn [SEP] Speaker: target [SEP] Speaker: turn ... [SEP]
          '---------- past, in order ----------'  '--- target ---'     '--- future ---'

(each segment only where its setting is above 0, kept even when the dialogue has no such turn, so
the target always sits in the same segment). `target_mask` marks the target's span (with [CLS] and
its closing [SEP]): the encoder pools over it alone, so context informs the target's tokens through
attention without diluting them. Over `max_tokens`, whole context turns go, farthest first; the
target is never cut for context (only where it alone is longer than `max_tokens`, as without context).

With no context the ids are the tokenizer's own encoding of the utterance and `target_mask` equals
`attention_mask`: exactly what a model without context was trained on. Training, `evaluate`,
`predict` and serving all encode through `encode_texts`, with the settings saved in the model dir.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from mmsent.config import TextConfig
from mmsent.data.meld import Utterance, normalize_text
from mmsent.errors import SettingsError

TOKEN_COLUMNS: tuple[str, ...] = ("input_ids", "attention_mask", "target_mask")  # what encode_texts returns


@dataclass(frozen=True)
class Turn:
    speaker: str
    text: str


@dataclass(frozen=True)
class TextInput:
    """One utterance to classify, with its dialogue's turns around it (empty: no context)."""

    text: str
    speaker: str = ""  # "" where unknown (a bare --text): the target then goes without a name
    past: tuple[Turn, ...] = ()  # in dialogue order, the nearest last
    future: tuple[Turn, ...] = ()  # in dialogue order, the nearest first

    def within(self, cfg: TextConfig) -> "TextInput":
        """The input as a model with these settings reads it: its nearest turns, or the utterance alone."""
        if not cfg.uses_context:
            return TextInput(self.text)
        return TextInput(self.text, self.speaker, self.past[max(0, len(self.past) - cfg.context_past) :],
                         self.future[: cfg.context_future])  # fmt: skip


    def normalized(self) -> "TextInput":
        """The input as training reads a CSV's rows: text repaired by ftfy, speaker names normalised."""
        def turn(t: Turn) -> Turn:
            return Turn(normalize_speaker(t.speaker), normalize_text(t.text))

        return TextInput(normalize_text(self.text), normalize_speaker(self.speaker), tuple(map(turn, self.past)),
                         tuple(map(turn, self.future)))  # fmt: skip


def normalize_speaker(name: str) -> str:
    """One spelling per speaker: MELD writes 'Phoebe Sr.' and 'Phoebe Sr', 'Nurse #1' and 'Fireman No. 1',
    'Richard’s Date'. Periods go, '#N' becomes 'No N', runs of spaces collapse, and an all-caps or
    all-lowercase name is title-cased."""
    name = normalize_text(name).replace(".", " ")
    name = re.sub(r"#\s*(\d)", r"No \1", name)
    name = " ".join(name.split())
    return name.title() if name.isupper() or name.islower() else name


def dialogue_inputs(utterances: Sequence[Utterance], past: int | None = None, future: int | None = None) -> list[TextInput]:
    """Each utterance with up to `past` turns before it and `future` after it in its dialogue (None:
    all of them), turns ordered by Utterance_ID whatever the CSV's row order. A model takes as many
    as its config says (`TextInput.within`)."""
    dialogues: dict[int, list[Utterance]] = defaultdict(list)
    for utterance in utterances:
        dialogues[utterance.dialogue_id].append(utterance)
    turns: dict[int, list[Turn]] = {}  # dialogue -> its turns in order
    position: dict[tuple[int, int], int] = {}  # (dialogue, utterance) -> its place among them
    for dialogue_id, dialogue in dialogues.items():
        dialogue.sort(key=lambda u: u.utterance_id)
        turns[dialogue_id] = [Turn(normalize_speaker(u.speaker), u.text) for u in dialogue]
        position |= {(dialogue_id, u.utterance_id): i for i, u in enumerate(dialogue)}
    inputs = []
    for utterance in utterances:
        dialogue, at = turns[utterance.dialogue_id], position[(utterance.dialogue_id, utterance.utterance_id)]
        first = 0 if past is None else max(0, at - past)
        last = len(dialogue) if future is None else at + 1 + future
        inputs.append(TextInput(utterance.text, dialogue[at].speaker, tuple(dialogue[first:at]), tuple(dialogue[at + 1 : last])))
    return inputs


def encode_texts(tokenizer, inputs: Sequence[TextInput], cfg: TextConfig) -> dict[str, torch.Tensor]:
    """input_ids, attention_mask and target_mask, (items, max_tokens) each, padded to max_tokens.
    A blank utterance still encodes (its item is marked text-absent by the caller)."""
    inputs = [i.within(cfg) for i in inputs]
    if not cfg.uses_context:
        encoded = tokenizer([i.text for i in inputs], max_length=cfg.max_tokens, truncation=True,
                            padding="max_length", return_tensors="pt")  # fmt: skip
        return {"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"],
                "target_mask": encoded["attention_mask"].clone()}  # fmt: skip
    cls, sep, pad = tokenizer.cls_token_id, tokenizer.sep_token_id, tokenizer.pad_token_id
    if cls is None or sep is None or pad is None:
        raise SettingsError(f"context turns need a tokenizer with [CLS], [SEP] and [PAD] tokens; "
                            f"{type(tokenizer).__name__} lacks one: train with --context-past 0 --context-future 0")  # fmt: skip
    # Every distinct string is tokenised once (a turn is context for up to past + future others).
    strings = sorted({s for i in inputs for s in _strings(i)})
    pieces = dict(zip(strings, tokenizer(strings, add_special_tokens=False)["input_ids"])) if strings else {}
    rows = [_assemble(i, pieces, cfg, cls, sep) for i in inputs]
    ids = torch.full((len(rows), cfg.max_tokens), pad, dtype=torch.long)
    attention = torch.zeros((len(rows), cfg.max_tokens), dtype=torch.long)
    target = torch.zeros((len(rows), cfg.max_tokens), dtype=torch.long)
    for row, (tokens, target_span) in enumerate(rows):
        ids[row, : len(tokens)] = torch.tensor(tokens, dtype=torch.long)
        attention[row, : len(tokens)] = 1
        target[row, 0] = 1  # [CLS]
        target[row, target_span] = 1
    return {"input_ids": ids, "attention_mask": attention, "target_mask": target}


def _said(speaker: str, text: str) -> str:
    return f"{speaker}: {text}" if speaker else text


def _strings(item: TextInput) -> list[str]:
    return [_said(item.speaker, item.text)] + [_said(t.speaker, t.text) for t in item.past + item.future]


def _assemble(item: TextInput, pieces: dict[str, list[int]], cfg: TextConfig, cls: int, sep: int) -> tuple[list[int], slice]:
    """The row's token ids, and the span of the target and its closing [SEP]."""
    has_past, has_future = cfg.context_past > 0, cfg.context_future > 0
    specials = 2 + has_past + has_future  # [CLS], the target's [SEP], each context segment's [SEP]
    target = pieces[_said(item.speaker, item.text)][: max(cfg.max_tokens - specials, 0)]
    budget = cfg.max_tokens - specials - len(target)
    # Nearest first, a past turn before a future one at the same distance; a turn that does not fit
    # ends the context (a nearer one never goes while a farther one stays).
    nearest_first = _interleave([("past", t) for t in reversed(item.past)], [("future", t) for t in item.future])
    kept_past, kept_future = [], []
    for side, turn in nearest_first:
        tokens = pieces[_said(turn.speaker, turn.text)]
        if len(tokens) > budget:
            break
        budget -= len(tokens)
        (kept_past if side == "past" else kept_future).append(tokens)
    tokens = [cls]
    if has_past:
        tokens += [t for turn in reversed(kept_past) for t in turn] + [sep]
    start = len(tokens)
    tokens += target + [sep]
    span = slice(start, len(tokens))
    if has_future:
        tokens += [t for turn in kept_future for t in turn] + [sep]
    return tokens, span


def _interleave(first: list, second: list) -> list:
    merged = []
    for i in range(max(len(first), len(second))):
        merged += first[i : i + 1] + second[i : i + 1]
    return merged
