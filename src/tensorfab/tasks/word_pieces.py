"""Sub-token ids of pre-split words, as ``tokenizer(words, is_split_into_words=True)`` gives
them, for less CPU per text: what a served request tokenizes.

The wrapper's call builds a ``BatchEncoding`` around its backend's; a fast tokenizer whose
class calls the backend as the library's base classes do is called on the backend directly
(:func:`plain_backend`). Its backend encodes pre-split words one by one (each word is
normalized, pre-tokenized and cut into pieces on its own, then the special tokens are put
around the sequence), so a WordPiece tokenizer's pieces of a word are the same in every
text: they are remembered per word (:class:`WordPieces`, at most ``CACHE_WORDS`` words of
at most ``CACHE_CHARS`` characters) and
a text's ids are its words' pieces between the special tokens, which a probe of the
tokenizer found. Any other tokenizer goes through the wrapper, which also resets a
backend's saved truncation and padding for the next call.
"""

from __future__ import annotations

import functools
import threading
import weakref
from collections.abc import Sequence
from typing import Any

Encoded = tuple[list[int], list[int | None]]  # a text's ids and the word of each id

CACHE_WORDS = 50_000  # words remembered per tokenizer; forgotten all at once past it
CACHE_CHARS = 64  # longer words are cut each time: a request's words cannot fill memory
# the wrapper's methods a call goes through; a model's own tokenizer class that redefines
# one (e.g. to refuse pre-split words without a prefix space) keeps the wrapper
WRAPPER_CALLS = ("__call__", "_call_one", "encode_plus", "batch_encode_plus", "_encode_plus",
                 "_batch_encode_plus")  # fmt: skip
WRAPPER_MODULE = "transformers.tokenization_utils"  # the base classes' modules start so
PER_WORD_MODELS = ("WordPiece",)  # backends whose pieces are remembered per word
PROBE = "probe"


def encode_words(tokenizer: Any, word_lists: Sequence[Sequence[str]]) -> list[Encoded]:
    """Each list of words' sub-token ids (special tokens added) and the word of each id, as
    ``tokenizer(word_lists, is_split_into_words=True)`` gives them (``word_ids(i)``)."""
    backend = plain_backend(tokenizer)
    if backend is None:
        enc = tokenizer(list(word_lists), is_split_into_words=True)
        return [(enc["input_ids"][i], enc.word_ids(i)) for i in range(len(word_lists))]
    pieces = _pieces_of(tokenizer, backend)
    if pieces is not None:
        return [pieces.encode(words) for words in word_lists]
    if len(word_lists) == 1:  # one text: no batch to make
        found = [backend.encode(word_lists[0], is_pretokenized=True, add_special_tokens=True)]
    else:
        found = backend.encode_batch(
            list(word_lists), is_pretokenized=True, add_special_tokens=True
        )
    return [(e.ids, e.word_ids) for e in found]


def plain_backend(tokenizer: Any) -> Any:
    """A fast tokenizer's backend when calling it alone gives the wrapper's answer: the
    tokenizer's class calls it as the library's base classes do, and the backend is set as
    a plain call would set it (no truncation, no padding, special tokens as configured)."""
    backend = getattr(tokenizer, "_tokenizer", None)
    if backend is None or not getattr(tokenizer, "is_fast", False):
        return None
    if backend.truncation is not None or backend.padding is not None:
        return None
    split = getattr(tokenizer, "split_special_tokens", False)
    if getattr(backend, "encode_special_tokens", False) != split:
        return None
    return backend if _calls_as_base(type(tokenizer)) else None


@functools.cache
def _calls_as_base(cls: type) -> bool:
    """Whether ``cls`` makes a call through the library's base classes' methods alone."""
    for name in WRAPPER_CALLS:
        owner = next((c for c in cls.__mro__ if name in c.__dict__), None)
        if owner is not None and not owner.__module__.startswith(WRAPPER_MODULE):
            return False
    return True


class WordPieces:
    """A backend's pieces of each word it was asked for, and its special tokens' ids before
    and after a text (``prefix``, ``suffix``)."""

    def __init__(self, backend: Any, prefix: list[int], suffix: list[int]) -> None:
        self.backend, self.prefix, self.suffix = backend, prefix, suffix
        self.words: dict[str, list[int]] = {}
        self.vocab_size = backend.get_vocab_size(with_added_tokens=True)

    def holds_for(self, backend: Any) -> bool:
        """Whether the pieces are still ``backend``'s: the same backend, no token added."""
        return backend is self.backend and (
            backend.get_vocab_size(with_added_tokens=True) == self.vocab_size
        )

    def of(self, word: str) -> list[int]:
        found = self.words.get(word)
        if found is None:
            found = self.backend.encode([word], is_pretokenized=True, add_special_tokens=False).ids
            if len(word) > CACHE_CHARS:
                return found
            if len(self.words) >= CACHE_WORDS:
                self.words = {}
            self.words[word] = found
        return found

    def encode(self, words: Sequence[str]) -> Encoded:
        ids, word_ids = list(self.prefix), [None] * len(self.prefix)
        for i, word in enumerate(words):
            pieces = self.of(word)
            ids += pieces
            word_ids += [i] * len(pieces)
        return ids + self.suffix, word_ids + [None] * len(self.suffix)


_PIECES: weakref.WeakKeyDictionary[Any, WordPieces | None] = weakref.WeakKeyDictionary()
_LOCK = threading.Lock()


def _pieces_of(tokenizer: Any, backend: Any) -> WordPieces | None:
    """The tokenizer's remembered pieces (made on its first text, made again when a token
    was added since), or None when its backend's pieces are not remembered per word."""
    found = _PIECES.get(tokenizer, False)
    if found is None or (found and found.holds_for(backend)):
        return found
    with _LOCK:
        found = _probe(backend)
        _PIECES[tokenizer] = found
        return found


def _probe(backend: Any) -> WordPieces | None:
    """The special tokens around a text, read from a one-word text with and without them;
    None for a model not in ``PER_WORD_MODELS`` or a text not laid out as prefix, the
    word's pieces, suffix (and an empty text as prefix, suffix)."""
    if type(backend.model).__name__ not in PER_WORD_MODELS:
        return None
    full = backend.encode([PROBE], is_pretokenized=True, add_special_tokens=True)
    bare = backend.encode([PROBE], is_pretokenized=True, add_special_tokens=False).ids
    own = [i for i, w in enumerate(full.word_ids) if w is not None]
    if not own or own != list(range(own[0], own[0] + len(bare))):
        return None
    prefix, suffix = full.ids[: own[0]], full.ids[own[0] + len(bare) :]
    empty = backend.encode([], is_pretokenized=True, add_special_tokens=True)
    if full.ids != prefix + bare + suffix or empty.ids != prefix + suffix:
        return None
    return WordPieces(backend, prefix, suffix)
