"""RandomIdentitySampler: P x K batches, sampling with replacement for small identities, determinism, DDP."""

from __future__ import annotations

from collections import Counter

import pytest
import torch

from training.data.sampler import RandomIdentitySampler

# 12 identities: several with fewer than K = 4 images (sampled with replacement), some with many.
PIDS = [pid for pid, n in enumerate([1, 2, 3, 4, 5, 6, 8, 9, 12, 2, 7, 4]) for _ in range(n)]


def batches(sampler: RandomIdentitySampler) -> list[list[int]]:
    indices = list(sampler)
    assert len(indices) == len(sampler) and len(indices) % sampler.batch_size == 0
    return [indices[i : i + sampler.batch_size] for i in range(0, len(indices), sampler.batch_size)]


@pytest.mark.parametrize(("batch_size", "k"), [(16, 4), (12, 2), (8, 8)])
def test_every_batch_is_p_identities_of_k_images(batch_size: int, k: int) -> None:
    sampler = RandomIdentitySampler(PIDS, batch_size, k, seed=3)
    got = batches(sampler)
    assert got
    for batch in got:
        counts = Counter(PIDS[i] for i in batch)
        assert len(counts) == batch_size // k and set(counts.values()) == {k}
    used = Counter(PIDS[i] for batch in got for i in batch)
    assert len(used) >= batch_size // k


def test_small_identities_are_sampled_with_replacement() -> None:
    sampler = RandomIdentitySampler(PIDS, 8, 4, seed=0)
    single = PIDS.index(0)  # identity 0 has one image
    for batch in batches(sampler):
        if any(PIDS[i] == 0 for i in batch):
            assert [i for i in batch if PIDS[i] == 0] == [single] * 4
            break
    else:
        pytest.fail("identity 0 never sampled")


def test_each_group_of_k_comes_from_distinct_images_when_there_are_enough() -> None:
    sampler = RandomIdentitySampler(PIDS, 8, 4)
    for batch in batches(sampler):
        for start in range(0, 8, 4):
            group = batch[start : start + 4]
            if PIDS.count(PIDS[group[0]]) >= 4:
                assert len(set(group)) == 4


def test_deterministic_per_seed_and_epoch() -> None:
    a, b = RandomIdentitySampler(PIDS, 16, 4, seed=1), RandomIdentitySampler(PIDS, 16, 4, seed=1)
    assert list(a) == list(b)
    first = list(a)
    a.set_epoch(1)
    assert list(a) != first
    b.set_epoch(1)
    assert list(a) == list(b)
    a.set_epoch(0)
    assert list(a) == first
    assert list(RandomIdentitySampler(PIDS, 16, 4, seed=2)) != first


def test_ddp_ranks_get_disjoint_equal_shares() -> None:
    full = batches(RandomIdentitySampler(PIDS, 8, 2, seed=5))
    ranks = [RandomIdentitySampler(PIDS, 8, 2, seed=5, num_replicas=2, rank=r) for r in range(2)]
    shares = [batches(s) for s in ranks]
    assert len(shares[0]) == len(shares[1]) == len(full) // 2
    assert shares[0] == full[0::2][: len(full) // 2] and shares[1] == full[1::2][: len(full) // 2]


def test_works_with_a_dataloader() -> None:
    sampler = RandomIdentitySampler(PIDS, 8, 4)
    loader = torch.utils.data.DataLoader(torch.tensor(PIDS), batch_size=8, sampler=sampler, drop_last=True)
    for batch in loader:
        assert sorted(Counter(batch.tolist()).values()) == [4, 4]


def test_bad_arguments_are_explained() -> None:
    with pytest.raises(ValueError, match="multiple of num_instances"):
        RandomIdentitySampler(PIDS, 10, 4)
    with pytest.raises(ValueError, match="12 identities cannot fill a batch of 16 identities"):
        RandomIdentitySampler(PIDS, 64, 4)
