"""Intent data: BANKING77's text,category CSV and CLINC150's JSON of [text, intent] lists."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from tensorfab.data import create_dataset, load_eval_data
from tensorfab.data.banking77 import keep_per_class, read_banking77
from tensorfab.data.clinc150 import read_clinc150
from tensorfab.data.text_types import TextExample
from tensorfab.errors import TensorfabError


def _banking(tmp_path: Path, per_class: int = 10) -> Path:
    rows = ["text,category"]
    for intent in ("card_arrival", "top_up_failed", "lost_card"):
        rows += [f'"query {i}, about {intent}",{intent}' for i in range(per_class)]
    path = tmp_path / "train.csv"
    path.write_text("\n".join(rows) + "\n")
    return path


def _clinc(tmp_path: Path, **overrides: object) -> Path:
    data = {
        "train": [[f"play song {i}", "play_music"] for i in range(4)]
        + [[f"weather in town {i}", "weather"] for i in range(4)],
        "val": [["play a song", "play_music"], ["is it raining", "weather"]],
        "oos_train": [["what is love", "oos"]],
        "oos_val": [["how tall is a tree", "oos"], ["sing me", "oos"]],
        **overrides,
    }
    path = tmp_path / "data.json"
    path.write_text(json.dumps(data))
    return path


def test_banking77_reads_quoted_csv_and_carves_a_stratified_validation(tmp_path: Path) -> None:
    path = _banking(tmp_path)
    assert read_banking77(path)[0] == TextExample("query 0, about card_arrival", "card_arrival")
    splits = create_dataset("banking77", path=str(path), val_fraction=0.2, split_seed=3)
    assert Counter(e.label for e in splits.eval) == {
        "card_arrival": 2,
        "lost_card": 2,
        "top_up_failed": 2,
    }
    assert len(splits.train) == 24 and splits.test == splits.eval
    assert not {e.text for e in splits.train} & {e.text for e in splits.eval}
    assert splits.labels == ["card_arrival", "lost_card", "top_up_failed"]
    again = create_dataset("banking77", path=str(path), val_fraction=0.2, split_seed=3)
    assert again.eval == splits.eval  # seeded


def test_per_class_limit_keeps_n_training_rows_per_intent_and_the_same_validation(
    tmp_path: Path,
) -> None:
    path = _banking(tmp_path)
    full = create_dataset("banking77", path=str(path), val_fraction=0.2)
    few = create_dataset("banking77", path=str(path), val_fraction=0.2, per_class_limit=3)
    assert Counter(e.label for e in few.train) == dict.fromkeys(few.labels, 3)
    assert few.eval == full.eval and few.split["per_class_limit"] == 3
    rows = [TextExample("a", "x"), TextExample("b", "y"), TextExample("c", "x")]
    assert keep_per_class(rows, 1) == rows[:2]


def test_banking77_missing_category_column_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("text,label\nhello,x\n")
    with pytest.raises(TensorfabError, match=r"bad.csv: no column 'category'"):
        read_banking77(path)


def test_clinc150_splits_put_oos_train_in_eval_and_oos_val_in_test(tmp_path: Path) -> None:
    splits = create_dataset("clinc150", path=str(_clinc(tmp_path)))
    assert splits.labels == ["play_music", "weather"]
    assert [e.text for e in splits.eval] == ["play a song", "is it raining", "what is love"]
    assert [e.label for e in splits.test][-2:] == ["oos", "oos"]
    assert len(splits.test) == 4 and len(splits.train) == 8
    few = create_dataset("clinc150", path=str(_clinc(tmp_path)), per_class_limit=1)
    assert [e.text for e in few.train] == ["play song 0", "weather in town 0"]


def test_clinc150_trains_a_seeded_half_of_oos_train_and_calibrates_on_the_rest(
    tmp_path: Path,
) -> None:
    oos = [[f"off topic {i}", "oos"] for i in range(5)]
    splits = create_dataset("clinc150", path=str(_clinc(tmp_path, oos_train=oos)), split_seed=3)
    trained = [e.text for e in splits.train if e.label == "oos"]
    held = [e.text for e in splits.eval if e.label == "oos"]
    assert len(trained) == 2 and len(held) == 3  # 5 // 2 learned, the odd one held
    assert sorted(trained + held) == [t for t, _ in oos]  # each once, never both
    assert splits.labels == ["play_music", "weather"]  # oos is no intent
    again = create_dataset("clinc150", path=str(_clinc(tmp_path, oos_train=oos)), split_seed=3)
    assert [e.text for e in again.train] == [e.text for e in splits.train]  # seeded
    assert splits.split["seed"] == 3 and splits.split["eval"] == "val+oos_train/2"


def test_clinc150_eval_file_prefers_test_and_oos_test(tmp_path: Path) -> None:
    path = _clinc(tmp_path, test=[["stop music", "play_music"]], oos_test=[["why", "oos"]])
    examples, classes = load_eval_data("clinc150", str(path))
    assert examples == [TextExample("stop music", "play_music"), TextExample("why", "oos")]
    assert classes is None
    only_val = tmp_path / "val.json"
    only_val.write_text(json.dumps({"val": [["a", "weather"]], "oos_val": [["b", "oos"]]}))
    assert [e.text for e in load_eval_data("clinc150", str(only_val))[0]] == ["a", "b"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (
            '{"train": [["ok", "x"], ["no intent"]]}',
            r"data.json: train\[1\]: expected \[text, intent\]",
        ),
        ("[1, 2]", r"data.json: expected a JSON object"),
        ('{"train": [["ok", "x"]],\n "val": }', r"data.json:2: invalid JSON"),
    ],
)
def test_clinc150_malformed_file_names_the_place(
    tmp_path: Path, content: str, message: str
) -> None:
    path = tmp_path / "data.json"
    path.write_text(content)
    with pytest.raises(TensorfabError, match=message):
        read_clinc150(path)


def test_clinc150_missing_list_and_wrong_oos_intent_are_errors(tmp_path: Path) -> None:
    with pytest.raises(TensorfabError, match=r"no list 'oos_train'; keys found: train, val"):
        create_dataset("clinc150", path=str(_no_oos(tmp_path)))
    wrong = _clinc(tmp_path, oos_val=[["x", "weather"]])
    with pytest.raises(TensorfabError, match=r"oos_val holds intents \['weather'\]"):
        create_dataset("clinc150", path=str(wrong))


def _no_oos(tmp_path: Path) -> Path:
    path = tmp_path / "no-oos.json"
    path.write_text(json.dumps({"train": [["a", "x"]], "val": [["b", "x"]]}))
    return path
