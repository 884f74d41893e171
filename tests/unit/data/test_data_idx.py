"""IDX reading: round trips (raw and gzip), every malformed-file error, the MNIST folder."""

from __future__ import annotations

import gzip
import re
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from tensorfab.data import (
    create_dataset,
    labels_path_for,
    load_eval_data,
    load_idx_pair,
    read_idx,
    read_idx_images,
    read_idx_labels,
)
from tensorfab.errors import TensorfabError

CODES = {np.dtype("uint8"): 0x08, np.dtype("int16"): 0x0B, np.dtype("float32"): 0x0D}


def idx_bytes(values: np.ndarray) -> bytes:
    header = bytes([0, 0, CODES[values.dtype], values.ndim])
    dims = struct.pack(f">{values.ndim}i", *values.shape)
    return header + dims + values.astype(values.dtype.newbyteorder(">")).tobytes()


def write_idx(path: Path, values: np.ndarray) -> Path:
    data = idx_bytes(values)
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)
    return path


def tiny_images(n: int, seed: int = 0, size: int = 28) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, size, size), dtype=np.uint8)


def write_mnist(folder: Path, n_train: int = 12, n_test: int = 5, gz: bool = True) -> Path:
    folder.mkdir(exist_ok=True)
    ext = ".gz" if gz else ""
    for stem, n in (("train", n_train), ("t10k", n_test)):
        write_idx(folder / f"{stem}-images-idx3-ubyte{ext}", tiny_images(n))
        write_idx(folder / f"{stem}-labels-idx1-ubyte{ext}", np.arange(n, dtype=np.uint8) % 10)
    return folder


@pytest.mark.parametrize("name", ["x-images-idx3-ubyte", "x-images-idx3-ubyte.gz"])
def test_round_trip_images(tmp_path: Path, name: str) -> None:
    values = tiny_images(3, size=5)
    path = write_idx(tmp_path / name, values)
    np.testing.assert_array_equal(read_idx(path), values)
    images = read_idx_images(path)
    assert images.dtype == torch.uint8 and images.shape == (3, 1, 5, 5)
    assert torch.equal(images[:, 0], torch.from_numpy(values))


def test_round_trip_other_dtypes(tmp_path: Path) -> None:
    for values in (np.array([[-3, 700], [5, 0]], np.int16), np.array([1.5, -2.0], np.float32)):
        path = write_idx(tmp_path / f"v-{values.dtype}", values)
        out = read_idx(path)
        assert out.dtype == values.dtype and out.dtype.isnative
        np.testing.assert_array_equal(out, values)


def test_round_trip_labels(tmp_path: Path) -> None:
    path = write_idx(tmp_path / "l-labels-idx1-ubyte.gz", np.array([3, 1, 4], np.uint8))
    labels = read_idx_labels(path)
    assert labels.dtype == torch.int64 and labels.tolist() == [3, 1, 4]


def test_truncated_file(tmp_path: Path) -> None:
    data = idx_bytes(tiny_images(3, size=4))
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(data[:-8]))
    with pytest.raises(TensorfabError) as info:
        read_idx(path)
    assert str(info.value) == (
        f"{path}: truncated IDX file: header says 3x4x4 = 48 bytes of data, found 40"
    )


def test_truncated_header(tmp_path: Path) -> None:
    path = tmp_path / "short"
    path.write_bytes(bytes([0, 0, 8, 3, 0, 0]))
    with pytest.raises(TensorfabError, match=r"short: truncated IDX file: header of 3 dim"):
        read_idx(path)


def test_too_long_file(tmp_path: Path) -> None:
    path = tmp_path / "long"
    path.write_bytes(idx_bytes(np.zeros((2, 2, 2), np.uint8)) + b"xx")
    with pytest.raises(TensorfabError, match=r"long: IDX file longer than its header: .*found 10"):
        read_idx(path)


def test_wrong_magic(tmp_path: Path) -> None:
    # a gzip inside a gzip: after one decompression the bytes start with the gzip magic
    inner = gzip.compress(b"not idx", mtime=0)
    path = tmp_path / "x.gz"
    path.write_bytes(gzip.compress(inner))
    with pytest.raises(TensorfabError) as info:
        read_idx(path)
    magic = int.from_bytes(inner[:4], "big")
    assert str(info.value) == (
        f"{path}: not an IDX file (magic 0x{magic:08x}); "
        "expected 0x00000803 for images or 0x00000801 for labels"
    )


