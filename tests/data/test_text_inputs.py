import pytest
import torch

from mmsent.config import TextConfig
from mmsent.data.meld import Utterance, read_meld_csv
from mmsent.data.text_inputs import TextInput, Turn, dialogue_inputs, encode_texts, normalize_speaker
from mmsent.errors import SettingsError
from mmsent.pretrained import load_tokenizer


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer("default")


def _utterance(dialogue: int, turn: int, text: str, speaker: str = "Ross") -> Utterance:
    return Utterance(sr_no=None, text=text, speaker=speaker, emotion=0, sentiment=0, dialogue_id=dialogue,
                     utterance_id=turn, season=None, episode=None, start_time="", end_time="")  # fmt: skip


def _decode(tokenizer, encoded: dict, row: int, mask: str = "attention_mask") -> str:
    return tokenizer.decode(encoded["input_ids"][row][encoded[mask][row].bool()])


@pytest.mark.parametrize(("raw", "normal"), [
    ("Phoebe Sr.", "Phoebe Sr"), ("Phoebe Sr", "Phoebe Sr"), ("Nurse #1", "Nurse No 1"), ("Fireman No. 1", "Fireman No 1"),
    ("Richard’s Date", "Richard's Date"), ("  RACHEL ", "Rachel"), ("joey", "Joey"), ("Mr.  Geller", "Mr Geller"), ("", ""),
])  # fmt: skip
def test_speaker_names_have_one_spelling(raw, normal):
    assert normalize_speaker(raw) == normal


def test_turns_come_from_the_same_dialogue_in_utterance_order_whatever_the_row_order():
    rows = [_utterance(1, 2, "c", "Monica"), _utterance(0, 0, "x"), _utterance(1, 0, "a", "Rachel"),
            _utterance(1, 1, "b", "Phoebe Sr."), _utterance(1, 3, "d")]  # fmt: skip
    inputs = dialogue_inputs(rows, past=1, future=1)
    assert inputs[0] == TextInput("c", "Monica", past=(Turn("Phoebe Sr", "b"),), future=(Turn("Ross", "d"),))
    assert inputs[1] == TextInput("x", "Ross")  # a dialogue of one turn: no context
    everything = dialogue_inputs(rows)
    assert [t.text for t in everything[0].past] == ["a", "b"] and [t.text for t in everything[0].future] == ["d"]
    assert everything[0].within(TextConfig(context_past=1)) == inputs[0].within(TextConfig(context_past=1))
    assert everything[0].within(TextConfig()) == TextInput("c")  # no context: the utterance alone, no speaker


def test_without_context_the_ids_are_the_tokenizers_own(tokenizer):
    texts = ["Oh my God, he's lost it.", "What?", ""]
    encoded = encode_texts(tokenizer, [TextInput(t, "Ross", past=(Turn("Monica", "Hi"),)) for t in texts], TextConfig(max_tokens=16))
    plain = tokenizer(texts, max_length=16, truncation=True, padding="max_length", return_tensors="pt")
    assert torch.equal(encoded["input_ids"], plain["input_ids"])
    assert torch.equal(encoded["attention_mask"], plain["attention_mask"])
    assert torch.equal(encoded["target_mask"], plain["attention_mask"])  # pooling over every real token, as before context


def test_context_segments_and_the_target_span(tokenizer):
    item = TextInput("what?", "Ross", past=(Turn("Monica", "I broke it."), Turn("Rachel", "You did not!")),
                     future=(Turn("Monica", "I did."),))  # fmt: skip
    encoded = encode_texts(tokenizer, [item], TextConfig(max_tokens=64, context_past=2, context_future=1))
    assert _decode(tokenizer, encoded, 0) == (
        "[CLS] monica : i broke it. rachel : you did not! [SEP] ross : what? [SEP] monica : i did. [SEP]")
    assert _decode(tokenizer, encoded, 0, "target_mask") == "[CLS] ross : what? [SEP]"
    assert encoded["input_ids"].shape == (1, 64) and int(encoded["attention_mask"].sum()) < 64
    # The first turn of a dialogue keeps its (empty) past segment: the target is always the second segment.
    first = encode_texts(tokenizer, [TextInput("hi", "Ross")], TextConfig(max_tokens=16, context_past=2))
    assert _decode(tokenizer, first, 0) == "[CLS] [SEP] ross : hi [SEP]"


def test_truncation_drops_the_farthest_turns_and_never_cuts_the_target(tokenizer):
    long_turn = "blah " * 200
    target = "I cannot believe you did that to me after everything we went through together."
    item = TextInput(target, "Rachel",
                     past=(Turn("Far", long_turn), Turn("Middle", "middle turn here."), Turn("Near", "near turn.")),
                     future=(Turn("Next", "next turn."), Turn("Later", long_turn)))  # fmt: skip
    cfg = TextConfig(max_tokens=48, context_past=3, context_future=2)
    encoded = encode_texts(tokenizer, [item], cfg)
    text = _decode(tokenizer, encoded, 0)
    assert "[SEP] rachel : i cannot believe you did that to me after everything we went through together. [SEP]" in text
    assert "near turn" in text and "next turn" in text and "middle turn" in text
    assert "blah" not in text and "far" not in text and "later" not in text
    assert int(encoded["attention_mask"].sum()) <= 48
    # Room for the target alone: every context turn goes, the target stays whole.
    tight = encode_texts(tokenizer, [item], TextConfig(max_tokens=24, context_past=3, context_future=2))
    assert _decode(tokenizer, tight, 0) == "[CLS] [SEP] rachel : i cannot believe you did that to me after everything we went through together. [SEP] [SEP]"
    # A nearer turn that does not fit ends the context: no farther turn jumps the queue.
    gap = TextInput("ok.", "Ross", past=(Turn("Far", "short."), Turn("Near", long_turn)))
    assert "short" not in _decode(tokenizer, encode_texts(tokenizer, [gap], TextConfig(max_tokens=32, context_past=2)), 0)


def test_context_settings_are_checked():
    with pytest.raises(SettingsError, match="context_past must be 0 or more"):
        TextConfig(context_past=-1)
    with pytest.raises(SettingsError, match="max_tokens must be at least 5"):
        TextConfig(max_tokens=4, context_past=1, context_future=1)


def test_real_meld_with_context_fits_and_keeps_every_target(meld_dir, tokenizer):
    rows = read_meld_csv(meld_dir / "dev_sent_emo.csv")
    cfg = TextConfig(max_tokens=128, context_past=3, context_future=1)
    with_context = encode_texts(tokenizer, dialogue_inputs(rows, 3, 1), cfg)
    alone = encode_texts(tokenizer, [TextInput(f"{normalize_speaker(r.speaker)}: {r.text}") for r in rows], TextConfig(max_tokens=128))
    targets = with_context["target_mask"].sum(dim=1)
    assert torch.equal(targets, alone["attention_mask"].sum(dim=1))  # every target whole: [CLS] + its tokens + [SEP]
    assert with_context["attention_mask"].sum(dim=1).float().mean() > 2 * targets.float().mean()  # and context around it
