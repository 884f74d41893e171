"""The data layer: one module per format, a registry, and the plain dataset types.

Front doors: :func:`create_dataset` (train/test splits for a job) and
:func:`load_eval_data` (a user's own test file for ``evaluate`` / ``predict``).
"""

from tensorfab.data.banking77 import build_banking77
from tensorfab.data.clinc150 import build_clinc150
from tensorfab.data.conll import build_conll
from tensorfab.data.digits import build_digits, digits_as_mnist
from tensorfab.data.idx import (
    build_idx,
    labels_path_for,
    load_idx_eval,
    load_idx_pair,
    read_idx,
    read_idx_images,
    read_idx_labels,
)
from tensorfab.data.imagefolder import build_imagefolder, load_image_folder
from tensorfab.data.movielens import build_movielens
from tensorfab.data.registry import DATASETS, create_dataset, load_eval_data
from tensorfab.data.splits import limit_splits, stratified_split
from tensorfab.data.tabular import build_csv_table
from tensorfab.data.text import build_text
from tensorfab.data.types import ImageData, ImageSplits

__all__ = [
    "DATASETS",
    "ImageData",
    "ImageSplits",
    "build_banking77",
    "build_clinc150",
    "build_conll",
    "build_csv_table",
    "build_digits",
    "build_idx",
    "build_imagefolder",
    "build_movielens",
    "build_text",
    "create_dataset",
    "digits_as_mnist",
    "labels_path_for",
    "limit_splits",
    "load_eval_data",
    "load_idx_eval",
    "load_idx_pair",
    "load_image_folder",
    "read_idx",
    "read_idx_images",
    "read_idx_labels",
    "stratified_split",
]