def test_unknown_dtype_code(tmp_path: Path) -> None:
    path = tmp_path / "odd"
    path.write_bytes(bytes([0, 0, 0x07, 1, 0, 0, 0, 0]))
    with pytest.raises(TensorfabError, match=r"odd: not an IDX file \(magic 0x00000701\)"):
        read_idx(path)


def test_corrupt_gzip(tmp_path: Path) -> None:
    data = gzip.compress(idx_bytes(tiny_images(2)))
    path = tmp_path / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(data[:20] + b"\xff" * 40 + data[60:])
    with pytest.raises(TensorfabError, match=rf"^{re.escape(str(path))}: corrupt gzip file"):
        read_idx(path)


def test_cut_gzip(tmp_path: Path) -> None:
    path = tmp_path / "cut.gz"
    path.write_bytes(gzip.compress(idx_bytes(tiny_images(2)))[:30])
    with pytest.raises(TensorfabError, match=rf"^{re.escape(str(path))}: corrupt gzip file"):
        read_idx(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(
        TensorfabError, match=rf"^{re.escape(str(tmp_path / 'nope'))}: file not found$"
    ):
        read_idx(tmp_path / "nope")


def test_labels_file_given_as_images(tmp_path: Path) -> None:
    path = write_idx(tmp_path / "l", np.array([1, 2], np.uint8))
    with pytest.raises(TensorfabError, match=r"l: expected IDX images .* found uint8 2$"):
        read_idx_images(path)


def test_count_mismatch(tmp_path: Path) -> None:
    images = write_idx(tmp_path / "a-images-idx3-ubyte", tiny_images(3))
    labels = write_idx(tmp_path / "a-labels-idx1-ubyte", np.zeros(2, np.uint8))
    with pytest.raises(TensorfabError) as info:
        load_idx_pair(images)
    assert str(info.value) == f"{images}: 3 images but {labels} has 2 labels"


def test_labels_path_derived_from_name(tmp_path: Path) -> None:
    assert labels_path_for("/d/images/t10k-images-idx3-ubyte.gz") == Path(
        "/d/images/t10k-labels-idx1-ubyte.gz"
    )
    with pytest.raises(TensorfabError, match=r"cannot tell the labels file"):
        labels_path_for(tmp_path / "digits.bin")


def test_idx_dataset_folder(tmp_path: Path) -> None:
    folder = write_mnist(tmp_path / "mnist", gz=False)
    splits = create_dataset("idx", path=str(folder), test_fraction=0.5, image_size=None)
    assert (len(splits.train), len(splits.test)) == (12, 5)
    assert splits.train.images.shape == (12, 1, 28, 28)
    assert splits.classes == [str(i) for i in range(10)]
    assert splits.split["method"] == "given"
    assert splits.source["name"] == "MNIST" and "CC BY-SA 3.0" in splits.source["licence"]
    assert splits.source["path"] == str(folder)


def test_idx_dataset_dotted_names_and_limits(tmp_path: Path) -> None:
    folder = write_mnist(tmp_path / "mnist")
    (folder / "train-images-idx3-ubyte.gz").rename(folder / "train-images.idx3-ubyte.gz")
    splits = create_dataset("idx", path=str(folder), limit_train=4, limit_test=2)
    assert (len(splits.train), len(splits.test)) == (4, 2)
    assert splits.train.labels.tolist() == [0, 1, 2, 3]
    assert splits.split == {
        "method": "given",
        "limit_train": 4,
        "limit_test": 2,
        "train_size": 4,
        "test_size": 2,
        "train_full_size": 12,  # a report says "4 of 12"
        "test_full_size": 5,
    }


def test_idx_dataset_missing_files(tmp_path: Path) -> None:
    folder = write_mnist(tmp_path / "mnist")
    (folder / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(TensorfabError) as info:
        create_dataset("idx", path=str(folder))
    message = str(info.value)
    assert message.startswith(f"{folder}: missing t10k-labels-idx1-ubyte[.gz]; expected ")
    assert "train-images-idx3-ubyte[.gz], train-labels-idx1-ubyte[.gz]" in message


def test_idx_dataset_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(TensorfabError, match=r"nowhere: folder not found"):
        create_dataset("idx", path=str(tmp_path / "nowhere"))


def test_eval_data_from_file_and_folder(tmp_path: Path) -> None:
    folder = write_mnist(tmp_path / "mnist", n_test=7)
    data, classes = load_eval_data("idx", str(folder / "t10k-images-idx3-ubyte.gz"))
    assert len(data) == 7 and classes is None
    data, classes = load_eval_data("idx", str(folder), image_size=28)
    assert len(data) == 7 and classes is None
