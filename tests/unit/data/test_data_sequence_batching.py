"""Per-batch dynamic padding, length bucketing and resume for token sequences."""

from __future__ import annotations

import torch

from tensorfab.data.sequence_batching import SequenceBatches

CPU = torch.device("cpu")
IDS = [[1] * n for n in (3, 7, 2, 5, 4, 6, 1, 8)]
TAGS = [[0] * len(x) for x in IDS]


def test_each_batch_is_padded_to_its_own_longest() -> None:
    b = SequenceBatches(IDS, TAGS, 3, device=CPU, shuffle=False)
    widths, seen = [], []
    for index, ids, mask, labels in b.epoch(0):
        widths.append(ids.shape[1])
        assert ids.shape == mask.shape == labels.shape
        assert int(mask.sum()) == sum(len(IDS[i]) for i in index.tolist())
        assert (labels[mask == 0] == -100).all()
        seen += index.tolist()
    assert widths == [7, 6, 8]  # [3,7,2], [5,4,6], [1,8]
    assert seen == list(range(8))


def test_bucketing_groups_similar_lengths_and_covers_all() -> None:
    b = SequenceBatches(IDS, TAGS, 2, device=CPU, shuffle=True, bucket=True, seed=3)
    padded = sum(ids.numel() for _, ids, _, _ in b.epoch(0))
    plain = SequenceBatches(IDS, TAGS, 2, device=CPU, shuffle=True, seed=3)
    assert padded == sum(len(x) for x in IDS) + 4  # sorted pairs: (8,7)(6,5)(4,3)(2,1)
    assert padded <= sum(ids.numel() for _, ids, _, _ in plain.epoch(0))
    assert sorted(i for idx, *_ in b.epoch(0) for i in idx.tolist()) == list(range(8))


def test_resume_skips_exactly_the_seen_batches() -> None:
    b = SequenceBatches(IDS, TAGS, 3, device=CPU, shuffle=True, bucket=True, seed=1)
    full = [idx.tolist() for idx, *_ in b.epoch(4)]
    assert [idx.tolist() for idx, *_ in b.epoch(4, start_batch=1)] == full[1:]


def test_sequence_level_labels() -> None:
    b = SequenceBatches(IDS, [0, 1, 0, 1, 0, 1, 0, 1], 4, device=CPU, shuffle=False)
    _, _, _, labels = next(b.epoch(0))
    assert labels.tolist() == [0, 1, 0, 1]


def test_packing_fills_rows_and_restarts_positions_per_sequence() -> None:
    ids = [[10 + i] * n for i, n in enumerate((3, 7, 2, 5))]
    tags = [[i] * len(x) for i, x in enumerate(ids)]
    b = SequenceBatches(ids, tags, 4, device=CPU, shuffle=False, pack_tokens=10)
    [(index, packed, segments, labels, positions)] = list(b.epoch(0))
    assert index.tolist() == [0, 1, 2, 3]
    # in order: 3 + 7 fill the first row; 2 + 5 the second (width 10, padded with 0)
    assert packed.tolist() == [[10] * 3 + [11] * 7, [12] * 2 + [13] * 5 + [0] * 3]
    assert segments.tolist() == [[1] * 3 + [2] * 7, [1] * 2 + [2] * 5 + [0] * 3]
    assert positions.tolist() == [[0, 1, 2, *range(7)], [0, 1, *range(5), 0, 0, 0]]
    assert labels.tolist() == [[0] * 3 + [1] * 7, [2] * 2 + [3] * 5 + [-100] * 3]


def test_a_sequence_longer_than_the_row_gets_a_row_of_its_own() -> None:
    b = SequenceBatches([[1] * 4, [2] * 9, [3] * 2], [[0] * 4, [0] * 9, [0] * 2], 3,
                        device=CPU, shuffle=False, pack_tokens=6)  # fmt: skip
    [(_, packed, segments, _, _)] = list(b.epoch(0))
    assert segments.tolist() == [[1] * 4 + [0] * 5, [1] * 9, [1] * 2 + [0] * 7]
    assert int((packed > 0).sum()) == 15


def _random_sequences(n: int, seed: int) -> tuple[list[list[int]], list[list[int]]]:
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, 30, (n,), generator=g).tolist()
    ids = [torch.randint(5, 30000, (k,), generator=g).tolist() for k in lengths]
    tags = [torch.randint(0, 9, (k,), generator=g).tolist() for k in lengths]
    return ids, tags


def _batches(b: SequenceBatches, epoch: int, start: int = 0) -> list[list[list]]:
    return [[t.tolist() for t in batch] for batch in b.epoch(epoch, start)]


def test_resident_batches_are_the_host_collated_batches() -> None:
    ids, tags = _random_sequences(103, seed=0)
    sentence_labels = [len(x) % 3 for x in ids]
    cases = [
        {"labels": tags, "shuffle": True, "bucket": True},
        {"labels": tags, "shuffle": True, "bucket": False, "rank": 1, "world_size": 2},
        {"labels": tags, "shuffle": False, "bucket": True},  # evaluation order
        {"labels": sentence_labels, "shuffle": True, "bucket": True},
    ]
    for case in cases:
        labels = case.pop("labels")
        host = SequenceBatches(ids, labels, 8, device=CPU, pad_id=3, seed=5, **case)
        resident = SequenceBatches(
            ids, labels, 8, device=CPU, pad_id=3, seed=5, resident=True, **case
        )
        assert resident.resident and not host.resident
        for epoch in (0, 1):
            assert _batches(resident, epoch) == _batches(host, epoch), case
        assert _batches(resident, 1, start=4) == _batches(host, 1)[4:]
        dtypes = {t.dtype for t in next(resident.epoch(0))}
        assert dtypes == {torch.long}


def test_packing_and_empty_splits_stay_on_the_host_path() -> None:
    ids, tags = _random_sequences(10, seed=1)
    packed = SequenceBatches(ids, tags, 4, device=CPU, shuffle=False, pack_tokens=64, resident=True)
    assert not packed.resident and len(next(packed.epoch(0))) == 5
    for bucket in (False, True):
        empty = SequenceBatches([], [], 4, device=CPU, shuffle=False, bucket=bucket, resident=True)
        assert not empty.resident and list(empty.epoch(0)) == [] and len(empty) == 0
