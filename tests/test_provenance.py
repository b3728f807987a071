import base64
import hashlib

import pytest

from sentiment_lstm.data import Example
from sentiment_lstm.provenance import (
    compared_reviews,
    count_training_reviews,
    training_overlap,
    training_reviews_record,
)


def examples(*texts: str) -> list[Example]:
    return [Example(text, 1, "reviews.txt", line) for line, text in enumerate(texts)]


def test_training_record_counts_unique_reviews():
    record = training_reviews_record(examples("great fun", "dull", "great fun"))

    assert record["count"] == 2
    assert len(base64.b64decode(record["hashes"])) == 16


def test_count_ignores_what_tokens_ignore():
    record = training_reviews_record(examples("great fun", "it's a dull film"))

    seen = [
        count_training_reviews(examples(text), record)
        for text in (
            " great\tfun ",
            "GREAT Fun",
            "great<br />fun",
            "it\u2019s a  dull\nfilm",
            "\uff29t's a dull film",
            "great fun!",
            "it is a dull film",
        )
    ]

    assert record["scheme"].startswith("blake2b-64 of the text normalized")
    assert seen == [1, 1, 1, 1, 1, 0, 0]


def test_count_with_record_of_earlier_builds():
    # Earlier builds hashed the text with its whitespace collapsed, nothing more.
    scheme = "blake2b-64 of the text with whitespace collapsed"
    digest = hashlib.blake2b(b"great fun", digest_size=8).digest()
    record = {"scheme": scheme, "count": 1, "hashes": base64.b64encode(digest).decode()}

    seen = count_training_reviews(examples(" great\tfun ", "Great fun"), record)

    assert seen == 1


def test_count_repeated_reviews_each_time():
    record = training_reviews_record(examples("good"))

    assert count_training_reviews(examples("good", "good", "bad"), record) == 2


@pytest.mark.parametrize(
    "record",
    [
        None,
        "text",
        {},
        {"scheme": "md5", "hashes": ""},
        {"scheme": "blake2b-64 of the text with whitespace collapsed"},
        {"scheme": "blake2b-64 of the text with whitespace collapsed", "hashes": "*"},
        {"scheme": "blake2b-64 of the text with whitespace collapsed", "hashes": 5},
        # 3 bytes, not a whole 8-byte hash
        {
            "scheme": "blake2b-64 of the text with whitespace collapsed",
            "hashes": "AAAA",
        },
    ],
    ids=[
        "missing",
        "string",
        "empty",
        "other scheme",
        "no hashes",
        "not base64",
        "not a string",
        "partial hash",
    ],
)
def test_count_without_usable_record(record):
    assert count_training_reviews(examples("good"), record) is None


def test_compared_reviews_have_five_words():
    reviews = examples(
        "Good",
        "I love this app",
        "a b c d e",
        " one  two three four five ",
        "one\u200btwo\u200bthree\u200bfour\u200bfive",
        "one<br />two<br />three<br />four<br />five",
    )

    assert [example.text for example in compared_reviews(reviews)] == [
        "a b c d e",
        " one  two three four five ",
        "one\u200btwo\u200bthree\u200bfour\u200bfive",
        "one<br />two<br />three<br />four<br />five",
    ]


@pytest.mark.parametrize("earlier_scheme", [False, True])
def test_overlap_matches_compared_and_count(earlier_scheme):
    trained = examples(
        "a great fun film with heart",
        "it\u2019s a dull film of no wit",
        "Caf\u00e9 scenes drag on for an hour",
    )
    record = training_reviews_record(trained)
    if earlier_scheme:
        digests = b"".join(
            hashlib.blake2b(
                " ".join(example.text.split()).encode(), digest_size=8
            ).digest()
            for example in trained
        )
        record = {
            "scheme": "blake2b-64 of the text with whitespace collapsed",
            "count": 3,
            "hashes": base64.b64encode(digests).decode(),
        }
    evaluated = examples(
        "A GREAT fun film with  heart",
        "it's a dull film of no wit",
        "caf\u00e9 scenes drag on for an hour",
        "Caf\u00e9 scenes drag on for an hour",
        "short one",
        "great<br />fun film with heart",
    )
    compared = compared_reviews(evaluated)

    assert training_overlap(evaluated, record) == (
        len(compared),
        count_training_reviews(compared, record),
    )
    assert training_overlap(evaluated, None) == (len(compared), None)
