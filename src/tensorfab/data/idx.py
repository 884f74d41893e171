"""The IDX format of MNIST and Fashion-MNIST: read files (raw or gzip) into tensors.

An IDX file is a 4-byte magic (0x00 0x00 dtype-code ndim), ndim big-endian int32
dimensions, then the values, big-endian, row-major.
"""

from __future__ import annotations

import gzip
import math
import zlib
from pathlib import Path

import numpy as np
import torch

from tensorfab.data.files import read_file_bytes
from tensorfab.data.registry import DATASETS
from tensorfab.data.splits import limit_splits
from tensorfab.data.types import ImageData, ImageSplits
from tensorfab.errors import TensorfabError

# IDX dtype code -> big-endian numpy dtype
IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_EXPECTED_MAGIC = "expected 0x00000803 for images or 0x00000801 for labels"
_GZIP_MAGIC = b"\x1f\x8b"

# the four files of an MNIST-style folder: role -> file stem
MNIST_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
MNIST_SOURCE = {
    "name": "MNIST",
    "licence": "no explicit licence on the original site; commonly listed as CC BY-SA 3.0",
    "citation": (
        "Y. LeCun, L. Bottou, Y. Bengio, P. Haffner, 'Gradient-based learning applied to "
        "document recognition', Proceedings of the IEEE 86(11):2278-2324, 1998"
    ),
}


def read_idx(path: str | Path) -> np.ndarray:
    """Read one IDX file (gzip-compressed or raw) into a native-endian numpy array."""
    data = _read_bytes(Path(path))
    dtype, dims, offset = _parse_header(path, data)
    expected = math.prod(dims) * dtype.itemsize
    found = len(data) - offset
    if found != expected:
        problem = "truncated IDX file" if found < expected else "IDX file longer than its header"
        raise TensorfabError(
            f"{path}: {problem}: header says {_describe(dims, dtype)} = {expected} bytes "
            f"of data, found {found}"
        )
    values = np.frombuffer(data, dtype=dtype, offset=offset).reshape(dims)
    return values.astype(dtype.newbyteorder("="))  # a writable native copy


def _read_bytes(path: Path) -> bytes:
    """The file's bytes, decompressed when they start with the gzip magic."""
    data = read_file_bytes(path)
    if not data.startswith(_GZIP_MAGIC):
        return data
    try:
        return gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as exc:
        raise TensorfabError(f"{path}: corrupt gzip file ({exc})") from None


def _parse_header(path: str | Path, data: bytes) -> tuple[np.dtype, tuple[int, ...], int]:
    """(dtype, dims, offset of the first value) from an IDX header."""
    if len(data) < 4:
        raise TensorfabError(f"{path}: not an IDX file ({len(data)} bytes); {_EXPECTED_MAGIC}")
    code, ndim = data[2], data[3]
    if data[:2] != b"\x00\x00" or code not in IDX_DTYPES or ndim == 0:
        magic = int.from_bytes(data[:4], "big")
        raise TensorfabError(f"{path}: not an IDX file (magic 0x{magic:08x}); {_EXPECTED_MAGIC}")
    offset = 4 + 4 * ndim
    if len(data) < offset:
        raise TensorfabError(
            f"{path}: truncated IDX file: header of {ndim} dimensions needs {offset} bytes, "
            f"found {len(data)}"
        )
    dims = tuple(int(d) for d in np.frombuffer(data, dtype=">i4", count=ndim, offset=4))
    return IDX_DTYPES[code], dims, offset


def _describe(dims: tuple[int, ...], dtype: np.dtype) -> str:
    shape = "x".join(str(d) for d in dims)
    return shape if dtype.itemsize == 1 else f"{shape} x {dtype.itemsize}-byte {dtype.name}"


def read_idx_images(path: str | Path) -> torch.Tensor:
    """An IDX images file as uint8 [N, 1, H, W] (labels not needed, e.g. for predict)."""
    values = read_idx(path)
    if values.dtype != np.uint8 or values.ndim != 3:
        raise TensorfabError(
            f"{path}: expected IDX images (uint8, N x H x W, magic 0x00000803), found "
            f"{values.dtype} {'x'.join(map(str, values.shape))}"
        )
    return torch.from_numpy(values).unsqueeze(1)


