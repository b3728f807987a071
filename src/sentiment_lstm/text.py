"""Text normalisation, tokenization and vocabulary for review text.

Training, prediction, ONNX export and the HTTP server all turn text into token
ids through :class:`TextEncoder`, so that a model receives the same ids at
serving time as in training. The pipeline runs inside the Hugging Face
``tokenizers`` library and is saved with the model as a standard
``tokenizer.json`` file. This module does not import torch, because serving
installs do not have it.
"""

from __future__ import annotations

import json
import logging
import operator
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, fields
from itertools import chain
from pathlib import Path
from typing import Any

import numpy as np
from tokenizers import Regex, Tokenizer, normalizers, pre_tokenizers
from tokenizers.models import WordLevel

from sentiment_lstm.files import write_text_atomic

logger = logging.getLogger(__name__)

PAD_TOKEN = "<pad>"
UNK_TOKEN = "<unk>"
PAD_INDEX = 0
UNK_INDEX = 1

TOKENIZER_FILENAME = "tokenizer.json"
CONFIG_FILENAME = "text_encoder.json"

# The maximum length of a review in characters, also the CSV field limit.
# Tokenizing a longer one would take 10 to 100 bytes a character, and the
# model reads only its first --max-length tokens anyway.
MAX_REVIEW_CHARS = 16 * 2**20
TOO_LONG_REASON = (
    f"the review is longer than {MAX_REVIEW_CHARS:,} characters, the most a "
    "review may have"
)

# encode_batch() hands texts to tokenizers in chunks of this many, because
# each Encoding object carries tokens, offsets and masks besides the ids. On
# 100,000 rt-polarity lines, one chunk raised peak memory by about 300 MiB and
# chunks of 4096 by about 60 MiB.
_ENCODE_CHUNK_SIZE = 4096

# encode_packed() encodes fewer texts one by one: the NumPy route costs about
# 40 microseconds per call whatever the number of texts, and breaks even with
# the one-by-one route at about 20 reviews.
_PACKED_MIN_TEXTS = 20

# encode_packed() joins ASCII texts in groups of at most this many characters.
# A group's arrays take up to about 40 bytes a character at once, so this
# bounds that memory to about 10 MiB whatever the chunk of texts. A longer
# text is encoded from prefixes of 4 times this size and more, and only a text
# with too few tokens for a prefix, such as one long word, whole. Groups this
# small also stay in the CPU's caches. The 95,000 ASCII reviews of 100,000
# drawn from rt-polarity and the Netflix reviews took 0.22 s in groups of
# 2**18 characters, against 0.43 s in groups of 2**20 (AMD EPYC, Zen 3).
_PACKED_GROUP_CHARS = 1 << 18

# A text that is not ASCII and longer than this many characters is encoded
# from a prefix first, because tokenizers takes 10 to 100 bytes a character
# while the model reads only the first max_length tokens (see _encode_long).
_LONG_TEXT_CHARS = 1 << 16
# Tokens past max_length that a prefix must give before its first max_length
# ids are taken. Cutting a text changes only the last few tokens before the
# cut: a word, a run of dots or a line-break tag that the cut splits.
_PREFIX_MARGIN_TOKENS = 16

# Increase when the normaliser, the pre-tokenizer or either file layout changes
# in a way that would give a saved vocabulary different ids.
FORMAT_VERSION = 1

# HTML line breaks as IMDB-style reviews write them: <br>, <br/>, <BR />.
_HTML_LINE_BREAK = r"(?i)<br\s*/?>"
# Typographic apostrophes and primes. NFKC already maps the full-width
# apostrophe U+FF07 to ASCII, but U+2019, U+2018, U+02BC and U+2032 survive it.
_APOSTROPHES = "[\u2019\u2018\u02bc\uff07\u2032]"
_DOUBLE_QUOTES = "[\u201c\u201d]"
# Invisible characters that text copied from web pages carries inside words.
# A soft hyphen (U+00AD) marks where a word may be hyphenated. The word
# joiner (U+2060) and the zero-width no-break space (U+FEFF, a byte order mark
# inside text) forbid a break. All three are removed, so the word stays whole. A zero-width space (U+200B) marks a break between words and becomes
# a space. NFKC keeps all four. The zero-width joiner and non-joiner stay,
# because emoji sequences and several scripts need them.
_INSIDE_WORD_INVISIBLES = "[\u00ad\u2060\ufeff]"
_ZERO_WIDTH_SPACE = "\u200b"

# Letters, combining marks and digits, except Han ideographs.
_WORD_CHAR = r"[\p{L}\p{M}\p{N}&&[^\p{Han}]]"
# One token per match, tried left to right:
# 1. a Han ideograph on its own, because Chinese and Japanese text has no spaces
#    and a whole clause would otherwise become one token;
# 2. a word, which keeps word-internal apostrophes ("isn't", "it's", "o'clock");
# 3. an ellipsis of two or more dots;
# 4. any other grapheme cluster that neither starts nor ends with whitespace: a
#    punctuation mark, a symbol or an emoji, including emoji built from several
#    code points (skin tones, ZWJ sequences);
# 5. any other non-whitespace character. This catches a prepended mark such as
#    U+0600, which forms one grapheme cluster with a following space.
# Whitespace between matches is dropped. One Split with invert=True does this
# in a single pass. On 100,000 rt-polarity lines it took about 20% less CPU
# time than WhitespaceSplit followed by an isolating Split (tokenizers 0.23.3,
# one thread).
_TOKEN_PATTERN = (
    r"\p{Han}"
    rf"|{_WORD_CHAR}+(?:'{_WORD_CHAR}+)*"
    r"|\.{2,}"
    r"|(?=\S)\X(?<!\s)"
    r"|\S"
)

# ASCII text takes a shortcut in Python that gives the same tokens as the
# tokenizers pipeline above. On ASCII, NFKC changes nothing, the apostrophe
# and quote replacements find nothing, and the token pattern reduces to the
# one below, where whitespace is what the pattern's \s matches in ASCII. On
# 100,000 reviews (95% ASCII) the shortcut took 0.7 s of CPU time against
# 3.5 s for encode_batch_fast (tokenizers 0.23.3), most of which goes to
# building an Encoding object per text. For many texts at once,
# encode_packed() applies the same rules to the bytes of all of them with
# NumPy and looks the tokens up by their bytes as numbers (_TokenKeys). On
# the 95,000 ASCII reviews of 100,000 drawn from rt-polarity and the Netflix
# reviews, in chunks of 8,192, that took 0.22 s against 0.6 s when each token
# became a bytes object for a dictionary lookup (AMD EPYC, Zen 3).
# tests/test_text.py checks that all routes give the same ids, character by
# character and on the real data sets.
_ASCII_WHITESPACE = "\t\n\x0b\x0c\r "
_ASCII_LINE_BREAK = re.compile(rf"<br[{_ASCII_WHITESPACE}]*/?>", re.IGNORECASE)


