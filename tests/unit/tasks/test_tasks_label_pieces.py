"""Token classification with every sub-token labelled (``data.label_pieces: all``) against
transformers' ``pipeline("ner", aggregation_strategy="first")``.

The pipeline groups sub-tokens into words by its own rule (``alignment.tokenizer_words``
restates it): with WordPiece, a piece without "##" starts a word, so "U.S." and "1-0" are
several words there and one word in CoNLL. A tiny WordPiece tokenizer and a BERT whose tags
are a lookup of the token (no layers: embedding -> LayerNorm -> classifier) pin each case.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pytest
import torch

from tensorfab.data.text_types import TokenExample
from tensorfab.errors import TensorfabError
from tensorfab.spec import load_spec
from tensorfab.tasks.alignment import (
    CONTINUED,
    IGNORE,
    align_labels,
    inside_labels,
    piece_targets,
    tokenizer_words,
    word_starts,
)
from tensorfab.tasks.base import Inputs
from tensorfab.tasks.prediction import predict_rows
from tensorfab.tasks.token_classification import TokenClassification, build_token_classification

TAGS = ["O", "B-LOC", "I-LOC", "B-PER", "I-PER"]
SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]"]
# each token's tag in the rigged model
TOKEN_TAG = {"u": 1, ".": 0, "s": 2, "1": 0, "-": 0, "0": 3, "play": 3, "##ing": 0, "in": 0}
VOCAB = {t: i for i, t in enumerate(SPECIAL + list(TOKEN_TAG) + ["paris"])}
TOKEN_TAG["paris"] = 1


def wordpiece(prefix: bool = True) -> Any:
    """A BERT-like fast tokenizer: lower-casing, split on whitespace and punctuation, then
    WordPiece with "##" (or WordLevel, a model without a continuing-subword prefix)."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    model = (
        models.WordPiece(VOCAB, unk_token="[UNK]")
        if prefix
        else models.WordLevel(VOCAB, unk_token="[UNK]")
    )
    tok = Tokenizer(model)
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
        sep_token="[SEP]",
    )  # fmt: skip


def rigged_bert() -> Any:
    """BertForTokenClassification whose tag at each position is ``TOKEN_TAG`` of its token."""
    from transformers import BertConfig, BertForTokenClassification

    n = len(TAGS)
    config = BertConfig(
        vocab_size=len(VOCAB), hidden_size=n, num_hidden_layers=0, num_attention_heads=1,
        intermediate_size=4, max_position_embeddings=32, num_labels=n,
        id2label=dict(enumerate(TAGS)), label2id={t: i for i, t in enumerate(TAGS)},
    )  # fmt: skip
    model = BertForTokenClassification(config).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        emb = model.bert.embeddings
        emb.LayerNorm.weight.fill_(1.0)
        for token, tag in TOKEN_TAG.items():
            emb.word_embeddings.weight[VOCAB[token], tag] = 10.0
        model.classifier.weight.copy_(torch.eye(n))
    return model


def entity_sets(rows: list[list[dict]], kind: str) -> list[set[tuple[str, int, int]]]:
    return [{(e[kind], int(e["start"]), int(e["end"])) for e in row} for row in rows]


