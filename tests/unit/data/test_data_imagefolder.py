"""Image folders: class discovery, grayscale/RGB, sizes, splits and every error path."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tensorfab.data import create_dataset, load_eval_data, load_image_folder
from tensorfab.errors import TensorfabError


def write_png(path: Path, value: int, mode: str = "L", size: tuple[int, int] = (6, 6)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    colour = value if mode == "L" else (value, 255 - value, 7)
    Image.new(mode, size, colour).save(path)
    return path


def make_folder(root: Path, per_class: int = 5, mode: str = "L") -> Path:
    for label, name in enumerate(["cat", "dog"]):
        for i in range(per_class):
            write_png(root / name / f"{i}.png", 10 * i + 100 * label, mode)
    return root


def test_gray_folder(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "pets")
    (root / "cat" / "notes.txt").write_text("not an image")
    data, classes = load_image_folder(root)
    assert classes == ["cat", "dog"]
    assert data.images.dtype == torch.uint8 and data.images.shape == (10, 1, 6, 6)
    assert data.labels.tolist() == [0] * 5 + [1] * 5
    assert data.images[6, 0, 0, 0] == 110


def test_rgb_folder_and_forced_gray(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "pets", mode="RGB")
    data, _ = load_image_folder(root)
    assert data.images.shape == (10, 3, 6, 6)
    assert data.images[1, :, 0, 0].tolist() == [10, 245, 7]
    gray, _ = load_image_folder(root, channels=1, image_size=12)
    assert gray.images.shape == (10, 1, 12, 12)


def test_mixed_sizes_need_image_size(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "pets")
    odd = write_png(root / "dog" / "big.png", 3, size=(9, 7))
    with pytest.raises(TensorfabError) as info:
        load_image_folder(root)
    assert str(info.value) == (
        f"{odd}: image is 9x7 but {root / 'cat' / '0.png'} is 6x6; "
        "set data.image_size to resize them all"
    )
    data, _ = load_image_folder(root, image_size=8)
    assert data.images.shape == (11, 1, 8, 8)


def test_stratified_split_dataset(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "pets")
    splits = create_dataset("imagefolder", path=str(root), test_fraction=0.4, split_seed=1)
    assert (len(splits.train), len(splits.test)) == (6, 4)
    assert torch.bincount(splits.test.labels).tolist() == [2, 2]
    assert splits.split == {
        "method": "stratified",
        "test_fraction": 0.4,
        "seed": 1,
        "train_size": 6,
        "test_size": 4,
    }
    assert splits.source["name"] == "pets"
    assert splits.source["licence"] == "unknown (user data)"


def test_given_test_folder(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "train", mode="RGB")
    test_root = tmp_path / "test"
    for name in ("cat", "dog"):
        write_png(test_root / name / "a.png", 50, size=(10, 10))
    splits = create_dataset("imagefolder", path=str(root), test_path=str(test_root))
    # the test images take the train images' channels and size
    assert splits.test.images.shape == (2, 3, 6, 6)
    assert splits.split["method"] == "given" and len(splits.train) == 10


def test_test_classes_must_match(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "train")
    test_root = tmp_path / "test"
    for name in ("cat", "fox"):
        write_png(test_root / name / "a.png", 50)
    with pytest.raises(TensorfabError) as info:
        create_dataset("imagefolder", path=str(root), test_path=str(test_root))
    assert str(info.value) == (
        f"{test_root}: test classes ['cat', 'fox'] differ from the train classes "
        f"['cat', 'dog'] in {root}"
    )


def test_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(TensorfabError, match=r"gone: folder not found$"):
        load_image_folder(tmp_path / "gone")


def test_no_class_folders(tmp_path: Path) -> None:
    write_png(tmp_path / "flat" / "a.png", 1)
    root = tmp_path / "flat"
    with pytest.raises(TensorfabError) as info:
        load_image_folder(root)
    assert str(info.value) == (
        f"{root}: no class folders found; expected {root}/<class>/<image>.png"
    )


def test_empty_class_folder(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "pets")
    (root / "eel").mkdir()
    (root / "eel" / "readme.md").write_text("x")
    with pytest.raises(
        TensorfabError, match=rf"^{re.escape(str(root / 'eel'))}: class folder has no images"
    ):
        load_image_folder(root)


def test_unreadable_image(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "pets")
    bad = root / "dog" / "broken.jpg"
    bad.write_bytes(b"\xff\xd8 definitely not a jpeg")
    with pytest.raises(TensorfabError, match=rf"^{re.escape(str(bad))}: unreadable image"):
        load_image_folder(root)


def test_eval_data_returns_class_names(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "pets", mode="RGB")
    data, classes = load_eval_data("imagefolder", str(root), image_size=4, channels=3)
    assert classes == ["cat", "dog"] and data.images.shape == (10, 3, 4, 4)
    assert np.unique(data.labels.numpy()).tolist() == [0, 1]
