"""The tabular task: encoding fitted on train, the graph's standardisation, people's rows,
requests refused by name, and fairness thresholds applied outside the graph."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from tensorfab.data.tabular import TableSplits, read_table
from tensorfab.errors import TensorfabError
from tensorfab.models import create_model
from tensorfab.tasks import ServingLimits, prepare_workload
from tensorfab.tasks.tabular_classification import TabularClassification

TRAIN = "age, sex, job, Y\n20, Female, chef, no\n40, Male, ?, yes\n60, Male, clerk, yes.\n"


def _task(fairness: dict | None = None) -> TabularClassification:
    return TabularClassification(
        ["no", "yes"], ["age"], {"sex": ["Female", "Male"]}, [40.0], [10.0], fairness
    )


def _rule() -> dict:
    groups = {
        "Female": {"high": 0.6, "low": 0.6, "p": 0.0},
        "Male": {"high": 0.9, "low": 0.9, "p": 0.0},
    }
    return {
        "constraint": "demographic_parity",
        "sensitive": "sex",
        "positive": "yes",
        "groups": groups,
    }


def test_prepare_fits_columns_and_standardisation_on_train(tmp_path: Path) -> None:
    path = tmp_path / "train.csv"
    path.write_text(TRAIN)
    table = read_table(path)
    work = prepare_workload("tabular-classification", TableSplits(table, None))
    task = work.task
    assert task.classes == ["no", "yes"] and task.numeric == ["age"]
    assert task.vocab == {"sex": ["Female", "Male"], "job": ["chef", "clerk"]}
    assert task.mean == [40.0] and task.std == pytest.approx([np.std([20, 40, 60])], abs=1e-5)
    assert work.model_args == {"num_classes": 2, "num_numeric": 1, "cardinalities": [2, 2]}
    data = task.encode_table(table)
    assert data.codes.tolist() == [[1, 1], [2, 0], [2, 2]]  # "?" and unseen values are code 0
    assert data.labels.tolist() == [0, 1, 1]


def test_the_graph_standardises_inside() -> None:
    task = _task()
    torch.manual_seed(0)
    model = create_model("tabular-mlp", num_classes=2, num_numeric=1, cardinalities=[2], hidden=[4])
    feed = task.example_feed([0, 0, 0], np.random.default_rng(0))
    assert feed["numeric"].shape == (3, 1) and feed["categorical"].shape == (3, 1)
    numeric, codes = torch.from_numpy(feed["numeric"]), torch.from_numpy(feed["categorical"])
    with torch.no_grad():
        graph = task.graph(model)(numeric, codes)
        direct = model((numeric - 40.0) / 10.0, codes)
    assert torch.allclose(graph, direct)


def test_rows_from_a_request_and_bad_requests() -> None:
    task = _task()
    body = json.dumps({"instances": [{"age": 50, "sex": "Male"}, {"sex": "Female"}]}).encode()
    inputs = task.decode_request(body, ServingLimits())
    assert inputs.names == ["instances[0]", "instances[1]"]
    assert inputs.data.numeric.tolist() == [[50.0], [40.0]]  # a missing number: the mean
    with pytest.raises(
        TensorfabError, match=r"instances\[0\]: column 'age': 'old' is not a number"
    ):
        task.decode_request(b'{"instances": [{"age": "old"}]}', ServingLimits())
    with pytest.raises(TensorfabError, match="expected"):
        task.decode_request(b'{"instances": ["a"]}', ServingLimits())
    with pytest.raises(TensorfabError, match="request body: not JSON"):
        task.decode_request(b"{", ServingLimits())


def test_fairness_thresholds_decide_and_need_the_sensitive_column() -> None:
    task = _task(_rule())
    body = {"instances": [{"age": 30, "sex": "Female"}, {"age": 30, "sex": "Male"}]}
    inputs = task.decode_request(json.dumps(body).encode(), ServingLimits())
    p_yes = 0.7  # above the women's threshold 0.6, below the men's 0.9
    logits = torch.log(torch.tensor([[1 - p_yes, p_yes], [1 - p_yes, p_yes]]))
    rows = task.rows(inputs, 0, logits, 2)
    assert [rows[0]["label"], rows[1]["label"]] == ["yes", "no"]
    assert rows[1]["score"] == pytest.approx(p_yes)  # probabilities stay the model's
    with pytest.raises(TensorfabError, match=r"instances\[0\]: no 'sex'; this model applies"):
        task.decode_request(b'{"instances": [{"age": 30}]}', ServingLimits())
    plain = _task().rows(inputs, 0, logits, 2)
    assert [plain[0]["label"], plain[1]["label"]] == ["yes", "yes"]


def test_the_spec_takes_fairness_for_tables_only() -> None:
    from tensorfab.spec import load_spec

    table = ["task=tabular-classification", "data.format=csv-table", "data.path=t.csv"]
    spec = load_spec(None, [*table, "train.fairness.sensitive=sex"])
    assert (
        spec.train.fairness is not None and spec.train.fairness.constraint == "demographic_parity"
    )
    odds = load_spec(
        None, [*table, "train.fairness.sensitive=sex", "train.fairness.constraint=equalized_odds"]
    )
    assert odds.train.fairness is not None and odds.train.fairness.cut == 0.8
    with pytest.raises(TensorfabError, match=r"train\.fairness: only for tabular-classification"):
        load_spec(None, ["train.fairness.sensitive=sex"])
    with pytest.raises(TensorfabError, match=r"train\.fairness\.constraint"):
        load_spec(None, [*table, "train.fairness.sensitive=sex", "train.fairness.constraint=x"])


def test_robustness_adds_seeded_noise_to_numeric_columns_only(tmp_path: Path) -> None:
    path = tmp_path / "train.csv"
    path.write_text(TRAIN)
    work = prepare_workload("tabular-classification", TableSplits(read_table(path), None))
    task, data = work.task, work.task.encode_table(read_table(path))
    torch.manual_seed(0)
    model = create_model("tabular-mlp", **work.model_args, hidden=[4]).eval()
    rows = task.robustness(model, data, torch.device("cpu"), seed=0)
    assert [(r["attack"], r["eps"]) for r in rows] == [
        ("none", 0.0),
        ("gaussian-noise", 0.1),
        ("gaussian-noise", 0.3),
        ("gaussian-noise", 1.0),
    ]
    batch = next(iter(task.eval_batches(data, 8, torch.device("cpu")).epoch(0)))
    with torch.no_grad():  # the unperturbed row is a plain evaluation
        step = task.eval_step(task.logits(model, batch), batch)
    assert rows[0]["accuracy"] == task.eval_scores([step])["accuracy"]
    assert task.robustness(model, data, torch.device("cpu"), seed=0) == rows  # seeded
