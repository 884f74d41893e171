"""Batches of variable-length token sequences, padded per batch (never to a fixed 128/512).

The epoch order comes from ``DistributedSampler`` exactly as for fixed-size tensors, so
DDP sharding and exact resume work the same way. With ``bucket`` the order is then grouped
into windows of 50 batches sorted by length, so each batch holds sequences of similar
length and little padding is computed; the windows keep the shuffle's randomness.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from torch.utils.data import DistributedSampler

from tensorfab.data.batching import Batch

BUCKET_WINDOW = 50  # batches per length-sorted window


class SequenceBatches:
    """Yields ``(index, input_ids, attention_mask, labels)`` per batch, on the device.

    ``labels`` are per token (padded with ``label_pad``) when each example's labels are a
    list, or one per sequence otherwise. ``index`` says which examples the batch holds.
    """

    def __init__(
        self,
        input_ids: Sequence[Sequence[int]],
        labels: Sequence[Sequence[int]] | Sequence[int],
        batch_size: int,
        *,
        device: torch.device,
        shuffle: bool,
        pad_id: int = 0,
        label_pad: int = -100,
        seed: int = 0,
        bucket: bool = False,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        self.input_ids = [list(x) for x in input_ids]
        self.labels = labels
        self.lengths = torch.tensor([len(x) for x in self.input_ids])
        self.batch_size, self.device = batch_size, device
        self.pad_id, self.label_pad, self.bucket = pad_id, label_pad, bucket
        self.shuffle = shuffle
        self.sampler = DistributedSampler(
            range(len(self.input_ids)),
            num_replicas=world_size,
            rank=rank,
            shuffle=shuffle,
            seed=seed,
        )

    @property
    def num_samples(self) -> int:
        return self.sampler.num_samples

    def __len__(self) -> int:
        return -(-self.num_samples // self.batch_size)

    def _order(self, epoch: int) -> list[torch.Tensor]:
        self.sampler.set_epoch(epoch)
        order = torch.tensor(list(self.sampler), dtype=torch.long)
        batches = list(order.split(self.batch_size))
        if not self.bucket:
            return batches
        window = self.batch_size * BUCKET_WINDOW
        out = []
        for chunk in order.split(window):
            ranked = chunk[torch.argsort(self.lengths[chunk], descending=True, stable=True)]
            out += list(ranked.split(self.batch_size))
        if self.shuffle:  # batches of a window in a seeded random order, not longest first
            g = torch.Generator().manual_seed(self.sampler.seed + epoch)
            out = [out[i] for i in torch.randperm(len(out), generator=g).tolist()]
        return out

    def epoch(self, epoch: int, start_batch: int = 0) -> Iterator[Batch]:
        for index in self._order(epoch)[start_batch:]:
            yield self._collate(index)

    def _collate(self, index: torch.Tensor) -> Batch:
        rows = index.tolist()
        width = int(self.lengths[index].max())
        ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        per_token = isinstance(self.labels[rows[0]], (list, tuple))
        labels = (
            torch.full((len(rows), width), self.label_pad, dtype=torch.long)
            if per_token
            else torch.tensor([self.labels[r] for r in rows])
        )
        for i, r in enumerate(rows):
            n = len(self.input_ids[r])
            ids[i, :n] = torch.tensor(self.input_ids[r])
            mask[i, :n] = 1
            if per_token:
                labels[i, :n] = torch.tensor(self.labels[r])
        move = {"device": self.device, "non_blocking": True}
        return index.to(**move), ids.to(**move), mask.to(**move), labels.to(**move)