def both_sides(texts: list[str], label_pieces: str) -> tuple[list, list]:
    """(type, start, end) entities of tensorfab's rows and of the pipeline, per text."""
    from transformers import pipeline

    tok, model = wordpiece(), rigged_bert()
    task = TokenClassification(TAGS, tok, max_length=32, label_pieces=label_pieces)

    def logits_of(feed: dict[str, np.ndarray]) -> torch.Tensor:
        ids, mask = (torch.from_numpy(feed[k]) for k in ("input_ids", "attention_mask"))
        with torch.no_grad():
            return model(input_ids=ids, attention_mask=mask).logits

    ours = predict_rows(task, Inputs(texts, []), logits_of)
    ner = pipeline("ner", model=model, tokenizer=tok, aggregation_strategy="first", device="cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = [ner(t) for t in texts]
    return entity_sets([r["entities"] for r in ours], "type"), entity_sets(theirs, "entity_group")


TEXTS = ["U.S. in Paris", "1-0 in Paris", "playing in Paris"]


def test_with_first_pieces_punctuated_words_differ_from_the_pipeline() -> None:
    ours, theirs = both_sides(TEXTS, "first")
    # "U.S." is one CoNLL word tagged by "u"; the pipeline tags U, ., S, . one by one
    assert ours[0] == {("LOC", 0, 4), ("LOC", 8, 13)}
    assert theirs[0] == {("LOC", 0, 1), ("LOC", 2, 3), ("LOC", 8, 13)}
    # "1-0" is O by its first piece "1"; the pipeline's word "0" is B-PER
    assert ours[1] == {("LOC", 7, 12)}
    assert theirs[1] == {("PER", 2, 3), ("LOC", 7, 12)}
    # "playing" = play ##ing: one word on both sides, tagged by "play"
    assert ours[2] == theirs[2] == {("PER", 0, 7), ("LOC", 11, 16)}


def test_with_every_piece_labelled_predict_reads_the_pipelines_words() -> None:
    ours, theirs = both_sides(TEXTS, "all")
    assert ours == theirs
    assert ours[0] == {("LOC", 0, 1), ("LOC", 2, 3), ("LOC", 8, 13)}


def test_tokenizer_words_follow_the_pipelines_rule() -> None:
    text = "U.S. playing 1-0"
    assert tokenizer_words(wordpiece(), text) == [
        ("U", 0, 1), (".", 1, 2), ("S", 2, 3), (".", 3, 4), ("playing", 5, 12),
        ("1", 13, 14), ("-", 14, 15), ("0", 15, 16),
    ]  # fmt: skip
    # no continuing-subword prefix: a piece with no whitespace before it continues a word,
    # except an unknown one ("§"), which starts its own
    assert tokenizer_words(wordpiece(prefix=False), "U.S. in§") == [
        ("U.S.", 0, 4), ("in", 5, 7), ("§", 7, 8)
    ]  # fmt: skip


def test_continuation_pieces_get_the_inside_label_and_scores_read_word_starts() -> None:
    classes = ["O", "B-LOC", "I-LOC", "B-MISC"]  # no I-MISC: B-MISC continues as itself
    assert inside_labels(classes) == [0, 2, 2, 3]
    word_ids = [None, 0, 0, 1, 2, 2, None]
    labels = align_labels(word_ids, [1, IGNORE, 3], inside_labels(classes))
    assert labels == [IGNORE, 1, CONTINUED - 2, IGNORE, 3, CONTINUED - 3, IGNORE]
    assert align_labels(word_ids, [1, IGNORE, 3]) == [IGNORE, 1, IGNORE, IGNORE, 3, IGNORE, IGNORE]
    t = torch.tensor(labels)
    assert piece_targets(t).tolist() == [IGNORE, 1, 2, IGNORE, 3, 3, IGNORE]
    assert word_starts(t).tolist() == [False, True, False, False, True, False, False]


def test_encode_trains_every_piece_and_eval_scores_only_words() -> None:
    sentence = TokenExample(["U.S.", "playing"], ["B-LOC", "O"])
    task = TokenClassification(TAGS, wordpiece(), max_length=32, label_pieces="all")
    [ids], [labels], cut = task.encode([sentence])
    # [CLS] u . s . play ##ing [SEP]
    assert ids == [2, 4, 5, 6, 5, 10, 11, 3] and cut == 0
    assert labels == [IGNORE, 1, -1002, -1002, -1002, 0, -1000, IGNORE]
    first = TokenClassification(TAGS, wordpiece(), max_length=32).encode([sentence])[1][0]
    assert first == [IGNORE, 1, IGNORE, IGNORE, IGNORE, 0, IGNORE, IGNORE]

    torch.manual_seed(0)
    logits = torch.randn(1, 8, len(TAGS))
    batch = (torch.tensor([0]), torch.tensor([ids]), torch.ones(1, 8), torch.tensor([labels]))
    expected = torch.nn.functional.cross_entropy(logits[0, 1:7], torch.tensor([1, 2, 2, 2, 0, 0]))
    torch.testing.assert_close(task.loss(logits, batch), expected)
    [(index, true, pred)] = task.eval_step(logits, batch)
    assert index == 0 and true == [1, 0]
    assert pred == [int(logits[0, 1].argmax()), int(logits[0, 5].argmax())]


def test_the_switch_is_recorded_and_old_packages_read_first_pieces() -> None:
    task = TokenClassification(TAGS, None, max_length=32, label_pieces="all")
    assert task.config()["label_pieces"] == "all"
    rebuilt = build_token_classification(**task.config(), encoder="minilm-l6")
    assert rebuilt.label_pieces == "all"
    assert build_token_classification(TAGS, 32, encoder="minilm-l6").label_pieces == "first"


def test_the_spec_switch_is_token_classifications_and_refuses_a_crf() -> None:
    conll = ["task=token-classification", "data.format=conll", "data.path=train.txt"]
    spec = load_spec(None, [*conll, "data.label_pieces=all"])
    assert spec.data.label_pieces == "all"
    assert load_spec(None, conll).data.label_pieces == "first"
    crf = r"data\.label_pieces=all trains every sub-token; model\.head=crf reads only each"
    with pytest.raises(TensorfabError, match=crf + r" word's first one: choose one"):
        load_spec(None, [*conll, "data.label_pieces=all", "model.head=crf"])
    with pytest.raises(TensorfabError, match=r"data\.label_pieces=all: only for token-class"):
        load_spec(None, ["task=text-classification", "data.format=text", "data.path=t.tsv",
                         "data.label_pieces=all"])  # fmt: skip