@dataclass(frozen=True)
class PackedTokenIds:
    """The token ids of many texts, stored in one array.

    Text ``i`` has the ids ``flat[starts[i] : starts[i] + lengths[i]]``.
    Indexing returns one text's ids as a list, so a ``PackedTokenIds`` also
    serves where the lists of :meth:`TextEncoder.encode_batch` are expected.

    Attributes:
        flat: Int64 ids of all texts.
        starts: Int64 offset of each text's first id in ``flat``.
        lengths: Int64 number of ids of each text.
    """

    flat: np.ndarray
    starts: np.ndarray
    lengths: np.ndarray

    @classmethod
    def from_lists(cls, token_ids: Sequence[Sequence[int]]) -> PackedTokenIds:
        """Pack id lists, one per text."""
        if isinstance(token_ids, PackedTokenIds):
            return token_ids
        lengths = np.fromiter(map(len, token_ids), dtype=np.int64, count=len(token_ids))
        flat = np.fromiter(
            chain.from_iterable(token_ids), dtype=np.int64, count=int(lengths.sum())
        )
        return cls(flat, np.cumsum(lengths) - lengths, lengths)

    @classmethod
    def concatenate(cls, parts: Sequence[PackedTokenIds]) -> PackedTokenIds:
        """Join the texts of several parts, in order, into one."""
        if not parts:
            return cls.from_lists([])
        if len(parts) == 1:
            return parts[0]
        offsets = np.cumsum([0] + [len(part.flat) for part in parts[:-1]])
        return cls(
            np.concatenate([part.flat for part in parts]),
            np.concatenate(
                [part.starts + offset for part, offset in zip(parts, offsets)]
            ),
            np.concatenate([part.lengths for part in parts]),
        )

    def __len__(self) -> int:
        return len(self.lengths)

    def __getitem__(self, index: int) -> list[int]:
        start = int(self.starts[index])
        return self.flat[start : start + int(self.lengths[index])].tolist()

    def __iter__(self) -> Iterator[list[int]]:
        return (self[index] for index in range(len(self)))

    def padded(self, rows: np.ndarray, pad_index: int) -> np.ndarray:
        """Return the ids of ``rows`` right-padded to the longest of them.

        Args:
            rows: Indices of texts with at least one id each.
            pad_index: Id that fills the places after a text's end.

        Returns:
            Int64 array of shape ``(len(rows), max length of rows)``.
        """
        lengths = self.lengths[rows]
        positions = np.arange(int(lengths.max()))
        inside = positions < lengths[:, None]
        index = np.where(inside, self.starts[rows][:, None] + positions, 0)
        return np.where(inside, self.flat[index], pad_index)


class TextEncoderError(ValueError):
    """Invalid text encoder settings, vocabulary, input or saved files."""


@dataclass(frozen=True)
class TextEncoderConfig:
    """Settings that fix how text becomes token ids.

    Attributes:
        max_length: Maximum number of tokens kept per text. Longer texts keep
            their first ``max_length`` tokens.
        min_frequency: Minimum number of occurrences in the training texts for
            a token to enter the vocabulary.
        max_vocab_size: Maximum vocabulary size, counting ``<pad>`` and
            ``<unk>``, or None for no limit.
        lowercase: Whether the normaliser lowercases text.
    """

    max_length: int = 400
    min_frequency: int = 1
    max_vocab_size: int | None = None
    lowercase: bool = True

    def __post_init__(self) -> None:
        _require_int("max_length", self.max_length, minimum=1)
        _require_int("min_frequency", self.min_frequency, minimum=1)
        if self.max_vocab_size is not None:
            _require_int("max_vocab_size", self.max_vocab_size, minimum=2)
        if not isinstance(self.lowercase, bool):
            raise TextEncoderError(
                f"lowercase must be True or False, got {self.lowercase!r}"
            )


def _require_int(name: str, value: Any, minimum: int) -> None:
    # bool is a subclass of int, but True as a length is a mistake.
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise TextEncoderError(
            f"{name} must be an integer >= {minimum}, got {value!r}; "
            f"pass a whole number of at least {minimum}"
        )


