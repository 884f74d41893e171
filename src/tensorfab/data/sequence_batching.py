"""Batches of variable-length token sequences, padded per batch (never to a fixed 128/512).

The epoch order comes from ``DistributedSampler`` exactly as for fixed-size tensors, so
DDP sharding and exact resume work the same way. With ``bucket`` the order is then grouped
into windows of 50 batches sorted by length, so each batch holds sequences of similar
length and little padding is computed; the windows keep the shuffle's randomness.

With ``pack_tokens`` (per-token labels only) a batch's sequences are packed one after the
other into rows of at most ``pack_tokens`` tokens: the batch is then
``(index, input_ids, segments, labels, position_ids)``, where ``segments`` numbers each
row's sequences 1, 2, ... (0 is padding) so attention can be kept within a sequence, and
``position_ids`` restart at 0 for each. The batch holds the same sequences, so the loss,
the step count and the learning-rate schedule are those of the unpacked run.
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
        pack_tokens: int | None = None,
    ) -> None:
        self.input_ids = [list(x) for x in input_ids]
        self.pack_tokens = pack_tokens
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
        if self.pack_tokens:
            return self._collate_packed(index)
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

    def _pack(self, rows: list[int]) -> list[list[int]]:
        """Sequences in batch order, each row filled while it stays within ``pack_tokens``."""
        packs: list[list[int]] = [[]]
        used = 0
        for r in rows:
            n = len(self.input_ids[r])
            if packs[-1] and used + n > (self.pack_tokens or 0):
                packs.append([])
                used = 0
            packs[-1].append(r)
            used += n
        return packs

    def _collate_packed(self, index: torch.Tensor) -> Batch:
        packs = self._pack(index.tolist())
        width = max(sum(len(self.input_ids[r]) for r in pack) for pack in packs)
        shape = (len(packs), width)
        ids = torch.full(shape, self.pad_id, dtype=torch.long)
        segments = torch.zeros(shape, dtype=torch.long)
        positions = torch.zeros(shape, dtype=torch.long)
        labels = torch.full(shape, self.label_pad, dtype=torch.long)
        for i, pack in enumerate(packs):
            start = 0
            for k, r in enumerate(pack, start=1):
                n = len(self.input_ids[r])
                ids[i, start : start + n] = torch.tensor(self.input_ids[r])
                labels[i, start : start + n] = torch.tensor(self.labels[r])
                segments[i, start : start + n] = k
                positions[i, start : start + n] = torch.arange(n)
                start += n
        move = {"device": self.device, "non_blocking": True}
        tensors = (index, ids, segments, labels, positions)
        return tuple(t.to(**move) for t in tensors)
