"""The audits on a digits LeNet trained in the test: a tampered package refused by every
load (one line, exit 2), robustness through the task, and the model card read back by
huggingface_hub."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tensorfab.audit.card import write_card
from tensorfab.audit.robustness import robustness_report, write_report
from tensorfab.cli.main import main
from tensorfab.engine.train import train
from tensorfab.package.manifest import manifest_problems
from tensorfab.spec import load_spec

FAST = ["data.limit_train=512", "data.limit_test=256", "train.epochs=2", "train.device=cpu"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("audit")
    spec = load_spec(None, [*FAST, f"output.runs_dir={tmp / 'runs'}", "name=digits"])
    return train(spec, quiet=True).run_dir


def test_robustness_accuracy_falls_with_eps_and_pgd_beats_fgsm(run_dir: Path) -> None:
    report = robustness_report(run_dir, samples=64)
    acc = {(r["attack"], r["eps"]): r["accuracy"] for r in report["rows"]}
    assert report["metric"] == "accuracy" and report["rows"][0]["attack"] == "none"
    assert acc[("none", 0.0)] > 0.5  # the model learnt something
    assert acc[("fgsm", 0.2)] < acc[("fgsm", 0.05)] <= acc[("none", 0.0)]
    assert acc[("pgd", 0.2)] <= acc[("fgsm", 0.2)]  # ten steps find at least what one does
    path = write_report(report)
    assert path == run_dir / "model" / "audit" / "robustness.json"
    assert manifest_problems(run_dir / "model") == []  # re-manifested


def test_card_reads_back_with_huggingface_hub(run_dir: Path) -> None:
    from huggingface_hub import ModelCard

    card = ModelCard.load(write_card(run_dir))
    assert card.data.library_name == "tensorfab"
    assert card.data.tags == ["tensorfab", "image-classification", "lenet"]
    text = card.text
    for title in (
        "Intended use",
        "Training data and licence",
        "Evaluation",
        "Fairness by group",
        "Privacy",
        "Robustness",
        "Energy and hardware of training",
        "Limitations",
    ):
        assert f"## {title}" in text
    meta = json.loads((run_dir / "model" / "tensorfab.json").read_text())
    assert meta["data"]["source"]["licence"] in text
    assert "Fairness by group\n\nnot measured" in text
    assert manifest_problems(run_dir / "model") == []


def test_a_changed_weight_file_is_refused_by_evaluate_and_verify(
    run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy)
    assert main(["audit", "verify", str(copy)]) == 0
    weights = copy / "model" / "weights.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1  # one bit of one weight
    weights.write_bytes(bytes(data))
    capsys.readouterr()
    assert main(["evaluate", str(copy), "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        f"error: {copy / 'model'}: integrity check failed: weights.safetensors: changed "
        f"(sha256 differs); see 'tensorfab audit verify {copy / 'model'}'"
    )
    assert main(["audit", "verify", str(copy)]) == 2


@pytest.mark.parametrize("name", ["verify", "robustness", "card"])
def test_audit_help_has_an_example(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["audit", name, "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: tensorfab audit {name}")
    assert "example:\n  tensorfab audit " in out


def test_pii_ner_with_an_image_model_says_it_is_not_an_ner_model(
    run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    notes = tmp_path / "pii.txt"
    notes.write_text("mail me at a@example.org\n", encoding="utf-8")
    assert main(["audit", "pii", str(notes), "--ner", str(run_dir)]) == 2
    assert capsys.readouterr().err.strip() == (
        f"error: --ner {run_dir}: not an NER model (its labels 0, 1, 2, 3, 4, ... name no "
        "PER, LOC or ORG)"
    )


@pytest.mark.parametrize("samples", ["0", "-5"])
def test_robustness_samples_below_one_is_refused_and_nothing_is_written(
    run_dir: Path, samples: str, capsys: pytest.CaptureFixture[str]
) -> None:
    report = run_dir / "model" / "audit" / "robustness.json"
    before = report.read_bytes() if report.exists() else None
    assert main(["audit", "robustness", str(run_dir), "--samples", samples]) == 2
    assert capsys.readouterr().err.strip() == f"error: --samples {samples}: must be at least 1"
    assert (report.read_bytes() if report.exists() else None) == before