class TextEncoder:
    """Normalise and tokenize review text and map tokens to vocabulary ids.

    The pipeline, which a ``tokenizers.Tokenizer`` runs:

    1. Normalise. Unicode NFKC comes first. Then typographic apostrophes
       (U+2019, U+2018, U+02BC, U+FF07, U+2032) become ``'``, curly double
       quotes become ``"`` and HTML line breaks (``<br>``, ``<br />``) become
       spaces. The text is lowercased when ``config.lowercase`` is set, and
       surrounding whitespace is stripped.
    2. Pre-tokenize: drop whitespace and split the rest into words, which keep
       word-internal apostrophes (``"isn't"`` is one token), runs of two or
       more dots (``"..."``), single Han ideographs, and single grapheme
       clusters for every other character. Punctuation marks and emoji are
       therefore tokens of their own. Only whitespace is dropped.
    3. Look up each token in the vocabulary. Tokens not in it map to
       ``<unk>`` (id 1). Id 0 is ``<pad>``, which no text produces.
    4. Truncate: only the first ``config.max_length`` tokens are kept (head
       truncation). :meth:`encode` and :meth:`encode_batch` truncate the same
       way. :meth:`tokenize` does not truncate.

    ``tokenizer.json`` holds this whole pipeline. Texts that are pure ASCII,
    most reviews, are encoded by a few lines of Python with ``re`` or NumPy
    instead, which give the same ids several times faster (see
    ``_AsciiShortcut``). Other texts of more than 65,536 characters are
    encoded from a prefix that gives their first ``config.max_length`` ids
    (see ``_encode_long``).
    An encoder loaded from files whose pipeline differs from this version's
    runs every text through ``tokenizer.json``.

    An empty or whitespace-only text encodes to ``[]``. Callers decide what
    to do with it, since a model cannot score it.

    Lone UTF-16 surrogates, which a Python string may contain but UTF-8
    cannot encode, are replaced by U+FFFD before tokenization. The first time
    this happens in a process, a warning is logged.

    Args:
        vocabulary: Tokens in id order. ``vocabulary[0]`` must be ``"<pad>"``
            and ``vocabulary[1]`` must be ``"<unk>"``.
        config: Encoder settings. ``config.max_vocab_size``, when set, must be
            at least ``len(vocabulary)``.

    Raises:
        TextEncoderError: If the vocabulary is invalid.
    """

    def __init__(self, vocabulary: list[str], config: TextEncoderConfig) -> None:
        if not isinstance(config, TextEncoderConfig):
            raise TypeError(
                f"config must be a TextEncoderConfig, got {type(config).__name__}"
            )
        checked = _check_vocabulary(vocabulary)
        if config.max_vocab_size is not None and len(checked) > config.max_vocab_size:
            raise TextEncoderError(
                f"vocabulary has {len(checked)} tokens but config.max_vocab_size is "
                f"{config.max_vocab_size}; raise max_vocab_size or shorten the "
                "vocabulary"
            )
        self._vocabulary = checked
        self._config = config
        self._tokenizer = _build_tokenizer(checked, config)
        self._ascii: _AsciiShortcut | None = _AsciiShortcut(checked, config)
        self._untruncated: Tokenizer | None = None

    @classmethod
    def build(
        cls, texts: Iterable[str], config: TextEncoderConfig = TextEncoderConfig()
    ) -> TextEncoder:
        """Build an encoder whose vocabulary comes from the given texts.

        Pass only the training split, so that no token from validation or test
        texts leaks into the vocabulary. Tokens are ordered by count, most
        frequent first, with ties in ascending code point order, so the same
        texts always give the same ids. Tokens seen fewer than
        ``config.min_frequency`` times are left out, and then only the first
        ``config.max_vocab_size - 2`` tokens are kept.

        Args:
            texts: Training texts, each a str.
            config: Encoder settings.

        Returns:
            The encoder, with ``<pad>`` and ``<unk>`` at ids 0 and 1.

        Raises:
            TypeError: If ``texts`` is a single str or contains a non-str item.
        """
        if isinstance(texts, str):
            raise TypeError(
                "texts must be an iterable of str, got a single str; "
                "wrap it in a list"
            )
        counter_encoder = cls([PAD_TOKEN, UNK_TOKEN], config)
        counts: Counter[str] = Counter()
        text_count = 0
        for index, text in enumerate(texts):
            _require_str(text, index)
            counts.update(counter_encoder.tokenize(text))
            text_count += 1

        # The pre-tokenizer splits "<" and ">" off, so no text yields these two
        # tokens. Removing them still guards against duplicate vocabulary entries.
        counts.pop(PAD_TOKEN, None)
        counts.pop(UNK_TOKEN, None)

        ordered = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
        frequent = [token for token, count in ordered if count >= config.min_frequency]
        selected = frequent
        if config.max_vocab_size is not None:
            selected = frequent[: config.max_vocab_size - 2]

        if text_count == 0:
            logger.warning("building a vocabulary from no texts: every token is <unk>")
        size_limit = (
            "no limit" if config.max_vocab_size is None else config.max_vocab_size
        )
        logger.info(
            "built vocabulary from %d texts: %d distinct tokens, %d seen fewer "
            "than %d times (--min-frequency), %d over the size limit "
            "(--max-vocab-size: %s), %d kept plus <pad>, <unk>",
            text_count,
            len(ordered),
            len(ordered) - len(frequent),
            config.min_frequency,
            len(frequent) - len(selected),
            size_limit,
            len(selected),
        )
        return cls([PAD_TOKEN, UNK_TOKEN, *selected], config)

    @property
    def vocabulary(self) -> list[str]:
        """Copy of the tokens in id order."""
        return list(self._vocabulary)

    @property
    def vocab_size(self) -> int:
        """Number of tokens in the vocabulary, ``<pad>`` and ``<unk>`` included."""
        return len(self._vocabulary)

    @property
    def config(self) -> TextEncoderConfig:
        """Settings of this encoder."""
        return self._config

    @property
    def pad_index(self) -> int:
        """Id of ``<pad>``."""
        return PAD_INDEX

    @property
    def unk_index(self) -> int:
        """Id of ``<unk>``."""
        return UNK_INDEX

    def tokenize(self, text: str) -> list[str]:
        """Normalise and split a text into tokens, without truncation.

        Args:
            text: Raw text.

        Returns:
            The tokens, including those missing from the vocabulary.

        Raises:
            TypeError: If ``text`` is not a str.
        """
        _require_str(text)
        if self._ascii is not None and text.isascii():
            return self._ascii.tokenize(text)
        normalizer = self._tokenizer.normalizer
        pre_tokenizer = self._tokenizer.pre_tokenizer
        try:
            normalized = normalizer.normalize_str(text)
        except UnicodeEncodeError:
            normalized = normalizer.normalize_str(replace_lone_surrogates([text])[0])
        return [token for token, _ in pre_tokenizer.pre_tokenize_str(normalized)]

    def encode(self, text: str) -> list[int]:
        """Encode a text into ids, keeping the first ``config.max_length`` ids.

        Args:
            text: Raw text.

        Returns:
            Token ids. Unknown tokens are ``unk_index``. An empty or
            whitespace-only text gives ``[]``.

        Raises:
            TypeError: If ``text`` is not a str.
        """
        _require_str(text)
        if self._ascii is not None and text.isascii():
            return self._ascii.encode(text)
        try:
            return self._encode_one(text)
        except TypeError:
            # tokenizers 0.23 raises TypeError for a str that UTF-8 cannot
            # encode, which here means a lone surrogate.
            (text,) = replace_lone_surrogates([text])
            return self._encode_one(text)

    def _encode_one(self, text: str) -> list[int]:
        if self._ascii is not None and len(text) > _LONG_TEXT_CHARS:
            return self._encode_long(text)
        return self._tokenizer.encode(text, add_special_tokens=False).ids

    def _encode_long(self, text: str) -> list[int]:
        """Return the ids of a long text, from a prefix of it where one suffices.

        The ids are the first ``max_length`` of the whole text's. A prefix
        that gives ``_PREFIX_MARGIN_TOKENS`` tokens more than that ends past
        every token that a cut could change, so its first ``max_length`` ids
        are the text's. Prefixes grow fourfold up to the whole text. Only
        for this module's own pipeline, whose normaliser and pre-tokenizer
        look at a few characters around each position.

        Raises:
            TypeError: If the text has a lone surrogate.
        """
        if self._untruncated is None:
            untruncated = Tokenizer.from_str(self._tokenizer.to_str())
            untruncated.no_truncation()
            self._untruncated = untruncated
        needed = self._config.max_length + _PREFIX_MARGIN_TOKENS
        size = _LONG_TEXT_CHARS
        while size < len(text):
            ids = self._untruncated.encode(text[:size], add_special_tokens=False).ids
            if len(ids) >= needed:
                return ids[: self._config.max_length]
            size *= 4
        return self._tokenizer.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        """Encode many texts at once.

        Gives the same ids as calling :meth:`encode` on each text, truncation
        included, and returns lists of different lengths (no padding). ASCII
        texts take the shortcut described in the class docstring; the others
        go to ``tokenizers``, which encodes them in parallel, in chunks of
        4096 to bound memory use.

        Args:
            texts: Raw texts.

        Returns:
            One id list per text, in input order.

        Raises:
            TypeError: If ``texts`` is a single str or contains a non-str item.
        """
        batch = _text_list(texts)
        ids: list[list[int]] = []
        others: list[int] = []
        ascii_encode = self._ascii.encode if self._ascii is not None else None
        for index, text in enumerate(batch):
            if type(text) is not str:
                _require_str(text, index)
            if ascii_encode is not None and text.isascii():
                ids.append(ascii_encode(text))
            else:
                ids.append([])
                others.append(index)
        if others:
            encoded = self._encode_with_tokenizer([batch[index] for index in others])
            for index, token_ids in zip(others, encoded, strict=True):
                ids[index] = token_ids
        return ids

    def encode_packed(self, texts: Sequence[str]) -> PackedTokenIds:
        """Encode many texts at once into one array.

        Gives the ids of :meth:`encode_batch`, stored as
        :class:`PackedTokenIds`. ASCII texts are tokenized together, with
        NumPy operations over all their characters, which takes about half
        the time of :meth:`encode_batch` on many reviews. Fewer than 20 texts
        are encoded one by one.

        Args:
            texts: Raw texts.

        Raises:
            TypeError: If ``texts`` is a single str or contains a non-str item.
        """
        batch = _text_list(texts)
        if self._ascii is None or len(batch) < _PACKED_MIN_TEXTS:
            return PackedTokenIds.from_lists(self.encode_batch(batch))
        try:
            is_ascii = np.fromiter(
                map(str.isascii, batch), dtype=bool, count=len(batch)
            )
        except TypeError:
            for index, text in enumerate(batch):
                _require_str(text, index)
            raise
        if is_ascii.all():
            flat, lengths = self._ascii.encode_many(batch)
            return PackedTokenIds(flat, np.cumsum(lengths) - lengths, lengths)
        ascii_rows = np.flatnonzero(is_ascii)
        other_rows = np.flatnonzero(~is_ascii)
        flat, ascii_lengths = self._ascii.encode_many(
            [batch[row] for row in ascii_rows]
        )
        others = PackedTokenIds.from_lists(
            self._encode_with_tokenizer([batch[row] for row in other_rows])
        )
        starts = np.empty(len(batch), dtype=np.int64)
        lengths = np.empty(len(batch), dtype=np.int64)
        starts[ascii_rows] = np.cumsum(ascii_lengths) - ascii_lengths
        lengths[ascii_rows] = ascii_lengths
        starts[other_rows] = others.starts + len(flat)
        lengths[other_rows] = others.lengths
        return PackedTokenIds(np.concatenate([flat, others.flat]), starts, lengths)

    def _encode_with_tokenizer(self, batch: list[str]) -> list[list[int]]:
        # encode_batch_fast skips computing offsets. Older tokenizers
        # releases lack it and fall back to encode_batch.
        encode_many = getattr(
            self._tokenizer, "encode_batch_fast", self._tokenizer.encode_batch
        )
        ids: list[list[int]] = []
        if self._ascii is not None and any(
            len(text) > _LONG_TEXT_CHARS for text in batch
        ):
            # Long texts one by one from their prefixes, the rest together.
            long_rows = [
                i for i, text in enumerate(batch) if len(text) > _LONG_TEXT_CHARS
            ]
            short_rows = [
                i for i, text in enumerate(batch) if len(text) <= _LONG_TEXT_CHARS
            ]
            ids = [[] for _ in batch]
            for row in long_rows:
                ids[row] = self.encode(batch[row])
            short_ids = self._encode_with_tokenizer([batch[row] for row in short_rows])
            for row, row_ids in zip(short_rows, short_ids, strict=True):
                ids[row] = row_ids
            return ids
        for start in range(0, len(batch), _ENCODE_CHUNK_SIZE):
            chunk = batch[start : start + _ENCODE_CHUNK_SIZE]
            try:
                encodings = encode_many(chunk, add_special_tokens=False)
            except TypeError:
                # A lone surrogate, as in encode().
                chunk = replace_lone_surrogates(chunk)
                encodings = encode_many(chunk, add_special_tokens=False)
            ids.extend(encoding.ids for encoding in encodings)
        return ids

    def decode(self, ids: Iterable[int]) -> list[str]:
        """Map ids back to their tokens.

        Padding is kept: ``pad_index`` decodes to ``"<pad>"``. Words that were
        encoded as ``unk_index`` decode to ``"<unk>"``.

        Args:
            ids: Token ids, as Python ints or any integer scalars that support
                ``__index__`` (NumPy integers, single-element integer tensors).

        Returns:
            One token per id.

        Raises:
            TextEncoderError: If an id is not an integer or is outside
                ``[0, vocab_size)``.
        """
        tokens = []
        for position, value in enumerate(ids):
            try:
                token_id = operator.index(value)
            except TypeError as err:
                raise TextEncoderError(
                    f"id at position {position} must be an integer, got {value!r}"
                ) from err
            if not 0 <= token_id < len(self._vocabulary):
                raise TextEncoderError(
                    f"id {token_id} at position {position} is outside the "
                    f"vocabulary range [0, {len(self._vocabulary)}); decode ids "
                    "with the encoder that produced them"
                )
            tokens.append(self._vocabulary[token_id])
        return tokens

    def save(self, directory: Path) -> None:
        """Write ``tokenizer.json`` and ``text_encoder.json`` into a directory.

        ``tokenizer.json`` is the standard ``tokenizers`` file with the
        vocabulary, normaliser, pre-tokenizer and truncation, so any
        ``tokenizers`` binding can load it. ``text_encoder.json`` stores the
        config and the format version. Each file is written to a temporary
        file first and then renamed, so a crash leaves no half-written file.

        Args:
            directory: Target directory, created if missing.

        Raises:
            OSError: If the directory or a file cannot be written.
        """
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        write_text_atomic(
            directory / TOKENIZER_FILENAME, self._tokenizer.to_str(pretty=True)
        )
        metadata = {"format_version": FORMAT_VERSION, "config": asdict(self._config)}
        write_text_atomic(
            directory / CONFIG_FILENAME, json.dumps(metadata, indent=2) + "\n"
        )
        logger.debug(
            "saved text encoder (%d tokens) to %s", len(self._vocabulary), directory
        )

    @classmethod
    def load(cls, directory: Path) -> TextEncoder:
        """Load an encoder written by :meth:`save`.

        The loaded encoder runs the normaliser and pre-tokenizer stored in
        ``tokenizer.json``, so it reproduces the ids of the encoder that was
        saved. A warning is logged when they differ from what this version of
        the module builds for the same config.

        Args:
            directory: Directory that contains ``tokenizer.json`` and
                ``text_encoder.json``.

        Returns:
            The encoder.

        Raises:
            TextEncoderError: If a file is missing, unreadable or invalid. The
                message names the file.
        """
        directory = Path(directory)
        config = _read_config(directory / CONFIG_FILENAME)
        tokenizer_path = directory / TOKENIZER_FILENAME
        tokenizer = _read_tokenizer(tokenizer_path)
        vocabulary = _validate_tokenizer(tokenizer, config, tokenizer_path)

        encoder = cls.__new__(cls)
        encoder._vocabulary = vocabulary
        encoder._config = config
        encoder._tokenizer = tokenizer
        encoder._untruncated = None
        same = _check_pipeline(tokenizer, vocabulary, config, tokenizer_path)
        encoder._ascii = _AsciiShortcut(vocabulary, config) if same else None
        logger.debug(
            "loaded text encoder (%d tokens) from %s", len(vocabulary), directory
        )
        return encoder

    def __repr__(self) -> str:
        return (
            f"TextEncoder(vocab_size={self.vocab_size}, "
            f"max_length={self._config.max_length}, "
            f"lowercase={self._config.lowercase})"
        )


