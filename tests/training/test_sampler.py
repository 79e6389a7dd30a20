from collections import Counter

import pytest

from mmsent.training.distributed import DistInfo
from mmsent.training.sampler import ResumableSampler, group_by_length

ONE_PROCESS = DistInfo(rank=0, local_rank=0, world_size=1)


def _lengths(count: int) -> list[int]:
    return [(i * 37) % 90 + 2 for i in range(count)]  # 2..91 word pieces, scattered like MELD's


def test_grouping_keeps_every_item_once_and_batches_of_one_length():
    lengths = _lengths(1000)
    order = group_by_length(list(range(1000)), lengths, batch_size=16, seed=3)
    assert sorted(order) == list(range(1000))
    batches = [order[i : i + 16] for i in range(0, 1000, 16)]
    padded = sum(max(lengths[i] for i in b) * len(b) for b in batches)
    random_padded = sum(max(lengths[i] for i in range(j, j + 16) if i < 1000) * 16 for j in range(0, 1000, 16))
    assert padded < 0.6 * random_padded  # far less padding than batches in random order
    assert max(lengths[i] for i in batches[0]) == max(lengths)  # the widest batch first: out of memory shows at once
    assert len(batches[-1]) == 1000 % 16  # the one short batch is last, so no other batch straddles two


def test_grouping_is_seeded_and_differs_from_epoch_to_epoch():
    lengths = _lengths(2000)
    a, b = (group_by_length(list(range(2000)), lengths, 8, seed) for seed in (1, 1))
    assert a == b and a != group_by_length(list(range(2000)), lengths, 8, 2)


def test_grouped_sampler_resumes_mid_epoch_and_splits_among_ranks():
    lengths = _lengths(500)
    sampler = ResumableSampler(range(500), ONE_PROCESS, shuffle=True, seed=5, lengths=lengths, batch_size=10)
    sampler.set_epoch(2)
    whole = list(sampler)
    sampler.set_epoch(2, skip=120)
    assert list(sampler) == whole[120:] and len(sampler) == 380
    ranks = [ResumableSampler(range(500), DistInfo(rank=r, local_rank=r, world_size=2), shuffle=True, seed=5, lengths=lengths,
                              batch_size=10) for r in range(2)]  # fmt: skip
    shares = [list(s) for s in ranks]
    assert Counter(shares[0] + shares[1]) == Counter(range(500))


def test_lengths_must_match_the_items():
    with pytest.raises(ValueError, match="3 lengths for 4 items"):
        ResumableSampler(range(4), ONE_PROCESS, shuffle=True, lengths=[1, 2, 3])
