"""Length-bucketed dynamic batching: batches bounded by a sample count and a token (frame) count.

Items are sorted by length inside shuffled buckets so a batch wastes little padding; batch order
is shuffled per epoch; everything derives from (seed, epoch), so every worker and every GPU
(rank r of world w takes every w-th batch) sees the same plan and a resumed run replays it.
"""
from __future__ import annotations

import random
from collections.abc import Sequence

from codectts.errors import ConfigError, DataError


class DynamicBatchSampler:
    def __init__(self, lengths: Sequence[int], max_samples: int = 16, max_tokens: int = 5000, seed: int = 0,
                 shuffle: bool = True, bucket_size: int = 200, rank: int = 0, world_size: int = 1,
                 drop_overlong: bool = True):
        if max_samples < 1 or max_tokens < 1:
            raise ConfigError("max_samples and max_tokens must be positive")
        if not 0 <= rank < world_size:
            raise ConfigError(f"rank {rank} outside world of {world_size}")
        self.lengths = [int(n) for n in lengths]
        self.max_samples, self.max_tokens = max_samples, max_tokens
        self.seed, self.shuffle, self.bucket_size = seed, shuffle, bucket_size
        self.rank, self.world_size = rank, world_size
        self.overlong = [i for i, n in enumerate(self.lengths) if n > max_tokens]
        if self.overlong and not drop_overlong:
            raise DataError(f"{len(self.overlong)} item(s) longer than max_tokens={max_tokens}")

    def batches(self, epoch: int) -> list[list[int]]:
        rng = random.Random(f"{self.seed}:{epoch}")
        idx = [i for i, n in enumerate(self.lengths) if n <= self.max_tokens]
        if self.shuffle:
            rng.shuffle(idx)
        out: list[list[int]] = []
        for start in range(0, len(idx), self.bucket_size):
            bucket = sorted(idx[start:start + self.bucket_size], key=lambda i: self.lengths[i])
            cur: list[int] = []
            longest = 0
            for i in bucket:
                n = self.lengths[i]
                # padded cost of the batch if i joins: (count) * (longest item)
                if cur and (len(cur) + 1 > self.max_samples or (len(cur) + 1) * max(longest, n) > self.max_tokens):
                    out.append(cur)
                    cur, longest = [], 0
                cur.append(i)
                longest = max(longest, n)
            if cur:
                out.append(cur)
        if self.shuffle:
            rng.shuffle(out)
        if self.world_size > 1:  # equal number of batches per rank
            usable = len(out) - len(out) % self.world_size
            out = out[self.rank:usable:self.world_size]
        return out
