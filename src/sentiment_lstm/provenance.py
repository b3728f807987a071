"""Records of the reviews a model was trained on, and their comparison.

``train`` saves the read options and a fingerprint of the reviews read from
``--data`` in ``training.json``. ``evaluate --split`` compares them with its
own read, because the split is recreated from the reviews: other star
cut-offs or another column give other reviews, and so another split.
``train`` also saves a hash of each review of the training part, so that
``evaluate`` can count the reviews it scores that the model was trained on.

This module imports no PyTorch, so serving installs can evaluate.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
from collections.abc import Iterable
from typing import Any

import numpy as np

from sentiment_lstm.data import Example, ReadOptions

# Key of training.json that records the training reviews, and the scheme of
# the record: the first 8 bytes of each review's BLAKE2b digest, as unique
# sorted big-endian integers in base64. The review is first normalised as
# the word tokenizer does (NFKC, lower case, typographic quotes, <br />), so
# that copies the model reads as the same tokens match, and its whitespace
# runs made single spaces. With 64 bits and a million training reviews, a
# review not among them matches one by chance with a probability of
# 1e6 / 2**64, about once in 18 trillion reviews compared.
TRAINING_REVIEWS_KEY = "training_reviews"
REVIEW_HASH_SCHEME = (
    "blake2b-64 of the text normalized as the word tokenizer does, with "
    "whitespace collapsed"
)
# The scheme of models saved by earlier builds, which only collapsed
# whitespace.
_COLLAPSED_HASH_SCHEME = "blake2b-64 of the text with whitespace collapsed"

# Command line flag of each recorded read option, for messages.
READ_OPTION_FLAGS = {
    "format": "--data-format",
    "text_column": "--text-column",
    "label_column": "--label-column",
    "stars": "--stars",
    "negative_max_stars": "--negative-max-stars",
    "positive_min_stars": "--positive-min-stars",
    "skip_bad_rows": "--skip-bad-rows",
}
# Options that matter only when star ratings are read.
_STAR_OPTIONS = ("negative_max_stars", "positive_min_stars")
_BOOLEAN_OPTIONS = ("stars", "skip_bad_rows")
# The column that each column option chooses, as ReadResult.columns names it.
_COLUMN_ROLES = {"text_column": "text", "label_column": "label"}


def read_options_record(options: ReadOptions, data_format: str) -> dict[str, Any]:
    """Return the read options that decide which reviews are read, as JSON values.

    Args:
        options: The options of the read.
        data_format: The format the data was read as, detected or given.
    """
    return {
        "format": data_format,
        "text_column": options.text_column,
        "label_column": options.label_column,
        "stars": options.stars,
        "negative_max_stars": options.star_rule.negative_max,
        "positive_min_stars": options.star_rule.positive_min,
        "skip_bad_rows": options.skip_bad_rows,
    }


def examples_fingerprint(examples: Iterable[Example]) -> str:
    """Return the SHA-256 of the reviews' texts and labels, in reading order.

    Equal fingerprints mean equal examples, so the same seed and fractions
    split them the same way. File names and line numbers are left out, so a
    copy of the data under another name matches.
    """
    digest = hashlib.sha256()
    for example in examples:
        # The byte count before each text keeps the encoding unambiguous.
        text = example.text.encode("utf-8", "surrogatepass")
        digest.update(f"{example.label} {len(text)}\n".encode("ascii"))
        digest.update(text)
    return digest.hexdigest()


def review_set_fingerprint(examples: Iterable[Example]) -> str:
    """Return a SHA-256 of the reviews' texts and labels in any order.

    Equal fingerprints mean the same reviews, each as often, whatever the
    order, as when a file of the training data is sorted or shuffled.
    """
    digests = sorted(_example_digest(example) for example in examples)
    digest = hashlib.sha256()
    for item in digests:
        digest.update(item)
    return digest.hexdigest()


def _example_digest(example: Example) -> bytes:
    text = example.text.encode("utf-8", "surrogatepass")
    return hashlib.sha256(
        f"{example.label} {len(text)}\n".encode("ascii") + text
    ).digest()


def read_option_differences(
    saved: dict[str, Any],
    current: dict[str, Any],
    *,
    saved_columns: dict[str, str | None] | None = None,
    current_columns: dict[str, str | None] | None = None,
    compare_format: bool = True,
    skipped_rows: bool = True,
) -> list[str]:
    """Describe each read option that differs from the saved one.

    Columns left to detection are recorded as None. When the columns as
    chosen are known for both reads, a column option counts as different
    only if it chose another column, so naming the detected column is no
    difference. Callers compare :func:`examples_fingerprint` first and only
    describe options when the reviews differ.

    Args:
        saved: The read options recorded at training.
        current: The read options of this read.
        saved_columns: The columns chosen at training, if recorded.
        current_columns: The columns chosen by this read, if any.
        compare_format: Whether to compare the data format, which differs by
            itself when the data files differ.
        skipped_rows: Whether either read skipped bad rows; if neither did,
            ``--skip-bad-rows`` changed nothing and is not compared.

    Returns:
        One phrase per option, such as ``--negative-max-stars 3 (training: 2)``.
    """
    differences = []
    for name, flag in READ_OPTION_FLAGS.items():
        if name not in saved:
            continue
        if name == "format" and not compare_format:
            continue
        if name == "skip_bad_rows" and not skipped_rows:
            continue
        if name in _STAR_OPTIONS and not (saved.get("stars") and current.get("stars")):
            continue
        before, now = saved[name], current.get(name)
        if before == now:
            continue
        role = _COLUMN_ROLES.get(name)
        if (
            role is not None
            and saved_columns is not None
            and current_columns is not None
            and saved_columns.get(role) == current_columns.get(role)
        ):
            continue
        if name in _BOOLEAN_OPTIONS:
            differences.append(
                f"{flag} given (training: without it)"
                if now
                else f"no {flag} (training: with it)"
            )
        else:
            training_value = _show(name, before)
            if role is not None and before is None and saved_columns is not None:
                # The column that training detected.
                training_value = f"{saved_columns.get(role)!r}, detected"
            differences.append(
                f"{flag} {_show(name, now)} (training: {training_value})"
            )
    return differences


def _show(name: str, value: Any) -> str:
    if value is None:
        return "not given"
    if isinstance(value, float):
        # the shortest form, unless it would round the value
        short = f"{value:g}"
        return short if float(short) == value else repr(value)
    if name in ("text_column", "label_column"):
        return repr(value)
    return str(value)


def _review_hash(text: str, scheme: str = REVIEW_HASH_SCHEME) -> int:
    """Return the hash of one review, as ``scheme`` defines it."""
    if scheme == REVIEW_HASH_SCHEME:
        text = _normalized(text)
    return _collapsed_hash(text)


def _collapsed_hash(text: str) -> int:
    """Return the 64-bit BLAKE2b hash of a text with its whitespace collapsed."""
    collapsed = " ".join(text.split()).encode("utf-8", "surrogatepass")
    return int.from_bytes(hashlib.blake2b(collapsed, digest_size=8).digest(), "big")


def _normalized(text: str) -> str:
    """Return a review as the word tokenizer normalises it before splitting."""
    if text.isascii():
        from sentiment_lstm.text import normalize_ascii_review

        return normalize_ascii_review(text)
    normalizer = _review_normalizer()
    try:
        return normalizer.normalize_str(text)
    except (TypeError, UnicodeEncodeError):
        # A lone surrogate, which the tokenizers library cannot take, becomes
        # U+FFFD characters.
        repaired = text.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
        return normalizer.normalize_str(repaired)


@functools.cache
def _review_normalizer() -> Any:
    from sentiment_lstm.text import review_normalizer

    return review_normalizer()


def training_reviews_record(examples: Iterable[Example]) -> dict[str, Any]:
    """Return the record of the training reviews that ``training.json`` keeps."""
    hashes = np.unique(
        np.array([_review_hash(example.text) for example in examples], dtype=np.uint64)
    )
    return {
        "scheme": REVIEW_HASH_SCHEME,
        "count": int(len(hashes)),
        "hashes": base64.b64encode(hashes.astype(">u8").tobytes()).decode("ascii"),
    }


# Reviews of fewer words recur in unrelated sets of reviews ("Good app",
# "I love this app"), so a match among them is no evidence that two sets
# share reviews. Of the 999 newest Netflix app reviews, 140 matched one of
# the 3,000 older ones, and one match had 5 or more words.
MIN_COMPARED_WORDS = 5


def compared_reviews(examples: Iterable[Example]) -> list[Example]:
    """Return the examples of at least ``MIN_COMPARED_WORDS`` words.

    Words are counted after the normalisation that the hashes use, in which
    a zero-width space separates words too.
    """
    return [
        example
        for example in examples
        if len(_normalized(example.text).split(maxsplit=MIN_COMPARED_WORDS - 1))
        >= MIN_COMPARED_WORDS
    ]


def count_training_reviews(examples: Iterable[Example], record: object) -> int | None:
    """Return how many of ``examples`` are among the recorded training reviews.

    Every example counts; callers pass :func:`compared_reviews` to leave out
    short ones. Returns None when ``record`` is missing or not one that
    :func:`training_reviews_record` writes, as in models of earlier builds.
    """
    recorded = _recorded_hashes(record)
    if recorded is None:
        return None
    scheme, trained = recorded
    hashes = np.array(
        [_review_hash(example.text, scheme) for example in examples], dtype=np.uint64
    )
    return int(np.isin(hashes, trained).sum())


def training_overlap(
    examples: Iterable[Example], record: object
) -> tuple[int, int | None]:
    """Return how many examples are compared, and how many of those were trained on.

    Gives ``len(compared_reviews(examples))`` and
    :func:`count_training_reviews` of those, normalising each review once.
    """
    recorded = _recorded_hashes(record)
    scheme = None if recorded is None else recorded[0]
    compared = 0
    hashes = []
    for example in examples:
        text = _normalized(example.text)
        if len(text.split(maxsplit=MIN_COMPARED_WORDS - 1)) < MIN_COMPARED_WORDS:
            continue
        compared += 1
        if scheme is not None:
            hashes.append(
                _collapsed_hash(text if scheme == REVIEW_HASH_SCHEME else example.text)
            )
    if recorded is None:
        return compared, None
    return compared, int(np.isin(np.array(hashes, dtype=np.uint64), recorded[1]).sum())


def _recorded_hashes(record: object) -> tuple[str, np.ndarray] | None:
    """Return the scheme and hashes of a training reviews record, if it is one."""
    if not isinstance(record, dict):
        return None
    scheme = record.get("scheme")
    if scheme not in (REVIEW_HASH_SCHEME, _COLLAPSED_HASH_SCHEME):
        return None
    try:
        raw = base64.b64decode(record["hashes"], validate=True)
    except (KeyError, TypeError, ValueError, binascii.Error):
        return None
    if len(raw) % 8:
        return None
    return scheme, np.frombuffer(raw, dtype=">u8").astype(np.uint64)
