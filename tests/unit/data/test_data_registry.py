"""The dataset front doors: unknown names, keyword filtering, required arguments."""

from __future__ import annotations

from typing import get_args

import pytest
import torch

from tensorfab.data import DATASETS, ImageData, ImageSplits, create_dataset, load_eval_data
from tensorfab.errors import TensorfabError
from tensorfab.spec.schema import DataSpec


def test_known_formats_are_the_formats_a_spec_accepts() -> None:
    spec_formats = get_args(DataSpec.model_fields["format"].annotation)
    assert DATASETS.names() == sorted(spec_formats)


def test_unknown_format_lists_known() -> None:
    with pytest.raises(TensorfabError) as info:
        create_dataset("cifar")
    known = ", ".join(DATASETS.names())
    assert str(info.value) == f"unknown dataset 'cifar'; known: {known}"


def test_kwargs_filtered_to_builder_signature() -> None:
    # digits takes neither path nor image_size; None values leave the defaults
    splits = create_dataset(
        "digits",
        path="ignored",
        image_size=32,
        channels=None,
        test_fraction=0.2,
        split_seed=0,
        limit_train=10,
        limit_test=None,
        test_path=None,
    )
    assert len(splits.train) == 10 and splits.train.images.shape[-1] == 28


def test_missing_required_path() -> None:
    with pytest.raises(TensorfabError) as info:
        create_dataset("idx", path=None)
    assert str(info.value) == "dataset 'idx' needs path (data.path in a spec)"


def test_eval_data_not_for_digits() -> None:
    with pytest.raises(TensorfabError) as info:
        load_eval_data("digits", "x")
    assert str(info.value) == (
        "dataset format 'digits' cannot read a file of your own; "
        "use one of: banking77, clinc150, conll, csv-table, idx, imagefolder, text"
    )


def test_image_data_contract() -> None:
    data = ImageData(torch.zeros(3, 1, 2, 2, dtype=torch.uint8), torch.tensor([0, 1, 2]))
    assert len(data) == 3 and data.image_shape == (1, 2, 2)
    assert data.subset(torch.tensor([2, 0])).labels.tolist() == [2, 0]
    with pytest.raises(ValueError, match="3 images but 2 labels"):
        ImageData(data.images, torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="images must be uint8"):
        ImageData(data.images.float(), data.labels)
    splits = ImageSplits(data, data, ["a", "b", "c"], {}, {"method": "given"})
    assert splits.num_classes == 3