def read_idx_labels(path: str | Path) -> torch.Tensor:
    """An IDX labels file as int64 [N]."""
    values = read_idx(path)
    if values.dtype.kind not in "iu" or values.ndim != 1:
        raise TensorfabError(
            f"{path}: expected IDX labels (integers, one dimension, magic 0x00000801), found "
            f"{values.dtype} {'x'.join(map(str, values.shape))}"
        )
    labels = torch.from_numpy(values.astype(np.int64))
    if len(labels) and int(labels.min()) < 0:
        raise TensorfabError(f"{path}: negative label {int(labels.min())}")
    return labels


def labels_path_for(images_path: str | Path) -> Path:
    """The labels file beside an images file: 'images' -> 'labels', 'idx3' -> 'idx1'."""
    images_path = Path(images_path)
    name = images_path.name.replace("images", "labels").replace("idx3", "idx1")
    if name == images_path.name:
        raise TensorfabError(
            f"{images_path}: cannot tell the labels file from this name (expected 'images' or "
            "'idx3' in it); give the labels file explicitly"
        )
    return images_path.with_name(name)


def load_idx_pair(images_path: str | Path, labels_path: str | Path | None = None) -> ImageData:
    """An IDX images file and its labels file (derived from the images name when not given)."""
    labels_path = labels_path_for(images_path) if labels_path is None else labels_path
    images = read_idx_images(images_path)
    labels = read_idx_labels(labels_path)
    if len(images) != len(labels):
        raise TensorfabError(
            f"{images_path}: {len(images)} images but {labels_path} has {len(labels)} labels"
        )
    return ImageData(images, labels)


def find_mnist_files(
    folder: str | Path, roles: tuple[str, ...] = tuple(MNIST_FILES)
) -> dict[str, Path]:
    """The MNIST files of ``roles`` in ``folder`` (``.gz`` or raw, dashed or dotted names)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise TensorfabError(f"{folder}: folder not found (expected MNIST IDX files in it)")
    found = {r: p for r in roles if (p := _find_file(folder, MNIST_FILES[r])) is not None}
    if len(found) < len(roles):
        missing = ", ".join(f"{MNIST_FILES[r]}[.gz]" for r in roles if r not in found)
        expected = ", ".join(f"{MNIST_FILES[r]}[.gz]" for r in roles)
        raise TensorfabError(f"{folder}: missing {missing}; expected {expected} in that folder")
    return found


def _find_file(folder: Path, stem: str) -> Path | None:
    dotted = stem.replace("-idx", ".idx")  # the original site's names: train-images.idx3-ubyte
    for name in (stem, f"{stem}.gz", dotted, f"{dotted}.gz"):
        if (folder / name).is_file():
            return folder / name
    return None


def load_idx_eval(
    path: str | Path, labels_path: str | Path | None = None
) -> tuple[ImageData, list[str] | None]:
    """A user's IDX test data: an images file (labels beside it) or a folder's t10k files.

    IDX files carry label numbers only, so no class names come back.
    """
    if Path(path).is_dir():
        files = find_mnist_files(path, ("test_images", "test_labels"))
        return load_idx_pair(files["test_images"], files["test_labels"]), None
    return load_idx_pair(path, labels_path), None


@DATASETS.register("idx", eval_loader=load_idx_eval)
def build_idx(
    *, path: str, limit_train: int | None = None, limit_test: int | None = None
) -> ImageSplits:
    """MNIST-style train and t10k IDX files in one folder; the split is the given one."""
    files = find_mnist_files(path)
    train = load_idx_pair(files["train_images"], files["train_labels"])
    test = load_idx_pair(files["test_images"], files["test_labels"])
    _check_same_size(files["test_images"], train, test)
    top = max((int(part.labels.max()) for part in (train, test) if len(part)), default=9)
    splits = ImageSplits(
        train=train,
        test=test,
        classes=[str(i) for i in range(max(10, top + 1))],
        source={**MNIST_SOURCE, "path": str(path)},
        split={"method": "given"},
    )
    return limit_splits(splits, limit_train, limit_test)


def _check_same_size(test_path: Path, train: ImageData, test: ImageData) -> None:
    if train.image_shape != test.image_shape:
        raise TensorfabError(
            f"{test_path}: test images are {test.image_shape[1]}x{test.image_shape[2]}, "
            f"train images {train.image_shape[1]}x{train.image_shape[2]}"
        )
