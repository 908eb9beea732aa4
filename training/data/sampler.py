"""P x K identity sampling for the metric losses (triplet, centroid triplet, center, island).

Each batch holds P = batch_size // K identities with K images each, so every anchor has positives and its
identity a centroid in the batch. Same rule as torchreid's `RandomIdentitySampler`: an identity with fewer
than K images is sampled with replacement; one with n >= K images gives n // K groups of K per epoch.
Written here rather than imported because torchreid is not a dependency and we need `set_epoch` and
DDP sharding (each rank takes every world_size-th whole batch).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Sequence

import numpy as np
from torch.utils.data import Sampler


class RandomIdentitySampler(Sampler[int]):
    """Yields dataset indices; consecutive runs of `batch_size` indices form one P x K batch."""

    def __init__(
        self,
        pids: Sequence[int],
        batch_size: int,
        num_instances: int,
        seed: int = 0,
        num_replicas: int = 1,
        rank: int = 0,
    ) -> None:
        if num_instances < 1 or batch_size < num_instances or batch_size % num_instances:
            raise ValueError(
                f"batch_size ({batch_size}) must be a positive multiple of num_instances ({num_instances})"
            )
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank {rank} outside 0..{num_replicas - 1}")
        self.batch_size, self.num_instances = batch_size, num_instances
        self.num_pids_per_batch = batch_size // num_instances
        self.seed, self.epoch = seed, 0
        self.num_replicas, self.rank = num_replicas, rank
        self.index_dic: dict[int, list[int]] = defaultdict(list)
        for index, pid in enumerate(pids):
            self.index_dic[int(pid)].append(index)
        self.pids = sorted(self.index_dic)
        if len(self.pids) < self.num_pids_per_batch:
            raise ValueError(
                f"{len(self.pids)} identities cannot fill a batch of {self.num_pids_per_batch} identities x "
                f"{num_instances} images; lower batch_size or num_instances"
            )
        self._cache: tuple[int, list[int]] | None = None

    def set_epoch(self, epoch: int) -> None:
        """Reshuffle deterministically: the order depends only on (seed, epoch)."""
        self.epoch = epoch

    def _batches(self) -> list[list[int]]:
        rng = np.random.default_rng([self.seed, self.epoch])
        k = self.num_instances
        groups: dict[int, list[list[int]]] = {}
        for pid in self.pids:
            idxs = self.index_dic[pid]
            if len(idxs) < k:
                chosen = rng.choice(idxs, size=k, replace=True).tolist()
            else:
                chosen = rng.permutation(idxs).tolist()
            groups[pid] = [chosen[i : i + k] for i in range(0, len(chosen) - k + 1, k)]
        available = list(self.pids)
        batches: list[list[int]] = []
        while len(available) >= self.num_pids_per_batch:
            picked = rng.choice(len(available), size=self.num_pids_per_batch, replace=False)
            batch: list[int] = []
            for pid in (available[i] for i in picked):
                batch.extend(groups[pid].pop())
            batches.append(batch)
            available = [pid for pid in available if groups[pid]]
        return batches

    def _indices(self) -> list[int]:
        if self._cache is None or self._cache[0] != self.epoch:
            batches = self._batches()
            # Equal batch counts on every rank, or DDP ranks wait on each other at the end of the epoch.
            mine = batches[self.rank :: self.num_replicas][: len(batches) // self.num_replicas]
            self._cache = (self.epoch, [i for batch in mine for i in batch])
        return self._cache[1]

    def __iter__(self) -> Iterator[int]:
        return iter(self._indices())

    def __len__(self) -> int:
        return len(self._indices())
