"""Token classification (NER) on a transformer encoder: IOB2 tags per word, entity F1.

Words are split into sub-tokens; each word's first sub-token carries its label and is what
the scores read. The others are ignored by the loss (``label_pieces="first"``) or trained
towards the word's continuation label (``"all"``: B-X -> I-X, as the Hugging Face example's
``label_all_tokens``). People's texts are answered with tags and entities with character
spans; their words are the whitespace words (CoNLL's tokenization) or, with ``"all"``, the
words as the tokenizer cuts them (``alignment.tokenizer_words``), which are the words that
``pipeline("ner", aggregation_strategy="first")`` reads on the ``export --format hf``
directory, so both give the same entities (docs/hf-export.md).

Two switches, recorded in ``task_config``: ``context`` (FLERT, Schweter and Akbik 2020)
reads each sentence with the neighbouring words of its document on both sides, up to
``max_length`` sub-tokens, and labels, scores and answers only the sentence's own words
(``max_length`` then budgets the context: a sentence longer than it is read whole, alone,
up to ``CONTEXT_ROW_CAP`` sub-tokens, so context never costs a sentence its words);
``crf`` decodes tags with a linear-chain CRF (``models/crf.py``) under IOB2's rule. The
inference graph returns emissions either way; Viterbi runs in :meth:`eval_step` and in the
rows, with the CRF weights recorded in the package (``crf_weights``).
"""

from __future__ import annotations

import dataclasses
import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from tensorfab.data.text_types import TextSplits, TokenExample
from tensorfab.metrics import entity_errors, entity_scores, token_scores
from tensorfab.models.crf import CRF_PARAM, compact, crf_nll, viterbi
from tensorfab.tasks.alignment import (
    IGNORE,
    align_labels,
    first_subtokens,
    inside_labels,
    piece_targets,
    tokenizer_words,
    word_starts,
)
from tensorfab.tasks.base import Batch, Inputs, Workload
from tensorfab.tasks.encoder_task import (
    EncoderTask,
    host_array,
    prepare_text,
    rebuild,
    truncate,
)
from tensorfab.tasks.prediction import decode_entities, softmax, word_spans
from tensorfab.tasks.registry import TASKS
from tensorfab.tasks.robustness import char_noise
from tensorfab.tasks.word_pieces import encode_words

CONTEXT_ROW_CAP = 512  # BERT-family position tables: the longest row a sentence may fill

Window = tuple[list[str], int, int]  # the words fed, and where the sentence's own words are