class _AsciiShortcut:
    """Encodes ASCII text to the ids the tokenizers pipeline gives it.

    Only valid for the normaliser and pre-tokenizer that this module builds;
    :meth:`TextEncoder.load` turns it off for files saved with other ones.
    """

    def __init__(self, vocabulary: list[str], config: TextEncoderConfig) -> None:
        self._ids = {token: index for index, token in enumerate(vocabulary)}
        self._byte_ids = {
            token.encode("ascii"): index
            for token, index in self._ids.items()
            if token.isascii()
        }
        self._lowercase = config.lowercase
        self._max_length = config.max_length
        word = "[a-z0-9]" if config.lowercase else "[A-Za-z0-9]"
        self._token = re.compile(
            rf"{word}+(?:'{word}+)*|\.{{2,}}|[^{_ASCII_WHITESPACE}]"
        )
        self._keys = _TokenKeys(list(self._byte_ids), list(self._byte_ids.values()))

    def tokenize(self, text: str) -> list[str]:
        """Tokens of an ASCII text; the caller checks ``text.isascii()``."""
        if self._lowercase:
            text = text.lower()
        if "<" in text:
            text = _ASCII_LINE_BREAK.sub(" ", text)
        return self._token.findall(text)

    def encode(self, text: str) -> list[int]:
        """Ids of an ASCII text, truncated as the tokenizer truncates."""
        lookup = self._ids.get
        tokens = self.tokenize(text)[: self._max_length]
        return [lookup(token, UNK_INDEX) for token in tokens]

    def encode_many(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """Return the ids of ASCII texts in one array, and each text's count.

        Finds the tokens of many texts at once by applying the rules of
        ``self._token`` to the bytes of the joined texts, keeps the first
        ``max_length`` of each text, and looks them up. Each text gets the ids
        that :meth:`encode` gives it. Texts are joined in groups of at most
        ``_PACKED_GROUP_CHARS`` characters, or one text when it is longer.
        """
        if not texts:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
        sizes = np.fromiter(map(len, texts), dtype=np.int64, count=len(texts))
        ends = np.cumsum(sizes)
        ids = []
        counts = []
        start = 0
        while start < len(texts):
            offset = int(ends[start - 1]) if start else 0
            stop = int(np.searchsorted(ends, offset + _PACKED_GROUP_CHARS, "right"))
            stop = max(stop, start + 1)
            if stop == start + 1 and sizes[start] > _PACKED_GROUP_CHARS:
                group_ids, group_counts = self._encode_long(texts[start])
            else:
                group_ids, group_counts = self._encode_group(
                    texts[start:stop], sizes[start:stop]
                )
            ids.append(group_ids)
            counts.append(group_counts)
            start = stop
        if len(ids) == 1:
            return ids[0], counts[0]
        return np.concatenate(ids), np.concatenate(counts)

    def _word_bytes(self, chars: np.ndarray) -> np.ndarray:
        """Return where bytes are word characters: letters and digits.

        Without lowercasing, ``chars | 32`` turns upper-case letters into
        lower-case ones and no other byte into a letter. Comparisons like
        these took a third of the time of a lookup table over the bytes.
        """
        letters = chars if self._lowercase else chars | np.uint8(32)
        return ((letters - np.uint8(ord("a"))) < 26) | (
            (chars - np.uint8(ord("0"))) < 10
        )

    def _encode_long(self, text: str) -> tuple[np.ndarray, np.ndarray]:
        """Return what :meth:`_encode_group` returns for one long text.

        As in :meth:`TextEncoder._encode_long`, a prefix that gives
        ``_PREFIX_MARGIN_TOKENS`` tokens more than ``max_length`` ends past
        every token that a cut could change, so only the prefix is encoded.
        Prefixes grow fourfold, so the arrays of a text of millions of
        characters stay about as small as those of a group.
        """
        needed = self._max_length + _PREFIX_MARGIN_TOKENS
        size = _PACKED_GROUP_CHARS
        while size < len(text):
            ids, _ = self._encode_group([text[:size]], np.array([size]), needed)
            if len(ids) >= needed:
                first_ids = ids[: self._max_length]
                return first_ids, np.array([len(first_ids)])
            size *= 4
        return self._encode_group([text], np.array([len(text)]))

    def _encode_group(
        self, texts: list[str], sizes: np.ndarray, max_tokens: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Return what :meth:`encode_many` returns, for one non-empty group.

        ``sizes`` contains the length of each text in characters. Each text
        keeps its first ``max_tokens`` tokens, by default ``max_length``.
        """
        max_tokens = self._max_length if max_tokens is None else max_tokens
        # NUL stops a line-break tag from running across two texts. Each
        # joining NUL becomes a space below, but NULs inside a text stay.
        joined = "\0".join(texts)
        if self._lowercase:
            joined = joined.lower()
        if "<" in joined:
            # Same-length blanks keep every text's offset.
            joined = _ASCII_LINE_BREAK.sub(_blank, joined)
        chars = np.frombuffer(joined.encode("ascii"), dtype=np.uint8).copy()
        ends = np.cumsum(sizes + 1) - 1
        chars[ends[:-1]] = ord(" ")

        # Classify the bytes and find where each token starts and ends.
        space = _space_bytes(chars)
        word = self._word_bytes(chars)
        dot = chars == ord(".")
        # An apostrophe between two word characters is inside a word.
        in_word = word.copy()
        in_word[1:-1] |= (chars[1:-1] == ord("'")) & word[:-2] & word[2:]
        continues = np.zeros(len(chars), dtype=bool)
        continues[1:] = (in_word[1:] & in_word[:-1]) | (dot[1:] & dot[:-1])
        # A token ends where the next token or space begins.
        boundaries = np.flatnonzero(~continues)
        starting = np.flatnonzero(~space[boundaries])
        token_starts = boundaries[starting]
        token_ends = np.append(boundaries, len(chars))[starting + 1]

        # Text i owns the tokens that start before its end and after the
        # previous text's end.
        counts = np.diff(np.searchsorted(token_starts, ends), prepend=0)
        if counts.max() > max_tokens:
            # A token's place in its own text is its index minus the index
            # of that text's first token.
            text_first_token = np.repeat(np.cumsum(counts) - counts, counts)
            place = np.arange(len(token_starts)) - text_first_token
            within_limit = place < max_tokens
            token_starts = token_starts[within_limit]
            token_ends = token_ends[within_limit]
            counts = np.minimum(counts, max_tokens)
        token_lengths = token_ends - token_starts
        ids = self._keys.lookup(chars, token_starts, token_lengths)
        long_tokens = np.flatnonzero(token_lengths > _KEY_MAX_BYTES)
        if len(long_tokens):
            data = chars.tobytes()
            ids[long_tokens] = [
                self._byte_ids.get(data[start:end], UNK_INDEX)
                for start, end in zip(
                    token_starts[long_tokens].tolist(),
                    token_ends[long_tokens].tolist(),
                )
            ]
        return ids, counts


# _TokenKeys looks up tokens of at most this many bytes with NumPy.
_KEY_MAX_BYTES = 15
# Masks that keep the first n bytes of each half of a token's 16 bytes.
_FIRST_HALF_MASKS = np.array(
    [(1 << 8 * min(n, 8)) - 1 for n in range(16)], dtype=np.uint64
)
_SECOND_HALF_MASKS = np.array(
    [(1 << 8 * max(n - 8, 0)) - 1 for n in range(16)], dtype=np.uint64
)
_LENGTH_SHIFT = np.uint64(56)
_MIXER = np.uint64(0x9E3779B97F4A7C15)


class _TokenKeys:
    """Ids of ASCII tokens found by their bytes as numbers, without bytes objects.

    A token of at most ``_KEY_MAX_BYTES`` bytes is stored exactly in two
    64-bit keys: its first 8 bytes, then the other 7 and its length. The
    vocabulary's tokens sit in an open-addressing hash table of at least 4
    slots per token, and each probe compares both keys, so a token gets the
    id that the vocabulary's dictionary gives it. All tokens of a group take
    each probe at once. On 95,000 ASCII reviews (2.2 million tokens) the
    lookup took about 0.1 s, against 0.4 s for a dictionary lookup of each
    token's bytes. Longer tokens are left to the caller.

    Args:
        tokens: The vocabulary's ASCII tokens as bytes.
        ids: The id of each token.
    """

    def __init__(self, tokens: list[bytes], ids: list[int]) -> None:
        short = [
            index for index, token in enumerate(tokens) if len(token) <= _KEY_MAX_BYTES
        ]
        data = np.frombuffer(b"".join(tokens[index] for index in short), np.uint8)
        lengths = np.fromiter((len(tokens[index]) for index in short), np.int64)
        first, second = _token_keys(data, np.cumsum(lengths) - lengths, lengths)
        self._bits = max(4, (4 * len(short)).bit_length())
        self._mask = (1 << self._bits) - 1
        entries = self._place(self._slots(first, second))
        # An empty slot has length 0 in its second key, which no token has.
        filled = entries >= 0
        self._first = np.zeros(len(entries), dtype=np.uint64)
        self._second = np.zeros(len(entries), dtype=np.uint64)
        self._ids = np.full(len(entries), UNK_INDEX, dtype=np.int64)
        self._first[filled] = first[entries[filled]]
        self._second[filled] = second[entries[filled]]
        self._ids[filled] = np.asarray(ids, dtype=np.int64)[short][entries[filled]]

    def _place(self, homes: np.ndarray) -> np.ndarray:
        """Return the entry in each slot, -1 where empty, and set ``_probes``.

        Entries move on by one slot while theirs is taken, as in linear
        probing, so every slot from an entry's home to its own is filled.
        All entries move at once, and where several reach one empty slot the
        first of them gets it.
        """
        entries = np.full(self._mask + 1, -1, dtype=np.int64)
        waiting = np.arange(len(homes))
        slots = homes.copy()
        self._probes = 1
        while len(waiting):
            free = entries[slots] < 0
            claimed, first_of = np.unique(slots[free], return_index=True)
            entries[claimed] = waiting[free][first_of]
            placed = np.zeros(len(waiting), dtype=bool)
            placed[np.flatnonzero(free)[first_of]] = True
            waiting = waiting[~placed]
            slots = (slots[~placed] + 1) & self._mask
            if len(waiting):
                self._probes += 1
        return entries

    def _slots(self, first: np.ndarray, second: np.ndarray) -> np.ndarray:
        mixed = (first ^ (second * _MIXER)) * _MIXER
        return (mixed >> np.uint64(64 - self._bits)).astype(np.int64)

    def lookup(
        self, chars: np.ndarray, starts: np.ndarray, lengths: np.ndarray
    ) -> np.ndarray:
        """Return the id of each token, ``UNK_INDEX`` where none is found.

        Tokens longer than ``_KEY_MAX_BYTES`` get ``UNK_INDEX`` too; the
        caller looks them up.
        """
        ids = np.full(len(starts), UNK_INDEX, dtype=np.int64)
        rows = np.flatnonzero(lengths <= _KEY_MAX_BYTES)
        first, second = _token_keys(chars, starts[rows], lengths[rows])
        slots = self._slots(first, second)
        # A token stops at its own entry or at an empty slot; no entry lies
        # further than self._probes slots from its hash.
        for _ in range(self._probes):
            if not len(rows):
                break
            found_second = self._second.take(slots)
            found = (found_second == second) & (self._first.take(slots) == first)
            ids[rows[found]] = self._ids.take(slots[found])
            going_on = (found_second != 0) & ~found
            rows = rows[going_on]
            first = first[going_on]
            second = second[going_on]
            slots = (slots[going_on] + 1) & self._mask
        return ids


def _token_keys(
    chars: np.ndarray, starts: np.ndarray, lengths: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Return the two keys of each token of at most 15 bytes in ``chars``."""
    # A view of 16-byte items that start at every byte, so that taking the
    # item at a token's start copies the token's first 16 bytes. Only the
    # bytes up to the last token count, which after truncation may be a small
    # part of a long text.
    used = chars[: int(starts.max()) + 16] if len(starts) else chars[:0]
    padded = np.zeros(len(used) + 16, dtype=np.uint8)
    padded[: len(used)] = used
    windows = np.ndarray((len(used),), dtype="V16", buffer=padded, strides=(1,))
    halves = windows.take(starts).view("<u8").reshape(-1, 2)
    first = halves[:, 0] & _FIRST_HALF_MASKS.take(lengths)
    second = halves[:, 1] & _SECOND_HALF_MASKS.take(lengths)
    second |= lengths.astype(np.uint64) << _LENGTH_SHIFT
    return first, second


def _space_bytes(chars: np.ndarray) -> np.ndarray:
    """Return where bytes are ASCII whitespace: tab to carriage return, and space.

    These are the six bytes that ``bytes.split()`` and the token pattern
    treat as whitespace in ASCII text.
    """
    return ((chars - np.uint8(9)) < 5) | (chars == ord(" "))


def _text_list(texts: Sequence[str]) -> list[str]:
    """Return the texts of a batch as a list, rejecting a single str."""
    if isinstance(texts, str):
        raise TypeError(
            "texts must be a sequence of str, got a single str; "
            "call encode() or wrap it in a list"
        )
    return list(texts)


def _blank(match: re.Match[str]) -> str:
    return " " * (match.end() - match.start())


def html_line_breaks_to_spaces() -> normalizers.Normalizer:
    """Return a normaliser that replaces each HTML line break with a space."""
    return normalizers.Replace(Regex(_HTML_LINE_BREAK), " ")


def review_normalizer() -> normalizers.Normalizer:
    """Return the normaliser of a default TextEncoder, to compare reviews by."""
    return _build_normalizer(TextEncoderConfig())


def normalize_ascii_review(text: str) -> str:
    """Return an ASCII text as :func:`review_normalizer` normalises it.

    In ASCII text, NFKC, the invisible characters, the typographic
    apostrophes and quotes change nothing, so only the HTML line breaks, the
    lowercasing and the stripping of whitespace remain. On rt-polarity
    reviews this took 0.6 us a review against 27 us for the normaliser's
    ``normalize_str``. The caller checks ``text.isascii()``.
    """
    if "<" in text:
        text = _ASCII_LINE_BREAK.sub(" ", text)
    return text.lower().strip(_ASCII_WHITESPACE)


def _build_normalizer(
    config: TextEncoderConfig, *, invisibles: bool = True
) -> normalizers.Normalizer:
    """Return the normaliser of new encoders.

    ``invisibles=False`` leaves out the handling of invisible characters,
    which gives the normaliser that encoders saved by earlier builds contain,
    so that :meth:`TextEncoder.load` can recognise it.
    """
    steps = [normalizers.NFKC()]
    if invisibles:
        steps += [
            normalizers.Replace(Regex(_INSIDE_WORD_INVISIBLES), ""),
            normalizers.Replace(Regex(_ZERO_WIDTH_SPACE), " "),
        ]
    steps += [
        html_line_breaks_to_spaces(),
        normalizers.Replace(Regex(_APOSTROPHES), "'"),
        normalizers.Replace(Regex(_DOUBLE_QUOTES), '"'),
    ]
    if config.lowercase:
        steps.append(normalizers.Lowercase())
    steps.append(normalizers.Strip())
    return normalizers.Sequence(steps)


def _build_pre_tokenizer() -> pre_tokenizers.PreTokenizer:
    # invert=True makes the matches the tokens and removes the text between
    # them, which the pattern leaves only for whitespace.
    return pre_tokenizers.Split(Regex(_TOKEN_PATTERN), behavior="removed", invert=True)


def _build_tokenizer(
    vocabulary: list[str], config: TextEncoderConfig, *, invisibles: bool = True
) -> Tokenizer:
    model = WordLevel(
        {token: index for index, token in enumerate(vocabulary)}, unk_token=UNK_TOKEN
    )
    tokenizer = Tokenizer(model)
    tokenizer.normalizer = _build_normalizer(config, invisibles=invisibles)
    tokenizer.pre_tokenizer = _build_pre_tokenizer()
    tokenizer.enable_truncation(config.max_length, direction="right")
    return tokenizer


def _check_vocabulary(vocabulary: Sequence[str]) -> list[str]:
    if isinstance(vocabulary, str) or not isinstance(vocabulary, Sequence):
        raise TextEncoderError(
            f"vocabulary must be a list of str, got {type(vocabulary).__name__}"
        )
    checked = list(vocabulary)
    if checked[:2] != [PAD_TOKEN, UNK_TOKEN]:
        raise TextEncoderError(
            f"vocabulary must start with {PAD_TOKEN!r}, {UNK_TOKEN!r}, got "
            f"{checked[:2]!r}; put them at ids {PAD_INDEX} and {UNK_INDEX}"
        )
    seen: set[str] = set()
    for index, token in enumerate(checked):
        if not isinstance(token, str) or not token:
            raise TextEncoderError(
                f"vocabulary entry {index} must be a non-empty str, got {token!r}"
            )
        if token in seen:
            raise TextEncoderError(
                f"vocabulary entry {index} {token!r} is a duplicate; "
                "each token must appear once"
            )
        seen.add(token)
    return checked


def _require_str(text: Any, index: int | None = None) -> None:
    if isinstance(text, str):
        return
    where = "text" if index is None else f"text at index {index}"
    raise TypeError(f"{where} must be a str, got {type(text).__name__}: {text!r:.80}")


_surrogate_warning_logged = False


def replace_lone_surrogates(texts: list[str]) -> list[str]:
    """Replace unpaired UTF-16 surrogates by U+FFFD so UTF-8 can encode them.

    A surrogate pair split into two code points is joined back into one
    character.
    """
    cleaned = [
        text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
        for text in texts
    ]
    changed = sum(
        1 for before, after in zip(texts, cleaned, strict=True) if before != after
    )
    # Warn once per process, because a data file decoded with surrogateescape
    # can hit this for every line.
    global _surrogate_warning_logged
    level = logging.DEBUG if _surrogate_warning_logged else logging.WARNING
    _surrogate_warning_logged = True
    logger.log(
        level,
        "replaced the characters that UTF-8 cannot encode in %d text%s (lone "
        "UTF-16 surrogates, which is also what invalid bytes become in Python) "
        "with U+FFFD and joined split surrogate pairs; later replacements are "
        "logged at DEBUG level",
        changed,
        "" if changed == 1 else "s",
    )
    return cleaned


def _read_json(path: Path, description: str) -> Any:
    try:
        raw = path.read_text(encoding="utf-8")
    except FileNotFoundError as err:
        raise TextEncoderError(
            f"{description} not found: {path}; save the encoder with "
            "TextEncoder.save() into that directory"
        ) from err
    except (OSError, UnicodeDecodeError) as err:
        raise TextEncoderError(f"failed to read {description} {path}: {err}") from err
    try:
        return json.loads(raw)
    except json.JSONDecodeError as err:
        raise TextEncoderError(
            f"invalid JSON in {description} {path}: {err}; save the encoder again"
        ) from err


def _read_config(path: Path) -> TextEncoderConfig:
    metadata = _read_json(path, "text encoder config")
    if not isinstance(metadata, dict):
        raise TextEncoderError(
            f"invalid text encoder config {path}: expected a JSON object, got "
            f"{type(metadata).__name__}"
        )
    version = metadata.get("format_version")
    if version != FORMAT_VERSION:
        raise TextEncoderError(
            f"unsupported format_version {version!r} in {path}: this version of "
            f"sentiment_lstm reads format_version {FORMAT_VERSION}; rebuild the "
            "encoder or use the sentiment_lstm version that saved it"
        )
    values = metadata.get("config")
    if not isinstance(values, dict):
        raise TextEncoderError(
            f"invalid text encoder config {path}: 'config' must be a JSON object, "
            f"got {values!r}"
        )
    allowed = {field.name for field in fields(TextEncoderConfig)}
    unknown = sorted(set(values) - allowed)
    if unknown:
        raise TextEncoderError(
            f"invalid text encoder config {path}: unknown keys {unknown}; "
            f"allowed keys are {sorted(allowed)}"
        )
    try:
        return TextEncoderConfig(**values)
    except TextEncoderError as err:
        raise TextEncoderError(f"invalid text encoder config {path}: {err}") from err


def _read_tokenizer(path: Path) -> Tokenizer:
    document = _read_json(path, "tokenizer file")
    try:
        return Tokenizer.from_str(json.dumps(document))
    # tokenizers raises a bare Exception for files it cannot deserialize.
    except Exception as err:
        raise TextEncoderError(
            f"invalid tokenizer file {path}: {err}; save the encoder again"
        ) from err


def _validate_tokenizer(
    tokenizer: Tokenizer, config: TextEncoderConfig, path: Path
) -> list[str]:
    """Check a loaded tokenizer against what :meth:`TextEncoder.save` writes.

    Returns:
        The vocabulary in id order.
    """
    model = tokenizer.model
    if not isinstance(model, WordLevel) or model.unk_token != UNK_TOKEN:
        raise TextEncoderError(
            f"invalid tokenizer file {path}: expected a WordLevel model with "
            f"unk_token {UNK_TOKEN!r}, got {type(model).__name__}"
        )
    if tokenizer.normalizer is None or tokenizer.pre_tokenizer is None:
        raise TextEncoderError(
            f"invalid tokenizer file {path}: the normalizer or pre_tokenizer is "
            "missing; save the encoder again"
        )
    extras = {
        "padding": tokenizer.padding,
        "post_processor": tokenizer.post_processor,
        "added_tokens": tokenizer.get_added_tokens_decoder() or None,
    }
    present = sorted(name for name, value in extras.items() if value)
    if present:
        raise TextEncoderError(
            f"invalid tokenizer file {path}: {', '.join(present)} must be empty, "
            "because they would change the ids; save the encoder again"
        )
    truncation = tokenizer.truncation
    if (
        truncation is None
        or truncation.get("max_length") != config.max_length
        or truncation.get("direction") != "right"
    ):
        raise TextEncoderError(
            f"invalid tokenizer file {path}: truncation is {truncation!r} but "
            f"{CONFIG_FILENAME} sets max_length={config.max_length} with head "
            "truncation (direction 'right'); save the encoder again"
        )

    vocab = tokenizer.get_vocab(with_added_tokens=False)
    by_id = {index: token for token, index in vocab.items()}
    if sorted(by_id) != list(range(len(by_id))):
        raise TextEncoderError(
            f"invalid tokenizer file {path}: vocabulary ids must run from 0 to "
            f"{len(by_id) - 1} without gaps"
        )
    vocabulary = [by_id[index] for index in range(len(by_id))]
    try:
        checked = _check_vocabulary(vocabulary)
    except TextEncoderError as err:
        raise TextEncoderError(f"invalid tokenizer file {path}: {err}") from err
    if config.max_vocab_size is not None and len(checked) > config.max_vocab_size:
        raise TextEncoderError(
            f"invalid tokenizer file {path}: {len(checked)} tokens exceed "
            f"max_vocab_size={config.max_vocab_size} in {CONFIG_FILENAME}"
        )
    return checked


def _check_pipeline(
    loaded: Tokenizer, vocabulary: list[str], config: TextEncoderConfig, path: Path
) -> bool:
    """Return whether a loaded tokenizer splits ASCII text as this module does.

    Logs a warning for each part that differs. A normaliser of an earlier
    build, which keeps invisible characters, treats ASCII text the same and
    is only reported at DEBUG level.
    """
    saved_document = json.loads(loaded.to_str())
    current_document = json.loads(_build_tokenizer(vocabulary, config).to_str())
    earlier_normalizer = json.loads(
        _build_tokenizer(vocabulary, config, invisibles=False).to_str()
    )["normalizer"]
    same = True
    if saved_document.get("normalizer") == earlier_normalizer:
        logger.debug(
            "%s comes from an earlier build, which keeps soft hyphens and "
            "zero-width spaces in words; it is used as saved, so ids match training",
            path,
        )
        saved_document["normalizer"] = current_document["normalizer"]
    for part in ("normalizer", "pre_tokenizer"):
        if saved_document.get(part) != current_document.get(part):
            same = False
            logger.warning(
                "the saved %s differs from the one this version builds; the saved "
                "one is used, so ids match training",
                part,
            )
    return same
