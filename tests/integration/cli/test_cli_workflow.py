"""The CLI as a new user drives it: demo, evaluate, predict, and bad input on the way."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest

from testkit import run_cli


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    cwd = tmp_path_factory.mktemp("demo")
    proc = run_cli("demo", "--epochs", "4", "--json", cwd=cwd)
    assert proc.returncode == 0, proc.stderr
    return cwd, json.loads(proc.stdout)


def _write_idx(path: Path, array: np.ndarray, magic: int) -> None:
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def test_demo_trains_and_names_its_outputs(demo_run: tuple[Path, dict]) -> None:
    cwd, out = demo_run
    assert out["test_accuracy"] > 0.9
    assert (cwd / out["report"]).is_file()
    assert (cwd / out["model"] / "tensorfab.json").is_file()


def test_evaluate_json_matches_the_run_report(demo_run: tuple[Path, dict]) -> None:
    cwd, out = demo_run
    proc = run_cli("evaluate", out["run_dir"], "--json", cwd=cwd)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["n"] == 360
    assert result["scores"]["accuracy"] == pytest.approx(out["test_accuracy"])


def test_evaluate_prints_a_table_per_class_and_the_accuracy(demo_run: tuple[Path, dict]) -> None:
    cwd, out = demo_run
    proc = run_cli("evaluate", out["run_dir"], cwd=cwd)
    assert proc.returncode == 0, proc.stderr
    lines = [line.strip() for line in proc.stdout.splitlines()]
    assert lines[0] == f"{out['model']} on digits test split (360 examples)"
    assert lines[2].split() == ["┃", "class", "┃", "precision", "┃", "recall", "┃", "f1", "┃",
                                "support", "┃"]  # fmt: skip
    rows = [line for line in lines if line.startswith("│")]
    assert [r.split()[1] for r in rows] == [str(d) for d in range(10)]
    assert sum(int(r.split()[-2]) for r in rows) == 360  # supports add up to the split
    assert lines[-1].startswith(f"accuracy {out['test_accuracy']:.4f}  macro F1 ")


def test_predict_top_k_larger_than_the_classes_shows_them_all(
    demo_run: tuple[Path, dict], tmp_path: Path
) -> None:
    from tensorfab.data import create_dataset

    cwd, out = demo_run
    _write_idx(
        tmp_path / "few-images-idx3-ubyte.gz",
        create_dataset("digits").test.images[:2, 0].numpy(),
        0x803,
    )
    proc = run_cli(
        "predict", out["run_dir"], str(tmp_path / "few-images-idx3-ubyte.gz"), "--top-k", "99",
        "--json", cwd=cwd,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    assert [len(r["top"]) for r in rows] == [10, 10]
    assert all(abs(sum(r["top"].values()) - 1) < 1e-5 for r in rows)


def test_evaluate_and_predict_a_users_own_idx_file(
    demo_run: tuple[Path, dict], tmp_path: Path
) -> None:
    from tensorfab.data import create_dataset

    cwd, out = demo_run
    test = create_dataset("digits").test
    images = test.images[:50, 0].numpy()
    _write_idx(tmp_path / "my-images-idx3-ubyte.gz", images, 0x803)
    _write_idx(tmp_path / "my-labels-idx1-ubyte.gz", test.labels[:50].numpy(), 0x801)
    proc = run_cli(
        "evaluate",
        out["model"],
        "--data",
        str(tmp_path / "my-images-idx3-ubyte.gz"),
        "--json",
        cwd=cwd,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["n"] == 50
    proc = run_cli(
        "predict", out["run_dir"], str(tmp_path / "my-images-idx3-ubyte.gz"), "--json", cwd=cwd
    )
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    assert len(rows) == 50
    predicted = np.array([int(r["label"]) for r in rows])
    assert (predicted == test.labels[:50].numpy()).mean() > 0.8


def test_truncated_idx_is_one_line_naming_the_file(tmp_path: Path) -> None:
    data = tmp_path / "mnist"
    data.mkdir()
    for name, magic, shape in [
        ("train-images-idx3-ubyte", 0x803, (20, 28, 28)),
        ("train-labels-idx1-ubyte", 0x801, (20,)),
        ("t10k-images-idx3-ubyte", 0x803, (10, 28, 28)),
        ("t10k-labels-idx1-ubyte", 0x801, (10,)),
    ]:
        _write_idx(data / f"{name}.gz", np.zeros(shape), magic)
    raw = gzip.decompress((data / "train-images-idx3-ubyte.gz").read_bytes())
    (data / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(raw[:1000]))
    proc = run_cli("train", "--set", "data.format=idx", "--set", f"data.path={data}", cwd=tmp_path)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "train-images-idx3-ubyte.gz: truncated IDX file" in lines[0]


def test_image_folder_without_classes_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    proc = run_cli(
        "train",
        "--set",
        "data.format=imagefolder",
        "--set",
        f"data.path={tmp_path / 'empty'}",
        cwd=tmp_path,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "no class folders found" in lines[0]


def test_evaluate_a_missing_model_dir(tmp_path: Path) -> None:
    proc = run_cli("evaluate", str(tmp_path / "nope"), cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"error: {tmp_path / 'nope'}: no such run or model directory"


def test_quiet_prints_nothing_and_json_is_pure_data(tmp_path: Path) -> None:
    args = [
        "train",
        "--set",
        "data.limit_train=128",
        "--set",
        "data.limit_test=64",
        "--set",
        "train.epochs=1",
    ]
    quiet = run_cli(*args, "--quiet", "--name", "q", cwd=tmp_path)
    assert quiet.returncode == 0 and quiet.stdout == "" and quiet.stderr == ""
    data = run_cli(*args, "--json", "--name", "j", cwd=tmp_path)
    assert data.returncode == 0 and data.stderr == ""
    assert json.loads(data.stdout)["status"] == "completed"