@dataclass
class TokenClassification(EncoderTask):
    name: str = "token-classification"
    metric_names: tuple[str, ...] = (
        "f1",
        "precision",
        "recall",
        "macro_f1",
        "token_accuracy",
        "loss",
    )
    context: bool = False  # neighbouring words of the document fill the row
    crf: bool = False  # Viterbi under IOB2's rule instead of each word's best tag
    crf_weights: list[list[float]] | None = field(default=None, repr=False)  # [C + 2, C]
    label_pieces: str = "first"  # "all": every sub-token trained; people's words as tokenized
    # the model's CRF parameter while a model is at hand (training, evaluate); the
    # contract's loss and eval_step take logits only, so logits() keeps it here
    _crf: torch.Tensor | None = field(default=None, init=False, repr=False, compare=False)
    head = "token"
    data_format = "conll"
    cut_unit = "words"
    example_unit = "sentences"

    def encode(self, examples: list[Any]) -> tuple[list[list[int]], list[list[int]], int]:
        """Sentences -> sub-token ids, aligned labels, and how many words truncation cut."""
        index = {t: i for i, t in enumerate(self.classes)}
        windows = self.windows(examples)
        encoded = encode_words(self.tok(), [w for w, _, _ in windows])
        inside = inside_labels(self.classes) if self.label_pieces == "all" else None
        all_ids, all_labels, cut = [], [], 0
        for ex, (words, start, end), (ids, wids) in zip(examples, windows, encoded, strict=True):
            ids, wids = truncate(ids, wids, self.row_limit(wids, start, end))
            own = [IGNORE] * start + [index[t] for t in ex.tags] + [IGNORE] * (len(words) - end)
            all_ids.append(ids)
            all_labels.append(align_labels(wids, own, inside))
            cut += len(ex.words) - sum(start <= w < end for w in first_subtokens(wids))
        return all_ids, all_labels, cut

    def row_limit(self, word_ids: list[int | None], start: int, end: int) -> int:
        """Where a row is cut: ``max_length``; with ``context`` not before the end of the
        sentence's own words ``[start, end)`` (measured on CoNLL-2003 valid at max_length
        64, cutting sentences lost 57 of its 5,942 entities)."""
        if not self.context:
            return self.max_length
        own = sum(w is None or start <= w < end for w in word_ids)  # with the specials
        return max(self.max_length, min(own, CONTEXT_ROW_CAP))

    def windows(self, examples: list[TokenExample]) -> list[Window]:
        """Each sentence's words with its document's context around them (``context``)."""
        if not self.context:
            return [(ex.words, 0, len(ex.words)) for ex in examples]
        tok = self.tok()
        enc = tok([e.words for e in examples], is_split_into_words=True, add_special_tokens=False)
        sizes = [Counter(w for w in enc.word_ids(i) if w is not None) for i in range(len(examples))]
        budget = self.max_length - tok.num_special_tokens_to_add()
        out: list[Window] = []
        for doc in documents(examples):
            words = [w for i in doc for w in examples[i].words]
            cost = [sizes[i][j] for i in doc for j in range(len(examples[i].words))]
            start = 0
            for i in doc:
                end = start + len(examples[i].words)
                left, right = context_window(cost, start, end, budget)
                out.append((words[left:right], start - left, end - left))
                start = end
        return out

    def in_documents(self, examples: list[Any], documents: list[int]) -> list[Any]:
        if not documents:
            return examples
        return [
            TokenExample(ex.words, ex.tags, d) for ex, d in zip(examples, documents, strict=True)
        ]

    def model_head(self) -> str:
        return "token-crf" if self.crf else "token"

    def config(self) -> dict[str, Any]:
        extra = {"crf_weights": self.weights().tolist()} if self.crf else {}
        own = {"context": self.context, "crf": self.crf, "label_pieces": self.label_pieces}
        return {**super().config(), **own, **extra}

    def weights(self) -> torch.Tensor:
        """The CRF's weights: the model's while one is at hand, else the package's."""
        if self._crf is not None:
            return self._crf.detach().float().cpu()
        n = len(self.classes)
        return torch.tensor(self.crf_weights) if self.crf_weights else torch.zeros(n + 2, n)

    def logits(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        if self.crf:
            self._crf = crf_parameter(model)
        if len(batch) == 5:  # packed rows: attention stays within each sequence
            segments = batch[2]  # [B, T], 0 = padding (which attends to padding only)
            within = (segments[:, :, None] == segments[:, None, :])[:, None]  # [B, 1, T, T]
            return model(input_ids=batch[1], attention_mask=within, position_ids=batch[4]).logits
        return model(input_ids=batch[1], attention_mask=batch[2]).logits  # [B, T, C]

    def loss(self, logits: torch.Tensor, batch: Batch) -> torch.Tensor:
        if self.crf:
            words, mask, order = compact(logits, word_starts(batch[3]))
            tags = torch.gather(batch[3], 1, order)
            weights = self._crf if self._crf is not None else self.weights().to(logits.device)
            nll = crf_nll(words, tags, mask, weights, self.classes)
            return nll / mask.sum().clamp(min=1)  # per word, as the cross-entropy is
        flat = logits.float().flatten(0, 1)
        targets = piece_targets(batch[3]).flatten()
        return nn.functional.cross_entropy(flat, targets, ignore_index=IGNORE)

    def compared(self, logits: torch.Tensor, batch: Batch) -> torch.Tensor:
        return logits[batch[2].bool()]  # [kept positions, C]: padding is not an answer

    def eval_step(self, logits: torch.Tensor, batch: Batch) -> Any:
        labels, index = batch[3].cpu(), batch[0].cpu()
        keep = word_starts(labels)  # exactly the first sub-token of every (kept) word
        preds = self.decode(logits.detach().float().cpu(), keep)
        return [(int(index[r]), labels[r][keep[r]].tolist(), preds[r]) for r in range(len(index))]

    def decode(self, logits: torch.Tensor, keep: torch.Tensor) -> list[list[int]]:
        """Each row's tags at its kept positions: Viterbi with ``crf``, else the best tag."""
        if not self.crf:
            best = logits.argmax(-1)
            return [best[r][keep[r]].tolist() for r in range(len(best))]
        words, mask, _ = compact(logits, keep)
        return viterbi(words, mask, self.weights(), self.classes)

    def eval_scores(self, outputs: list[Any]) -> dict[str, Any]:
        rows = sorted((row for batch in outputs for row in batch), key=lambda r: r[0])
        true = [[self.classes[i] for i in t] for _, t, _ in rows]
        pred = [[self.classes[i] for i in p] for _, _, p in rows]
        ent = entity_scores(true, pred)
        tok = token_scores(true, pred, self.classes)
        return {
            "f1": ent["f1"],
            "precision": ent["precision"],
            "recall": ent["recall"],
            "macro_f1": ent["macro_f1"],
            "token_accuracy": tok["accuracy"],
            "entity": ent,
            "token": tok,
            "errors": entity_errors(true, pred),
        }

    def logits_shape(self) -> tuple[int, ...]:
        return (-1, len(self.classes))

    def noisy(self, example: TokenExample, rate: float, rng: random.Random) -> TokenExample:
        """Noise within each word (an emptied word keeps its text), so tags stay aligned."""
        words = [char_noise(w, rate, rng) or w for w in example.words]
        return dataclasses.replace(example, words=words)

    def placeholder(self, text: str) -> TokenExample:
        """The text's words (:meth:`words_of`); "O" labels mark each word's first sub-token."""
        words = [w for w, _, _ in self.words_of(text)]
        return TokenExample(words, ["O"] * len(words))

    def words_of(self, text: str) -> list[tuple[str, int, int]]:
        """People's words with character offsets: on whitespace, or as the tokenizer cuts
        the text where every piece was trained (``label_pieces="all"``)."""
        if self.label_pieces == "all":
            return tokenizer_words(self.tok(), text)
        return word_spans(text)

    def rows(
        self, inputs: Inputs, key: Any, logits: torch.Tensor | np.ndarray, top_k: int = 3
    ) -> dict[int, dict[str, Any]]:
        """Tags and entities of each text of a batch, decoded for the whole batch at once;
        probabilities are computed at the words' first sub-tokens only. The key is read in
        numpy (a request's batch is small: each torch op on it costs more than its work)."""
        del top_k  # every word's tag is in a text row
        keep = word_starts(host_array(key[3]))  # [B, T]
        if isinstance(logits, torch.Tensor):
            logits = logits.detach().float().cpu().numpy()
        probs = softmax(np.asarray(logits)[keep])  # [words of the batch, C], row by row
        index = host_array(key[0]).tolist()
        answers = self.text_rows([inputs.data[i] for i in index], probs, keep.sum(1))
        return dict(zip(index, answers, strict=True))

    def text_row(self, text: str, probs: np.ndarray, keep: np.ndarray) -> dict[str, Any]:
        """One text's row from its positions' probabilities ``[T, C]`` (``keep``: [T])."""
        return self.text_rows([text], probs[keep], np.array([int(keep.sum())]))[0]

    def text_rows(
        self, texts: list[str], probs: np.ndarray, counts: np.ndarray
    ) -> list[dict[str, Any]]:
        """Rows of ``texts`` from their words' probabilities, one text after the other
        (``probs`` [sum of counts, C]): every text's tags come from :meth:`word_tags`, the
        decoding evaluation uses, on log-probabilities (Viterbi on them equals Viterbi on
        the logits: a per-word shift changes no path)."""
        best = self.word_tags(np.log(np.maximum(probs, 1e-30)), counts)
        flat = best[0] if len(best) == 1 else np.concatenate(best)  # one text: no copy
        chosen = probs[np.arange(len(flat)), flat].tolist()
        rows, end = [], 0
        for text, tags in zip(texts, best, strict=True):
            rows.append(self.entity_row(text, chosen[end : end + len(tags)], tags.tolist()))
            end += len(tags)
        return rows

    def word_tags(self, emissions: np.ndarray, counts: np.ndarray) -> list[np.ndarray]:
        """Each text's best tags from its words' emissions (``[sum of counts, C]``): as
        :meth:`decode` gives them (each word's argmax, first on a tie; Viterbi with ``crf``)."""
        if not self.crf:
            best = emissions.argmax(-1) if len(emissions) else np.zeros(0, dtype=np.int64)
            if len(counts) == 1:
                return [best]
            ends = np.cumsum(counts).tolist()
            return [best[a:b] for a, b in zip([0, *ends[:-1]], ends, strict=True)]
        width = int(counts.max()) if len(counts) else 0
        placed = np.arange(width)[None] < counts[:, None]  # [B, W]: each text's words, left
        padded = np.zeros((len(counts), width, len(self.classes)))
        padded[placed] = emissions
        tags = self.decode(torch.from_numpy(padded), torch.from_numpy(placed))
        return [np.array(t, dtype=np.int64) for t in tags]

    def entity_row(self, text: str, scores: list[float], best: list[int]) -> dict[str, Any]:
        """One text's answer from its words' decoded tags and their probabilities."""
        spans = self.words_of(text)
        tags = [self.classes[j] for j in best]
        tags += ["O"] * (len(spans) - len(tags))  # words cut by truncation
        scores = scores + [0.0] * (len(spans) - len(best))
        return {"text": text, "tags": tags, "entities": decode_entities(text, spans, tags, scores)}


def documents(examples: list[TokenExample]) -> list[list[int]]:
    """Indices of the examples in runs of the same ``doc`` (None: a document of its own)."""
    groups: list[list[int]] = []
    for i, ex in enumerate(examples):
        if groups and ex.doc is not None and examples[groups[-1][-1]].doc == ex.doc:
            groups[-1].append(i)
        else:
            groups.append([i])
    return groups


def context_window(cost: list[int], start: int, end: int, budget: int) -> tuple[int, int]:
    """Words ``[left, right)`` around the sentence ``[start, end)``: one word to the left,
    one to the right, in turn, while their sub-tokens fit in ``budget`` with the sentence's."""
    left, right = start, end
    room = budget - sum(cost[start:end])
    grew = True
    while grew:
        grew = False
        if left > 0 and cost[left - 1] <= room:
            left, room, grew = left - 1, room - cost[left - 1], True
        if right < len(cost) and cost[right] <= room:
            right, room, grew = right + 1, room - cost[right], True
    return left, right


def crf_parameter(model: nn.Module) -> torch.Tensor:
    """The model's CRF weights (also inside a DDP or torch.compile wrapper)."""
    for name, param in model.named_parameters():
        if name.split(".")[-1] == CRF_PARAM:
            return param
    raise ValueError("model has no CRF weights: build it with head='token-crf'")


def _prepare(
    splits: TextSplits,
    *,
    context: bool = False,
    head: str = "linear",
    label_pieces: str = "first",
    **options: Any,
) -> Workload:
    task_args = {"context": context, "crf": head == "crf", "label_pieces": label_pieces}
    return prepare_text(TokenClassification, splits, task_args=task_args, **options)


@TASKS.register("token-classification", prepare=_prepare)
def build_token_classification(
    classes: list[str],
    max_length: int = 512,
    package_dir: str | None = None,
    encoder: str | None = None,
    input_spec: dict[str, Any] | None = None,
    context: bool = False,
    crf: bool = False,
    crf_weights: list[list[float]] | None = None,
    label_pieces: str = "first",  # packages written before the switch: "first"
) -> TokenClassification:
    del input_spec  # the tokenizer and max_length say it all
    args = {"context": context, "crf": crf, "crf_weights": crf_weights}
    args["label_pieces"] = label_pieces
    return rebuild(TokenClassification, classes, max_length, package_dir, encoder, **args)
