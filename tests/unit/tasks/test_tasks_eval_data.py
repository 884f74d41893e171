"""A user's evaluation data: text files by their own format, folders explained in one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tensorfab.data.text_types import TextExample
from tensorfab.errors import TensorfabError
from tensorfab.tasks.eval_data import load_eval_split

PHRASEBANK_MODEL = {
    "task": "text-classification",
    "input": {"kind": "text"},
    "labels": ["negative", "neutral", "positive"],
    "data": {"spec": {"text_column": "text", "label_column": "label", "text_format": "phrasebank"}},
}
EXPECTED = [TextExample("profit rose", "positive"), TextExample("sales fell", "negative")]


def _write(folder: Path, name: str) -> Path:
    path = folder / name
    rows = [(e.text, e.label) for e in EXPECTED]
    if name.endswith(".csv"):
        path.write_text("text,label\n" + "".join(f"{t},{lab}\n" for t, lab in rows))
    elif name.endswith(".tsv"):
        path.write_text("text\tlabel\n" + "".join(f"{t}\t{lab}\n" for t, lab in rows))
    elif name.endswith(".jsonl"):
        path.write_text("".join(json.dumps({"text": t, "label": lab}) + "\n" for t, lab in rows))
    else:  # PhraseBank lines, as the model was trained on
        path.write_text("".join(f"{t}@{lab}\r\n" for t, lab in rows), encoding="latin-1")
    return path


@pytest.mark.parametrize("name", ["t.csv", "t.tsv", "t.jsonl", "mine.txt"])
def test_a_phrasebank_model_reads_csv_tsv_jsonl_and_its_own_format(
    name: str, tmp_path: Path
) -> None:
    data, source = load_eval_split(PHRASEBANK_MODEL, str(_write(tmp_path, name)))
    assert data == EXPECTED and source == str(tmp_path / name)


def _image_model() -> dict:
    return {
        "task": "image-classification",
        "input": {"kind": "image", "channels": 1, "height": 28, "width": 28},
        "labels": [],
    }


def test_an_empty_folder_is_one_sentence(tmp_path: Path) -> None:
    with pytest.raises(TensorfabError) as info:
        load_eval_split(_image_model(), str(tmp_path))
    assert str(info.value) == (
        f"{tmp_path}: no t10k-images-idx3-ubyte[.gz] or t10k-labels-idx1-ubyte[.gz] "
        "(IDX test data) and no class sub-folders"
    )


def test_a_folder_missing_the_labels_names_only_them(tmp_path: Path) -> None:
    (tmp_path / "t10k-images-idx3-ubyte.gz").write_bytes(b"")
    with pytest.raises(TensorfabError) as info:
        load_eval_split(_image_model(), str(tmp_path))
    assert str(info.value) == (
        f"{tmp_path}: no t10k-labels-idx1-ubyte[.gz] (IDX test data) and no class sub-folders"
    )


def test_a_text_file_for_an_image_model_is_named_as_the_wrong_kind_of_data(tmp_path: Path) -> None:
    conll = tmp_path / "valid.txt"
    conll.write_text("EU B-ORG\nrejects O\n")
    with pytest.raises(TensorfabError) as info:
        load_eval_split(_image_model(), str(conll))
    assert str(info.value) == (
        f"{conll}: not IDX data; an image model evaluates IDX files "
        "(e.g. t10k-images-idx3-ubyte.gz) or a folder of class folders"
    )
