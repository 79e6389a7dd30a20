import pytest
import torch

from mmsent.config import TrainConfig

from mmsent.training.modality_dropout import drop_modalities


def _presence(items: int, present: tuple[bool, bool, bool] = (True, True, True)) -> dict:
    return {key: torch.full((items,), value) for key, value in zip(("text_present", "video_present", "audio_present"), present)}


def _kept(batch: dict) -> torch.Tensor:
    return torch.stack([batch[k] for k in ("text_present", "video_present", "audio_present")], dim=1)


def test_each_modality_is_hidden_at_about_the_rate_and_never_all_of_an_item():
    torch.manual_seed(0)
    kept = _kept(drop_modalities(_presence(20_000), 0.3))
    assert kept.any(dim=1).all()  # every item keeps at least one modality
    hidden_rate = 1 - kept.float().mean(dim=0)
    # 0.3 each, a little less after putting one back where all three went (0.3^3 of items)
    assert torch.all((hidden_rate > 0.26) & (hidden_rate < 0.31)), hidden_rate


def test_only_the_named_modalities_are_hidden():
    torch.manual_seed(0)
    kept = _kept(drop_modalities(_presence(20_000), 0.3, ("text",)))
    assert kept[:, 1:].all()  # video and audio always stay
    assert 0.28 < 1 - kept[:, 0].float().mean() < 0.32  # text hidden at the rate: the others keep the item alive
    torch.manual_seed(0)
    only_text = _kept(drop_modalities(_presence(1000, (True, False, False)), 0.9, ("text",)))
    assert only_text[:, 0].all()  # never all of an item's modalities


def test_an_absent_modality_stays_absent_and_an_item_with_one_keeps_it():
    torch.manual_seed(0)
    batch = _presence(1000, (True, False, False))
    out = _kept(drop_modalities(batch, 0.9))
    assert out[:, 0].all() and not out[:, 1:].any()


def test_zero_probability_and_single_modality_batches_are_untouched():
    batch = _presence(8)
    assert drop_modalities(batch, 0.0) is batch
    text_only = {"text_present": torch.ones(8, dtype=torch.bool)}
    assert drop_modalities(text_only, 0.9) is text_only


def test_the_draws_follow_the_global_seed():
    torch.manual_seed(3)
    first = _kept(drop_modalities(_presence(64), 0.5))
    torch.manual_seed(3)
    assert torch.equal(first, _kept(drop_modalities(_presence(64), 0.5)))


@pytest.mark.parametrize("value", [1.0, -0.1, float("nan")])
def test_a_probability_outside_zero_to_one_is_refused(value):
    with pytest.raises(ValueError, match="modality_dropout"):
        TrainConfig(modality_dropout=value)


@pytest.mark.parametrize("names", [("speech",), ()])
def test_modalities_outside_the_three_or_none_are_refused(names):
    with pytest.raises(ValueError, match="modality_dropout_on must be a non-empty subset of text,audio,video"):
        TrainConfig(modality_dropout_on=names)
