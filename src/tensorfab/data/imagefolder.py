"""Image folders (root/<class>/<image>): read them with Pillow into uint8 tensors."""

from __future__ import annotations

import io
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

import numpy as np
import torch

from tensorfab.data.registry import DATASETS
from tensorfab.data.splits import limit_splits, stratified_split
from tensorfab.data.types import ImageData, ImageSplits
from tensorfab.errors import TensorfabError

if TYPE_CHECKING:
    from PIL import Image

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")
GRAY_MODES = ("1", "L", "LA", "I", "I;16", "F")
USER_LICENCE = "unknown (user data)"


def class_folders(root: str | Path) -> list[Path]:
    """The class sub-folders of ``root``, sorted by name (hidden folders skipped)."""
    root = Path(root)
    if not root.is_dir():
        raise TensorfabError(f"{root}: folder not found")
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders:
        raise TensorfabError(f"{root}: no class folders found; expected {root}/<class>/<image>.png")
    return folders


def image_files(folder: Path) -> list[Path]:
    """The image files directly in one class folder, sorted by name."""
    files = sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")
    )
    if not files:
        suffixes = ", ".join(s.lstrip(".") for s in IMAGE_SUFFIXES)
        raise TensorfabError(f"{folder}: class folder has no images ({suffixes})")
    return files


def open_image(
    path: Path | BinaryIO, where: str | None = None, max_pixels: int | None = None
) -> Image.Image:
    """Decode an image file (a path or an open binary stream); ``where`` names it in errors.

    The one image decoder. With ``max_pixels``, an image whose header declares more pixels
    is refused before any pixel is decoded (a decompression bomb: a 20 KB PNG can declare
    13000x13000); without it, Pillow's own limit applies.
    """
    from PIL import Image

    try:
        with warnings.catch_warnings():
            if max_pixels is not None:  # ours is the check; Pillow's warning would repeat it
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                _check_pixels(image.size, max_pixels, where or str(path))
                image.load()
                return image.copy()
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise TensorfabError(f"{where or path}: unreadable image ({exc})") from None


def _check_pixels(size: tuple[int, int], max_pixels: int | None, where: str) -> None:
    """Refuse an image whose declared width x height exceeds ``max_pixels``."""
    width, height = size
    if max_pixels is not None and width * height > max_pixels:
        raise TensorfabError(
            f"{where}: image is {width}x{height} = {width * height:,} pixels, over the limit "
            f"of {max_pixels:,} pixels; refused before decoding (a decompression bomb?)"
        )


def _pick_channels(images: list[Image.Image], channels: int | None) -> int:
    """The requested channels, else 1 when every image is grayscale, else 3."""
    if channels is not None:
        return channels
    return 1 if all(im.mode in GRAY_MODES for im in images) else 3


def _pick_size(
    images: list[Image.Image], files: list[Path], image_size: int | None
) -> tuple[int, int]:
    """(width, height) to resize to: the requested square, else the one size all share."""
    if image_size is not None:
        return image_size, image_size
    first = images[0].size
    for image, file in zip(images, files, strict=True):
        if image.size != first:
            raise TensorfabError(
                f"{file}: image is {image.size[0]}x{image.size[1]} but {files[0]} is "
                f"{first[0]}x{first[1]}; set data.image_size to resize them all"
            )
    return first


def to_array(image: Image.Image, channels: int, size: tuple[int, int]) -> np.ndarray:
    """One image as uint8 [C, H, W]: grey (1 channel) or RGB (3), resized to (w, h)."""
    from PIL import Image

    image = image.convert("L" if channels == 1 else "RGB")
    if image.size != size:
        image = image.resize(size, Image.Resampling.BILINEAR)
    array = np.asarray(image, dtype=np.uint8)
    return array[None] if channels == 1 else array.transpose(2, 0, 1)


def _read_folder(
    root: str | Path, image_size: int | None, channels: int | None, size: tuple[int, int] | None
) -> tuple[ImageData, list[str], tuple[int, int]]:
    """Every image under ``root`` with its class; ``size`` (w, h) forces the size."""
    files, labels = [], []
    folders = class_folders(root)
    for label, folder in enumerate(folders):
        found = image_files(folder)
        files += found
        labels += [label] * len(found)
    images = [open_image(f) for f in files]
    channels = _pick_channels(images, channels)
    size = size or _pick_size(images, files, image_size)
    arrays = np.stack([to_array(im, channels, size) for im in images])
    data = ImageData(torch.from_numpy(arrays), torch.tensor(labels, dtype=torch.int64))
    return data, [f.name for f in folders], size


def load_image_folder(
    path: str | Path, image_size: int | None = None, channels: int | None = None
) -> tuple[ImageData, list[str]]:
    """All images under ``path`` (root/<class>/<image>) and the sorted class names.

    Labels index the class names. ``channels`` 1 (L) or 3 (RGB); default 1 when every
    image is grayscale. ``image_size`` resizes to a square; default: the images' common size.
    """
    data, classes, _ = _read_folder(path, image_size, channels, None)
    return data, classes


def _load_test_folder(
    test_path: str, train: ImageData, train_classes: list[str], path: str
) -> ImageData:
    """The test folder, read at the train images' channels and size, with the same classes."""
    channels, height, width = train.image_shape
    test, classes, _ = _read_folder(test_path, None, channels, (width, height))
    if classes != train_classes:
        raise TensorfabError(
            f"{test_path}: test classes {classes} differ from the train classes "
            f"{train_classes} in {path}"
        )
    return test


@DATASETS.register("imagefolder", eval_loader=load_image_folder)
def build_imagefolder(
    *,
    path: str,
    test_path: str | None = None,
    image_size: int | None = None,
    channels: int | None = None,
    test_fraction: float = 0.2,
    split_seed: int = 0,
    limit_train: int | None = None,
    limit_test: int | None = None,
) -> ImageSplits:
    """An image folder; test images from ``test_path`` or a seeded stratified split."""
    data, classes = load_image_folder(path, image_size, channels)
    if test_path is not None:
        train, test = data, _load_test_folder(test_path, data, classes, path)
        split: dict[str, object] = {"method": "given", "test_path": str(test_path)}
    else:
        keep, held = stratified_split(data.labels, test_fraction, split_seed)
        train, test = data.subset(keep), data.subset(held)
        split = {"method": "stratified", "test_fraction": test_fraction, "seed": split_seed}
    splits = ImageSplits(
        train=train,
        test=test,
        classes=classes,
        source={
            "name": Path(path).resolve().name,
            "path": str(path),
            "licence": USER_LICENCE,
            "citation": "",
        },
        split=split,
    )
    return limit_splits(splits, limit_train, limit_test)


def read_image_file(path: str | Path, channels: int, size: int) -> torch.Tensor:
    """One image file as uint8 [C, H, W] at the given square size (for predict)."""
    return torch.from_numpy(to_array(open_image(Path(path)), channels, (size, size)).copy())


def read_image_bytes(data: bytes, channels: int, size: int, where: str) -> torch.Tensor:
    """An encoded image (PNG, JPEG, ...) as uint8 [C, H, W] at the given square size."""
    image = open_image(io.BytesIO(data), where)
    return torch.from_numpy(to_array(image, channels, (size, size)).copy())
