"""``audit fairness`` end to end: a tiny table model trained with fairness thresholds,
audited with and without them, and inputs without the sensitive column refused."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tensorfab.cli import audit_fairness
from tensorfab.engine.inference import evaluate_model, predict_inputs
from tensorfab.engine.train import train
from tensorfab.errors import TensorfabError
from tensorfab.package.manifest import write_manifest
from tensorfab.spec import load_spec

pytest.importorskip("fairlearn")


def _table(path: Path) -> None:
    """Men are mostly labelled yes, women mostly no: a model learns the gap from ``sex``."""
    lines = ["hours, sex, Y"]
    for i in range(120):
        sex = ("Male", "Female")[i % 2]
        yes = (i % 2 == 0 and i % 6 != 0) or (i % 2 == 1 and i % 10 == 1)
        lines.append(f"{20 + i % 40}, {sex}, {'yes' if yes else 'no'}")
    path.write_text("\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def packages(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    tmp = tmp_path_factory.mktemp("fair")
    data = tmp / "t.csv"
    _table(data)
    spec = load_spec(
        None,
        [
            "name=fair",
            "task=tabular-classification",
            "model.name=tabular-mlp",
            "data.format=csv-table",
            f"data.path={data}",
            "data.val_fraction=0.3",
            "data.batch_size=16",
            "train.epochs=6",
            "train.lr=0.01",
            "train.device=cpu",
            "train.fairness.sensitive=sex",
            f"output.runs_dir={tmp / 'runs'}",
        ],
    )
    fair = train(spec, quiet=True).run_dir / "model"
    plain = tmp / "plain"
    shutil.copytree(fair, plain)
    (plain / "fairness.json").unlink()
    write_manifest(plain)  # the same model without its thresholds, as a valid package
    return fair, plain, data


def _audit(model: Path, data: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> dict:
    code = audit_fairness.main(
        [
            str(model),
            "--data",
            str(data),
            "--sensitive",
            "sex",
            "--json",
            "--bootstrap",
            "20",
            *extra,
        ]
    )
    assert code == 0
    return json.loads(capsys.readouterr().out)


def test_thresholds_are_json_and_cut_the_parity_gap(
    packages: tuple[Path, Path, Path], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    fair, plain, data = packages
    rule = json.loads((fair / "fairness.json").read_text())
    assert rule["constraint"] == "demographic_parity" and set(rule["groups"]) == {"Female", "Male"}
    assert not list(fair.rglob("*.pkl")) and not list(fair.rglob("*.pt"))
    before = _audit(plain, data, capsys, "--bootstrap", "0")
    after = _audit(fair, data, capsys, "--bootstrap", "5", "--out", str(tmp_path))
    assert before["groups"]["Male"]["count"] == after["groups"]["Male"]["count"] == 60
    gap_before = before["gaps"]["demographic_parity_difference"]
    gap_after = after["gaps"]["demographic_parity_difference"]
    assert gap_before > 0.3 and gap_after < gap_before / 2, (gap_before, gap_after)
    assert (tmp_path / "fairness.md").is_file() and (tmp_path / "fairness-tpr.png").is_file()
    # evaluate decides with the same thresholds as the audit
    accuracy = evaluate_model(str(fair), str(data), device="cpu")["scores"]["accuracy"]
    correct = sum(g["accuracy"] * g["count"] for g in after["groups"].values())
    assert accuracy == pytest.approx(correct / 120)


def test_inputs_without_the_sensitive_column_are_refused(
    packages: tuple[Path, Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fair, plain, _ = packages
    rows = tmp_path / "rows.csv"
    rows.write_text("hours\n30\n")
    with pytest.raises(TensorfabError, match=r"rows.csv:2: no 'sex'; this model applies"):
        predict_inputs(str(fair), [str(rows)], device="cpu")
    assert len(predict_inputs(str(plain), [str(rows)], device="cpu")) == 1
    code = audit_fairness.main([str(plain), "--data", str(rows), "--sensitive", "race"])
    assert code == 2
    assert "error:" in capsys.readouterr().err
