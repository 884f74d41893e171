"""Workload set-up that needs no training: synthetic MNIST, names, missing data, switches."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tensorfab.bench.switches import kept_switches, pytorch_defaults
from tensorfab.bench.workloads import Plan, create_workload, synthetic_mnist
from tensorfab.data import create_dataset
from tensorfab.errors import TensorfabError


def _plan(data_dir: Path, quick: bool = True) -> Plan:
    return Plan(torch.device("cpu"), quick, 1, 2, data_dir)


def test_synthetic_mnist_reads_back_as_idx(tmp_path: Path) -> None:
    synthetic_mnist(tmp_path, 50, 7)
    splits = create_dataset("idx", path=str(tmp_path))
    assert splits.train.images.shape == (50, 1, 28, 28)
    assert splits.test.images.shape == (7, 1, 28, 28)
    assert int(splits.train.labels.max()) <= 9


def test_lenet_falls_back_to_synthetic_data_and_says_so(tmp_path: Path) -> None:
    workload = create_workload("lenet-mnist", _plan(tmp_path))
    try:
        assert workload.data["source"].startswith("synthetic")
        assert len(workload.splits.train) == 512 * 3  # largest batch x (warm-up + steps)
        spec = workload.engine_spec(64, 3, False)
        assert spec["data"]["format"] == "idx" and spec["train"]["max_steps"] == 3
    finally:
        workload.close()


def test_a_named_data_dir_without_mnist_is_an_error_not_synthetic_data(tmp_path: Path) -> None:
    plan = Plan(torch.device("cpu"), True, 1, 2, tmp_path, synthetic_ok=False)
    with pytest.raises(TensorfabError) as info:
        create_workload("lenet-mnist", plan)
    assert str(info.value) == (
        f"--data-dir {tmp_path}: no MNIST in {tmp_path.resolve() / 'mnist'} (lenet-mnist needs "
        "its four IDX files there; leave --data-dir out to run it on synthetic images)"
    )


def test_ner_without_conll_names_the_missing_file(tmp_path: Path) -> None:
    with pytest.raises(TensorfabError, match=r"conll2003/train.txt: CoNLL-2003 train file not"):
        create_workload("minilm-ner", _plan(tmp_path))


def test_unknown_workload_lists_the_known_ones(tmp_path: Path) -> None:
    with pytest.raises(TensorfabError, match="unknown workload 'resnet'; choose from lenet-mnist"):
        create_workload("resnet", _plan(tmp_path))


def test_baseline_switches_are_pytorch_defaults_and_restored() -> None:
    before = (torch.backends.cudnn.benchmark, torch.backends.cuda.matmul.allow_tf32)
    with kept_switches():
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        with pytorch_defaults() as inside:
            assert (torch.backends.cudnn.benchmark, torch.backends.cuda.matmul.allow_tf32) == before
            assert torch.backends.cuda.matmul.allow_tf32 is False
        assert inside == {"matmul_tf32": False, "cudnn_tf32": True, "cudnn_benchmark": False}
        assert torch.backends.cudnn.benchmark is True
        assert torch.backends.cuda.matmul.allow_tf32 is True
    assert (torch.backends.cudnn.benchmark, torch.backends.cuda.matmul.allow_tf32) == before


def test_a_relative_data_dir_stays_relative_in_what_results_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "data" / "conll2003"
    folder.mkdir(parents=True)
    for name in ("train.txt", "valid.txt"):
        (folder / name).write_text("EU NNP B-NP B-ORG\nrejects VBZ B-VP O\n\n")
    monkeypatch.chdir(tmp_path)
    workload = create_workload("minilm-ner", _plan(Path("data")))
    assert workload.limits["path"] == str(Path("data/conll2003/train.txt"))  # not /tmp/...
