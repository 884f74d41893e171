"""Layer-wise learning-rate decay and the token-only spec switches of issue 20."""

from __future__ import annotations

import pytest

from tensorfab.engine.optim import create_optimizer
from tensorfab.errors import TensorfabError
from tensorfab.models import create_model, layer_lr_scales
from tensorfab.spec import load_spec


def test_lower_layers_learn_slower_and_the_heads_at_full_rate() -> None:
    model = create_model("bert-tiny", num_classes=3, head="token-crf")  # 2 layers
    scales = layer_lr_scales(model, 0.5)
    assert scales["bert.embeddings.word_embeddings.weight"] == 0.125
    assert scales["bert.encoder.layer.0.attention.self.query.weight"] == 0.25
    assert scales["bert.encoder.layer.1.output.dense.bias"] == 0.5
    assert scales["classifier.weight"] == scales["crf_weights"] == 1.0
    optimizer = create_optimizer("adamw", model, lr=1e-3, lr_scales=scales)
    assert [g["lr"] for g in optimizer.param_groups] == [1e-3, 5e-4, 2.5e-4, 1.25e-4]
    assert sum(len(g["params"]) for g in optimizer.param_groups) == len(scales)


def test_a_model_without_layers_keeps_one_rate() -> None:
    model = create_model("lenet", num_classes=10)
    assert set(layer_lr_scales(model, 0.5).values()) == {1.0}


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["task=text-classification", "data.format=text", "data.context=true"],
         r"data\.context: only for token-classification, not 'text-classification'"),
        (["task=text-classification", "data.format=text", "model.head=crf"],
         r"model\.head=crf: only for token-classification"),
        (["task=token-classification", "data.format=conll", "data.packing=true",
          "model.head=crf"], r"data\.packing cannot be combined with model\.head=crf"),
    ],
)  # fmt: skip
def test_context_and_crf_are_token_classification_switches(
    overrides: list[str], message: str
) -> None:
    with pytest.raises(TensorfabError, match=message):
        load_spec(None, ["data.path=x", *overrides])
