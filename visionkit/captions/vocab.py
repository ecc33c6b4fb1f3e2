"""A caption vocabulary: PTB tokens (as the COCO caption evaluation tokenises) <-> integer ids.

Ids 0..3 are the special tokens ``<pad> <start> <end> <unk>``; words follow by descending training count,
ties broken alphabetically, so building is deterministic. A word seen fewer than ``min_count`` times in
training, and any word never seen, encodes as ``<unk>``.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

from visionkit.atomic import write_json
from visionkit.captions.tokenize import ptb_tokenize
from visionkit.errors import InputError, UsageError

__all__ = ["PAD", "START", "END", "UNK", "SPECIAL_TOKENS", "Vocabulary"]

PAD, START, END, UNK = "<pad>", "<start>", "<end>", "<unk>"
SPECIAL_TOKENS: tuple[str, ...] = (PAD, START, END, UNK)
_FORMAT = "visionkit.captions.vocabulary/1"


class Vocabulary:
    """Token <-> id mapping for captions. ``pad_id, start_id, end_id, unk_id`` are 0, 1, 2, 3."""

    def __init__(self, words: Sequence[str], *, min_count: int = 1, counts: dict[str, int] | None = None) -> None:
        """Make a vocabulary of ``words`` (no specials, no duplicates), after the four special tokens."""
        seen = set(SPECIAL_TOKENS)
        for w in words:
            if w in seen:
                raise UsageError(f"vocabulary word {w!r} is repeated or a special token")
            if not w or any(ch.isspace() and ch != "\xa0" for ch in w):
                raise UsageError(f"vocabulary word {w!r} is empty or contains whitespace")
            seen.add(w)
        self._itos: list[str] = [*SPECIAL_TOKENS, *words]
        self._stoi: dict[str, int] = {w: i for i, w in enumerate(self._itos)}
        self.min_count = min_count
        self.counts: dict[str, int] = dict(counts or {})

    pad_id, start_id, end_id, unk_id = 0, 1, 2, 3

    @classmethod
    def build(cls, captions: Iterable[str], *, min_count: int = 5, max_size: int | None = None) -> Vocabulary:
        """Build from raw training captions: tokenise, count, keep words seen ``>= min_count`` times.

        ``max_size`` caps the number of words (specials not counted), keeping the most frequent.
        """
        if min_count < 1:
            raise UsageError(f"min_count must be >= 1, got {min_count}")
        if max_size is not None and max_size < 0:
            raise UsageError(f"max_size must be >= 0, got {max_size}")
        counter: Counter[str] = Counter()
        for caption in captions:
            counter.update(ptb_tokenize(caption))
        kept = sorted((w for w, c in counter.items() if c >= min_count and w not in SPECIAL_TOKENS),
                      key=lambda w: (-counter[w], w))
        if max_size is not None:
            kept = kept[:max_size]
        return cls(kept, min_count=min_count, counts={w: counter[w] for w in kept})

    def __len__(self) -> int:
        return len(self._itos)

    def __contains__(self, token: object) -> bool:
        return token in self._stoi

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocabulary) and self._itos == other._itos

    def __repr__(self) -> str:
        return f"Vocabulary({len(self)} tokens, min_count={self.min_count})"

    @property
    def tokens(self) -> list[str]:
        """All tokens in id order, specials first."""
        return list(self._itos)

    def token_to_id(self, token: str) -> int:
        """The id of ``token``, or ``unk_id`` when it is not in the vocabulary."""
        return self._stoi.get(token, self.unk_id)

    def id_to_token(self, index: int) -> str:
        """The token with id ``index``; raises :class:`IndexError` for an id outside ``[0, len)``."""
        if not 0 <= index < len(self._itos):
            raise IndexError(f"token id {index} out of range [0, {len(self._itos)})")
        return self._itos[index]

    def encode(self, caption: str | Sequence[str], *, max_length: int | None = None,
               add_special: bool = True) -> list[int]:
        """Ids of one caption: ``<start> w1 ... wn <end>``.

        ``caption`` is raw text (tokenised with :func:`ptb_tokenize`) or a list of tokens. Unknown words map to
        ``<unk>``. ``max_length`` caps the whole sequence, specials included: the words are truncated so
        that ``<end>`` is still last.
        """
        tokens = ptb_tokenize(caption) if isinstance(caption, str) else list(caption)
        ids = [self.token_to_id(t) for t in tokens]
        extra = 2 if add_special else 0
        if max_length is not None:
            if max_length < extra:
                raise UsageError(f"max_length must be >= {extra}, got {max_length}")
            ids = ids[:max_length - extra]
        return [self.start_id, *ids, self.end_id] if add_special else ids

    def encode_padded(self, captions: Sequence[str | Sequence[str]], max_length: int) -> list[list[int]]:
        """Encode several captions to ``max_length`` ids each, truncated or right-padded with ``<pad>``."""
        return [ids + [self.pad_id] * (max_length - len(ids))
                for ids in (self.encode(c, max_length=max_length) for c in captions)]

    def decode(self, ids: Iterable[int], *, skip_special: bool = True) -> str:
        """Text of ``ids``: stops at the first ``<end>``; drops ``<pad>``/``<start>`` (and keeps ``<unk>``).

        With ``skip_special=False`` every token is written, ``<end>`` and what follows included.
        """
        words: list[str] = []
        for i in ids:
            token = self.id_to_token(int(i))
            if skip_special:
                if i == self.end_id:
                    break
                if i in (self.pad_id, self.start_id):
                    continue
            words.append(token)
        return " ".join(words)

    def to_dict(self) -> dict[str, object]:
        """JSON-ready form: format tag, min_count, tokens in id order, training counts."""
        return {"format": _FORMAT, "min_count": self.min_count, "tokens": self._itos, "counts": self.counts}

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the vocabulary as JSON, atomically (temp file + rename)."""
        return write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Vocabulary:
        """Read a vocabulary written by :meth:`save`; raises :class:`InputError` on a bad file."""
        path = Path(path)
        if not path.is_file():
            raise InputError(f"vocabulary file not found: {path}")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise InputError(f"{path}: not a vocabulary JSON ({e})") from None
        if not isinstance(data, dict) or data.get("format") != _FORMAT:
            raise InputError(f"{path}: not a visionkit caption vocabulary (expected format {_FORMAT!r})")
        tokens = data.get("tokens")
        if not isinstance(tokens, list) or not all(isinstance(t, str) for t in tokens) \
                or tuple(tokens[:len(SPECIAL_TOKENS)]) != SPECIAL_TOKENS:
            raise InputError(f"{path}: 'tokens' must be a list of strings starting with {list(SPECIAL_TOKENS)}")
        try:
            return cls(tokens[len(SPECIAL_TOKENS):], min_count=int(data.get("min_count", 1)),
                       counts=dict(data.get("counts") or {}))
        except UsageError as e:
            raise InputError(f"{path}: {e}") from None
