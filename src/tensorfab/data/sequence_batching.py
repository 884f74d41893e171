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

With ``resident`` (unpacked batches) every sequence is padded to the longest once and put
on the device with its labels when the batches are made; each epoch then copies only its
order there, and each batch is gathered on the device. Building batches row by row on the
host and copying them from pageable memory every step would make the host wait for the
device each step, which is what limits a small model on a GPU. The batches are the same
tensors either way (tested).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from torch.utils.data import DistributedSampler

from tensorfab.data.batching import Batch, fits_on_device

BUCKET_WINDOW = 50  # batches per length-sorted window
# "auto" keeps sequences resident in host memory up to this size; on a GPU the device's
# own rule applies (a quarter of its memory, see data.batching.fits_on_device)
CPU_RESIDENT_BYTES = 1 << 30


def resident_bytes(input_ids: Sequence[Sequence[int]], per_token_labels: bool) -> int:
    """Bytes the resident store of these sequences takes: int32 ids (and labels) padded."""
    longest = max((len(x) for x in input_ids), default=0)
    return len(input_ids) * longest * 4 * (2 if per_token_labels else 1)


def sequences_fit(nbytes: int, device: torch.device) -> bool:
    """Whether ``resident: auto`` keeps a store of ``nbytes`` on ``device``."""
    if device.type == "cuda":
        return fits_on_device(nbytes, device)
    return nbytes <= CPU_RESIDENT_BYTES


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
        resident: bool = False,
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
        self.resident = resident and not pack_tokens and len(self.input_ids) > 0
        if self.resident:
            self._store = self._resident_store()

    def _resident_store(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Every sequence padded to the longest (int32), its length and labels, on the device."""
        n, longest = len(self.input_ids), int(self.lengths.max())
        ids = torch.full((n, longest), self.pad_id, dtype=torch.int32)
        per_token = isinstance(self.labels[0], (list, tuple))
        labels = (
            torch.full((n, longest), self.label_pad, dtype=torch.int32)
            if per_token
            else torch.tensor(list(self.labels), dtype=torch.long)
        )
        for i, seq in enumerate(self.input_ids):
            ids[i, : len(seq)] = torch.tensor(seq, dtype=torch.int32)
            if per_token:
                labels[i, : len(seq)] = torch.tensor(self.labels[i], dtype=torch.int32)
        return ids.to(self.device), self.lengths.to(self.device), labels.to(self.device)

    @property
    def num_samples(self) -> int:
        return self.sampler.num_samples

    def __len__(self) -> int:
        return -(-self.num_samples // self.batch_size)

    def _order(self, epoch: int) -> list[torch.Tensor]:
        self.sampler.set_epoch(epoch)
        order = torch.tensor(list(self.sampler), dtype=torch.long)
        batches = [b for b in order.split(self.batch_size) if len(b)]  # none for no data
        if not self.bucket:
            return batches
        window = self.batch_size * BUCKET_WINDOW
        out = []
        for chunk in order.split(window):
            ranked = chunk[torch.argsort(self.lengths[chunk], descending=True, stable=True)]
            out += [b for b in ranked.split(self.batch_size) if len(b)]
        if self.shuffle:  # batches of a window in a seeded random order, not longest first
            g = torch.Generator().manual_seed(self.sampler.seed + epoch)
            out = [out[i] for i in torch.randperm(len(out), generator=g).tolist()]
        return out

    def epoch(self, epoch: int, start_batch: int = 0) -> Iterator[Batch]:
        order = self._order(epoch)[start_batch:]
        if self.resident:
            yield from self._gathered(order)
            return
        for index in order:
            yield self._collate(index)

    def _gathered(self, order: list[torch.Tensor]) -> Iterator[Batch]:
        """The epoch's batches gathered on the device: one copy (the order) per epoch.

        Each batch's width (its longest sequence) is read from the host's lengths, so
        nothing in the loop waits for the device.
        """
        if not order:
            return
        ids, lengths, labels = self._store
        rows_all = torch.cat(order).to(self.device)
        positions = torch.arange(ids.shape[1], device=self.device)
        start = 0
        for index in order:
            rows = rows_all[start : start + len(index)]
            start += len(index)
            width = int(self.lengths[index].max())
            mask = (positions[:width] < lengths[rows, None]).long()
            batch_labels = labels[rows, :width].long() if labels.dim() == 2 else labels[rows]
            yield rows, ids[rows, :width].long(), mask, batch_labels

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
