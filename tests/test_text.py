"""Tests for sentiment_lstm.text: normalisation, tokenization and vocabulary."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tokenizers import Tokenizer

from sentiment_lstm import text as text_module
from sentiment_lstm.text import (
    PAD_INDEX,
    PAD_TOKEN,
    UNK_INDEX,
    UNK_TOKEN,
    PackedTokenIds,
    TextEncoder,
    TextEncoderConfig,
    TextEncoderError,
)

SRC_DIR = Path(__file__).resolve().parents[1] / "src"

TRAINING_TEXTS = [
    "A great film, isn't it? I loved it!",
    "The plot doesn't work... and the acting is awful.",
    "Don't watch it. It's boring, it can't hold attention and it won't end.",
    "Loved it 😍👍🏽 10/10",
    "Ｆｕｌｌ ｗｉｄｔｈ ﬁlm<br />with a line break",
    "Отличный фильм 很好看",
]

# Unusual input: control characters, lone surrogates, combining marks,
# prepended marks, zero-width characters, right-to-left text, emoji sequences
# and very long texts.
ODD_TEXTS = [
    "",
    " ",
    "\t\n\r ",
    "<br />",
    "<BR><br/>",
    "\x00",
    "a\x00b",
    "\x1c\x1d\x1e\x1f",
    "\ud800",
    "lone \udfff surrogate",
    "\ud83d\ude00 split pair",
    " \u0301x",
    "\u0600 x",
    "zero\u200bwidth\u200djoiner",
    "مرحبا بالعالم",
    "👨‍👩‍👧 🇫🇷 ❤️ 👍🏽",
    "ＡＢＣ ﬁ ﬂ …",
    "isn’t ISNʼT isn＇t",
    "“quoted” ‘single’",
    "'''''",
    "............",
    "a" * 10_000,
    "word " * 1_000,
    "\U0010ffff\ufffd\ufeff",
]


def _encoder(max_length: int = 400, **kwargs) -> TextEncoder:
    return TextEncoder.build(
        TRAINING_TEXTS, TextEncoderConfig(max_length=max_length, **kwargs)
    )


def _save_valid(directory: Path) -> TextEncoder:
    encoder = _encoder()
    encoder.save(directory)
    return encoder


# Normalisation and tokenization


@pytest.mark.parametrize(
    "text", ["isn't", "isn’t", "ISN'T", "Isn‘t", "isnʼt", "isn＇t", "isn′t"]
)
def test_contraction_spellings_equal(text):
    assert _encoder().tokenize(text) == ["isn't"]


def test_contraction_ids_equal():
    encoder = _encoder()
    ids = encoder.encode("isn't")
    assert encoder.encode("ISN’T") == ids
    assert ids != [UNK_INDEX]


@pytest.mark.parametrize(
    "word", ["don't", "can't", "won't", "it's", "doesn't", "o'clock", "rock'n'roll"]
)
def test_contractions_kept_whole(word):
    assert _encoder().tokenize(f"so {word} here") == ["so", word, "here"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("great!", ["great", "!"]),
        ("great!!!", ["great", "!", "!", "!"]),
        ("wow...", ["wow", "..."]),
        ("wait.", ["wait", "."]),
        ("(fun), right?", ["(", "fun", ")", ",", "right", "?"]),
        ("10/10", ["10", "/", "10"]),
        ("co-writer", ["co", "-", "writer"]),
        ("'quoted' students'", ["'", "quoted", "'", "students", "'"]),
        ('"conan"', ['"', "conan", '"']),
        ("21st century's", ["21st", "century's"]),
    ],
)
def test_punctuation_split(text, expected):
    assert _encoder().tokenize(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("ＧＲＥＡＴ", ["great"]),
        ("ﬁlm", ["film"]),
        ("ﬂawless", ["flawless"]),
        ("wait…", ["wait", "..."]),
        ("１０", ["10"]),
        ("cafe\u0301", ["caf\u00e9"]),
    ],
)
def test_nfkc_normalisation(text, expected):
    assert _encoder().tokenize(text) == expected


def test_curly_double_quotes():
    assert _encoder().tokenize("“good”") == ['"', "good", '"']


@pytest.mark.parametrize("separator", ["<br />", "<br/>", "<br>", "<BR />", "<br  />"])
def test_html_line_break_removed(separator):
    assert _encoder().tokenize(f"good{separator}bad") == ["good", "bad"]


def test_lowercase_disabled():
    encoder = TextEncoder.build(["Good good"], TextEncoderConfig(lowercase=False))
    assert encoder.tokenize("Good") == ["Good"]
    assert encoder.vocabulary == [PAD_TOKEN, UNK_TOKEN, "Good", "good"]


def test_whitespace_variants_split():
    text = "a\tb\nc\r\nd\u00a0e\u3000f  g"
    assert _encoder().tokenize(text) == ["a", "b", "c", "d", "e", "f", "g"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("gre\u00adat film", ["great", "film"]),
        ("great\u200bfilm", ["great", "film"]),
        ("word\u2060joiner", ["wordjoiner"]),
        ("\ufeffgreat", ["great"]),
        ("\u200b\u00ad\ufeff", []),
        (
            "\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645",
            # the zero-width non-joiner is kept, as a token of its own
            ["\u0645\u06cc", "\u200c", "\u062e\u0648\u0627\u0647\u0645"],
        ),
    ],
)
def test_invisible_characters(text, expected):
    assert _encoder().tokenize(text) == expected


def test_emoji_kept():
    encoder = _encoder()
    assert encoder.tokenize("loved it 😍👍🏽") == ["loved", "it", "😍", "👍🏽"]
    assert "😍" in encoder.vocabulary
    assert UNK_INDEX not in encoder.encode("😍👍🏽")


def test_emoji_sequences_single_tokens():
    tokens = _encoder().tokenize("👨‍👩‍👧🇫🇷❤️")
    assert tokens == ["👨‍👩‍👧", "🇫🇷", "❤️"]


def test_non_latin_scripts_kept():
    encoder = _encoder()
    assert encoder.tokenize("Отличный фильм") == ["отличный", "фильм"]
    assert encoder.tokenize("很好看") == ["很", "好", "看"]
    assert encoder.tokenize("مرحبا بالعالم") == ["مرحبا", "بالعالم"]
    assert UNK_INDEX not in encoder.encode("отличный 很")


def test_prepended_mark_keeps_space_out():
    assert _encoder().tokenize("\u0600 x") == ["\u0600", "x"]


def test_control_characters_kept():
    assert _encoder().tokenize("a\x00b") == ["a", "\x00", "b"]


def test_lone_surrogate_replaced():
    encoder = _encoder()
    assert encoder.tokenize("bad \ud800 text") == ["bad", "\ufffd", "text"]
    assert encoder.encode("great \ud800") == [encoder.vocabulary.index("great"), 1]


def test_surrogate_warning_logged_once(monkeypatch, caplog):
    monkeypatch.setattr(text_module, "_surrogate_warning_logged", False)
    encoder = _encoder()
    encoder.encode("one \ud800")
    encoder.encode_batch(["two \ud800", "fine"])
    warnings = [record for record in caplog.records if record.levelname == "WARNING"]
    assert len(warnings) == 1
    assert "U+FFFD" in warnings[0].getMessage()


def test_split_surrogate_pair_joined():
    assert _encoder().tokenize("\ud83d\ude00") == ["😀"]


# Encoding


def test_unknown_word_maps_to_unk():
    encoder = _encoder()
    great = encoder.vocabulary.index("great")
    assert encoder.encode("great zyzzyva") == [great, UNK_INDEX]


def test_pad_never_produced():
    encoder = _encoder()
    assert PAD_INDEX not in encoder.encode("<pad> <unk> pad")


def test_special_token_text_is_plain_text():
    assert _encoder().tokenize("<unk>") == ["<", "unk", ">"]


@pytest.mark.parametrize("text", ["", " ", "\n\t ", "<br />", "<br><br/>"])
def test_empty_text_encodes_empty(text):
    encoder = _encoder()
    assert encoder.encode(text) == []
    assert encoder.encode_batch([text]) == [[]]
    assert encoder.tokenize(text) == []


def test_truncation_keeps_head():
    encoder = _encoder(max_length=3)
    ids = encoder.encode("great film loved plot acting")
    expected = [encoder.vocabulary.index(word) for word in ("great", "film", "loved")]
    assert ids == expected


def test_truncation_batch_equal():
    encoder = _encoder(max_length=5)
    texts = ["it " * 3, "it " * 5, "it " * 6, "great film loved plot acting boring it"]
    assert encoder.encode_batch(texts) == [encoder.encode(text) for text in texts]
    assert [len(ids) for ids in encoder.encode_batch(texts)] == [3, 5, 5, 5]


def test_tokenize_does_not_truncate():
    encoder = _encoder(max_length=2)
    assert len(encoder.tokenize("a b c d")) == 4


def test_encode_batch_matches_encode_odd():
    encoder = _encoder(max_length=50)
    batch = encoder.encode_batch(ODD_TEXTS)
    assert len(batch) == len(ODD_TEXTS)
    for text, ids in zip(ODD_TEXTS, batch, strict=True):
        assert ids == encoder.encode(text), ascii(text[:40])


def test_encode_batch_across_chunks():
    encoder = _encoder(max_length=4)
    texts = [f"great film {index} it's" for index in range(4100)]
    texts[4099] = "great \ud800 film"
    batch = encoder.encode_batch(texts)
    assert len(batch) == len(texts)
    assert batch == [encoder.encode(text) for text in texts]


def test_encode_batch_accepts_tuple():
    encoder = _encoder()
    assert encoder.encode_batch(("great", "film")) == encoder.encode_batch(
        ["great", "film"]
    )


def test_encode_batch_empty_list():
    assert _encoder().encode_batch([]) == []


def test_encode_batch_rejects_str():
    with pytest.raises(TypeError, match="single str"):
        _encoder().encode_batch("great film")


def test_encode_batch_rejects_none_item():
    with pytest.raises(TypeError, match="index 1"):
        _encoder().encode_batch(["ok", None])


def test_encode_rejects_bytes():
    with pytest.raises(TypeError, match="bytes"):
        _encoder().encode(b"great")


_ENCODER_FOR_PROPERTIES = TextEncoder.build(TRAINING_TEXTS, TextEncoderConfig(7))
# Unicode White_Space characters: str.isspace() also counts U+001C..U+001F,
# which are control characters that the tokenizer keeps as tokens.
_NOT_WHITE_SPACE = set("\x1c\x1d\x1e\x1f")


def _is_white_space(character: str) -> bool:
    return character.isspace() and character not in _NOT_WHITE_SPACE


@settings(max_examples=300, deadline=None)
@given(st.lists(st.text(max_size=60), max_size=8))
def test_batch_equals_encode_property(texts):
    encoder = _ENCODER_FOR_PROPERTIES
    assert encoder.encode_batch(texts) == [encoder.encode(text) for text in texts]


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=80))
def test_tokens_cover_all_non_space(text):
    encoder = _ENCODER_FOR_PROPERTIES
    normalised = encoder._tokenizer.normalizer.normalize_str(text)
    tokens = encoder.tokenize(text)
    expected = "".join(ch for ch in normalised if not _is_white_space(ch))
    assert "".join(tokens) == expected
    assert all(token for token in tokens)
    assert not any(_is_white_space(ch) for token in tokens for ch in token)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=80))
def test_encode_matches_tokenize(text):
    encoder = _ENCODER_FOR_PROPERTIES
    index = {token: position for position, token in enumerate(encoder.vocabulary)}
    tokens = encoder.tokenize(text)[: encoder.config.max_length]
    expected = [index.get(token, UNK_INDEX) for token in tokens]
    assert encoder.encode(text) == expected


# Characters that the normaliser's rules touch in ASCII text: HTML line
# breaks in any case, every ASCII whitespace and a few that are not.
_ASCII_EDGES = st.lists(
    st.sampled_from(
        list("<>/brBR aZ09'\"`\t\n\x0b\x0c\r\x1c\x1f\x00\x7f")
        + ["<br>", "<BR />", "<br\t/>", "<br/ >"]
    ),
    max_size=30,
).map("".join)


@settings(max_examples=500, deadline=None)
@given(st.one_of(_ASCII_EDGES, st.text(alphabet=st.characters(max_codepoint=127))))
def test_ascii_review_normalised_as_normaliser(text):
    expected = text_module.review_normalizer().normalize_str(text)

    assert text_module.normalize_ascii_review(text) == expected


# Vocabulary


def test_vocabulary_order():
    encoder = TextEncoder.build(["b a c b", "c b d"])
    assert encoder.vocabulary == [PAD_TOKEN, UNK_TOKEN, "b", "c", "a", "d"]


def test_vocabulary_independent_of_text_order():
    first = _encoder()
    second = TextEncoder.build(reversed(TRAINING_TEXTS), first.config)
    assert first.vocabulary == second.vocabulary


def test_build_accepts_generator():
    encoder = TextEncoder.build(text for text in ["x y", "y"])
    assert encoder.vocabulary == [PAD_TOKEN, UNK_TOKEN, "y", "x"]


def test_min_frequency_filters():
    config = TextEncoderConfig(min_frequency=2)
    encoder = TextEncoder.build(["a a b c c c", "d"], config)
    assert encoder.vocabulary == [PAD_TOKEN, UNK_TOKEN, "c", "a"]


def test_max_vocab_size_counts_specials():
    config = TextEncoderConfig(max_vocab_size=4)
    encoder = TextEncoder.build(["a a b c c c d"], config)
    assert encoder.vocabulary == [PAD_TOKEN, UNK_TOKEN, "c", "a"]
    assert encoder.vocab_size == 4


def test_max_vocab_size_two_keeps_specials():
    encoder = TextEncoder.build(["a b"], TextEncoderConfig(max_vocab_size=2))
    assert encoder.vocabulary == [PAD_TOKEN, UNK_TOKEN]
    assert encoder.encode("a b") == [UNK_INDEX, UNK_INDEX]


def test_build_no_texts():
    encoder = TextEncoder.build([])
    assert encoder.vocabulary == [PAD_TOKEN, UNK_TOKEN]
    assert encoder.encode("anything") == [UNK_INDEX]


def test_build_rejects_str():
    with pytest.raises(TypeError, match="single str"):
        TextEncoder.build("a single review")


def test_build_rejects_non_str_item():
    with pytest.raises(TypeError, match="index 2"):
        TextEncoder.build(["a", "b", 3])


def test_properties():
    encoder = _encoder()
    assert encoder.pad_index == PAD_INDEX == 0
    assert encoder.unk_index == UNK_INDEX == 1
    assert encoder.vocab_size == len(encoder.vocabulary)
    assert encoder.config == TextEncoderConfig()


def test_vocabulary_is_copy():
    encoder = _encoder()
    encoder.vocabulary.append("extra")
    assert "extra" not in encoder.vocabulary


def test_decode_round_trip():
    encoder = _encoder()
    assert encoder.decode(encoder.encode("Great film zyzzyva!")) == [
        "great",
        "film",
        UNK_TOKEN,
        "!",
    ]


def test_decode_keeps_padding():
    assert _encoder().decode([0, 1]) == [PAD_TOKEN, UNK_TOKEN]


@pytest.mark.parametrize("bad_id", [-1, 10_000])
def test_decode_rejects_out_of_range(bad_id):
    with pytest.raises(TextEncoderError, match=str(bad_id)):
        _encoder().decode([2, bad_id])


def test_decode_rejects_float():
    with pytest.raises(TextEncoderError, match="integer"):
        _encoder().decode([2.0])


def test_decode_accepts_numpy():
    numpy = pytest.importorskip("numpy")
    encoder = _encoder()
    assert encoder.decode(numpy.array([0, 1], dtype=numpy.int64)) == [
        PAD_TOKEN,
        UNK_TOKEN,
    ]


# Constructor and config checks


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_length": 0},
        {"max_length": True},
        {"max_length": 2.5},
        {"min_frequency": 0},
        {"max_vocab_size": 1},
        {"lowercase": "yes"},
    ],
)
def test_config_rejects_invalid(kwargs):
    with pytest.raises(TextEncoderError, match=next(iter(kwargs))):
        TextEncoderConfig(**kwargs)


@pytest.mark.parametrize(
    "vocabulary",
    [
        ["<unk>", "<pad>", "a"],
        ["<pad>"],
        ["<pad>", "<unk>", "a", "a"],
        ["<pad>", "<unk>", ""],
        ["<pad>", "<unk>", 3],
        "<pad><unk>",
    ],
)
def test_init_rejects_bad_vocabulary(vocabulary):
    with pytest.raises(TextEncoderError):
        TextEncoder(vocabulary, TextEncoderConfig())


def test_init_rejects_oversized_vocabulary():
    with pytest.raises(TextEncoderError, match="max_vocab_size"):
        TextEncoder(["<pad>", "<unk>", "a"], TextEncoderConfig(max_vocab_size=2))


def test_init_from_vocabulary():
    encoder = TextEncoder(["<pad>", "<unk>", "good"], TextEncoderConfig())
    assert encoder.encode("Good bad") == [2, 1]


# Saving and loading


def test_save_writes_both_files(tmp_path):
    _save_valid(tmp_path)
    assert (tmp_path / "tokenizer.json").is_file()
    assert (tmp_path / "text_encoder.json").is_file()


def test_save_creates_directory(tmp_path):
    target = tmp_path / "nested" / "encoder"
    _save_valid(target)
    assert (target / "tokenizer.json").is_file()


def test_save_load_round_trip(tmp_path):
    encoder = _save_valid(tmp_path)
    loaded = TextEncoder.load(tmp_path)
    texts = TRAINING_TEXTS + ODD_TEXTS
    assert loaded.encode_batch(texts) == encoder.encode_batch(texts)
    assert loaded.vocabulary == encoder.vocabulary
    assert loaded.config == encoder.config


def test_save_load_round_trip_config(tmp_path):
    config = TextEncoderConfig(
        max_length=3, min_frequency=2, max_vocab_size=5, lowercase=False
    )
    encoder = TextEncoder.build(["A a b b B c c", "a b c"], config)
    encoder.save(tmp_path)
    loaded = TextEncoder.load(tmp_path)
    assert loaded.config == config
    assert loaded.encode("a b c A") == encoder.encode("a b c A")


def test_load_accepts_str_path(tmp_path):
    _save_valid(tmp_path)
    assert TextEncoder.load(str(tmp_path)).vocab_size > 2


def test_tokenizer_file_standalone(tmp_path):
    encoder = _save_valid(tmp_path)
    plain = Tokenizer.from_file(str(tmp_path / "tokenizer.json"))
    for text in TRAINING_TEXTS:
        assert plain.encode(text).ids == encoder.encode(text)


def test_config_file_contents(tmp_path):
    _save_valid(tmp_path)
    metadata = json.loads((tmp_path / "text_encoder.json").read_text("utf-8"))
    assert metadata["format_version"] == 1
    assert metadata["config"]["max_length"] == 400


def test_save_leaves_no_temporary_files(tmp_path):
    _save_valid(tmp_path)
    assert sorted(path.name for path in tmp_path.iterdir()) == [
        "text_encoder.json",
        "tokenizer.json",
    ]


@pytest.mark.parametrize("name", ["tokenizer.json", "text_encoder.json"])
def test_load_missing_file(tmp_path, name):
    _save_valid(tmp_path)
    (tmp_path / name).unlink()
    with pytest.raises(TextEncoderError, match=name) as caught:
        TextEncoder.load(tmp_path)
    assert "not found" in str(caught.value)


def test_load_missing_directory(tmp_path):
    with pytest.raises(TextEncoderError, match="not found"):
        TextEncoder.load(tmp_path / "absent")


@pytest.mark.parametrize("name", ["tokenizer.json", "text_encoder.json"])
def test_load_corrupt_json(tmp_path, name):
    _save_valid(tmp_path)
    (tmp_path / name).write_text('{"truncated": ', encoding="utf-8")
    with pytest.raises(TextEncoderError, match=name):
        TextEncoder.load(tmp_path)


def test_load_binary_garbage(tmp_path):
    _save_valid(tmp_path)
    (tmp_path / "tokenizer.json").write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(TextEncoderError, match="tokenizer.json"):
        TextEncoder.load(tmp_path)


def test_load_not_a_tokenizer(tmp_path):
    _save_valid(tmp_path)
    (tmp_path / "tokenizer.json").write_text('{"model": 3}', encoding="utf-8")
    with pytest.raises(TextEncoderError, match="tokenizer.json"):
        TextEncoder.load(tmp_path)


def _edit_json(path: Path, edit) -> None:
    document = json.loads(path.read_text(encoding="utf-8"))
    edit(document)
    path.write_text(json.dumps(document), encoding="utf-8")


def test_load_swapped_special_tokens(tmp_path):
    _save_valid(tmp_path)

    def swap(document):
        vocab = document["model"]["vocab"]
        vocab["<pad>"], vocab["<unk>"] = vocab["<unk>"], vocab["<pad>"]

    _edit_json(tmp_path / "tokenizer.json", swap)
    with pytest.raises(TextEncoderError, match="tokenizer.json") as caught:
        TextEncoder.load(tmp_path)
    assert "<pad>" in str(caught.value)


def test_load_vocabulary_gap(tmp_path):
    _save_valid(tmp_path)

    def add_gap(document):
        document["model"]["vocab"]["zzz"] = 100_000

    _edit_json(tmp_path / "tokenizer.json", add_gap)
    with pytest.raises(TextEncoderError, match="without gaps"):
        TextEncoder.load(tmp_path)


def test_load_wrong_format_version(tmp_path):
    _save_valid(tmp_path)

    def bump(document):
        document["format_version"] = 99

    _edit_json(tmp_path / "text_encoder.json", bump)
    with pytest.raises(TextEncoderError, match="format_version 99") as caught:
        TextEncoder.load(tmp_path)
    assert "text_encoder.json" in str(caught.value)


def test_load_unknown_config_key(tmp_path):
    _save_valid(tmp_path)

    def add_key(document):
        document["config"]["vocab_file"] = "x"

    _edit_json(tmp_path / "text_encoder.json", add_key)
    with pytest.raises(TextEncoderError, match="vocab_file"):
        TextEncoder.load(tmp_path)


def test_load_invalid_config_value(tmp_path):
    _save_valid(tmp_path)

    def break_value(document):
        document["config"]["max_length"] = -5

    _edit_json(tmp_path / "text_encoder.json", break_value)
    with pytest.raises(TextEncoderError, match="text_encoder.json"):
        TextEncoder.load(tmp_path)


def test_load_truncation_mismatch(tmp_path):
    _save_valid(tmp_path)

    def shorten(document):
        document["config"]["max_length"] = 10

    _edit_json(tmp_path / "text_encoder.json", shorten)
    with pytest.raises(TextEncoderError, match="truncation"):
        TextEncoder.load(tmp_path)


def test_load_padding_rejected(tmp_path):
    _save_valid(tmp_path)
    tokenizer = Tokenizer.from_file(str(tmp_path / "tokenizer.json"))
    tokenizer.enable_padding(pad_id=0, pad_token=PAD_TOKEN, length=400)
    tokenizer.save(str(tmp_path / "tokenizer.json"))
    with pytest.raises(TextEncoderError, match="padding"):
        TextEncoder.load(tmp_path)


def test_load_changed_pipeline_warns(tmp_path, caplog):
    _save_valid(tmp_path)

    def drop_lowercase(document):
        steps = document["normalizer"]["normalizers"]
        document["normalizer"]["normalizers"] = [
            step for step in steps if step["type"] != "Lowercase"
        ]

    _edit_json(tmp_path / "tokenizer.json", drop_lowercase)
    loaded = TextEncoder.load(tmp_path)
    assert "normalizer differs" in caplog.text
    assert loaded.tokenize("Great") == ["Great"]


def test_load_unchanged_pipeline_silent(tmp_path, caplog):
    _save_valid(tmp_path)
    TextEncoder.load(tmp_path)
    assert "differs" not in caplog.text


# Imports


def test_import_without_torch():
    code = (
        "import sys\n"
        "import sentiment_lstm.text\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n"
    )
    environment = dict(os.environ, PYTHONPATH=str(SRC_DIR))
    result = subprocess.run(
        [sys.executable, "-c", code],
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr


# The ASCII shortcut must give exactly what the tokenizers pipeline gives.

_ASCII_PIECES = [
    "a",
    "Z",
    "isn't",
    "don't",
    "'",
    "''",
    "rock'n'roll",
    "x'",
    "'y",
    ".",
    "..",
    "...",
    "....",
    "3.5",
    "1,000",
    "<br>",
    "<BR />",
    "<br/>",
    "<Br\t/>",
    "<br",
    "br>",
    "<b>",
    "<",
    ">",
    "/",
    "_",
    "-",
    "--",
    "!?",
    "\\",
    "@#$%^&*()",
    " ",
    "  ",
    "\t",
    "\n",
    "\r\n",
    "\x0b",
    "\x0c",
    "\x00",
    "\x1c",
    "\x7f",
    "word",
    "WORD",
    "w0rd",
    "o'clock",
    "rt",
    "the",
    "film",
]


def _through_tokenizer(encoder: TextEncoder, texts: list[str]) -> list[list[int]]:
    return encoder._encode_with_tokenizer(texts)


def _packed(encoder: TextEncoder, texts: list[str]) -> list[list[int]]:
    """encode_packed() through its NumPy route, however few the texts."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(text_module, "_PACKED_MIN_TEXTS", 0)
        return list(encoder.encode_packed(texts))


@pytest.mark.parametrize("lowercase", [True, False])
def test_ascii_shortcut_every_character(lowercase):
    texts = []
    for code in range(128):
        character = chr(code)
        texts += [character, f"a{character}b", f"it{character}s", f"<br{character}>"]
        texts += [f"..{character}..", f"{character}'{character}", f"x {character} y"]
    encoder = TextEncoder.build(
        texts + TRAINING_TEXTS, TextEncoderConfig(lowercase=lowercase)
    )
    assert encoder._ascii is not None
    assert encoder.encode_batch(texts) == _through_tokenizer(encoder, texts)
    assert [encoder.encode(text) for text in texts] == _through_tokenizer(
        encoder, texts
    )
    assert _packed(encoder, texts) == _through_tokenizer(encoder, texts)


@settings(max_examples=500, deadline=None)
@given(st.lists(st.sampled_from(_ASCII_PIECES), max_size=30), st.booleans())
def test_ascii_shortcut_property(pieces, lowercase):
    text = "".join(pieces)
    encoder = _ENCODER_FOR_PROPERTIES if lowercase else _ENCODER_CASED
    assert encoder.encode(text) == _through_tokenizer(encoder, [text])[0]
    normalised = encoder._tokenizer.normalizer.normalize_str(text)
    pre_tokenizer = encoder._tokenizer.pre_tokenizer
    expected = [token for token, _ in pre_tokenizer.pre_tokenize_str(normalised)]
    assert encoder.tokenize(text) == expected


_ENCODER_CASED = TextEncoder.build(
    TRAINING_TEXTS + ["Word WORD word"], TextEncoderConfig(7, lowercase=False)
)


def test_ascii_shortcut_truncates():
    encoder = _encoder(max_length=3)
    assert (
        encoder.encode("one two three four")
        == _through_tokenizer(encoder, ["one two three four"])[0]
    )
    assert len(encoder.encode("one two three four")) == 3


def test_ascii_shortcut_real_reviews(rt_polarity_dir, netflix_csv):
    texts = []
    for name in ("rt-polarity.pos", "rt-polarity.neg"):
        raw = (rt_polarity_dir / name).read_bytes()
        texts += [line.decode("cp1252") for line in raw.split(b"\n")]
    with open(netflix_csv, encoding="utf-8", newline="") as stream:
        texts += [row["content"] for row in csv.DictReader(stream)]
    encoder = TextEncoder.build(texts[::2], TextEncoderConfig(min_frequency=2))
    ascii_texts = [text for text in texts if text.isascii()]
    assert len(ascii_texts) > 10_000
    assert encoder.encode_batch(texts) == _through_tokenizer(encoder, texts)
    assert _packed(encoder, texts) == _through_tokenizer(encoder, texts)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.lists(st.sampled_from(_ASCII_PIECES + ["é", "日本", "’"]), max_size=12).map(
            "".join
        ),
        max_size=8,
    ),
    st.booleans(),
)
def test_encode_packed_property(texts, lowercase):
    encoder = _ENCODER_FOR_PROPERTIES if lowercase else _ENCODER_CASED
    assert _packed(encoder, texts) == _through_tokenizer(encoder, texts)


@pytest.mark.parametrize(
    "texts",
    [
        ["a<br", ">b"],
        ["a<br", "/>b"],
        ["<BR", " />"],
        ["x..", "..y"],
        ["it'", "s"],
        ["it", "'s"],
        ["a", "", " ", "\n", "b"],
        ["\x00", "a\x00b", "\x00"],
        [""],
        ["   "],
    ],
)
def test_encode_packed_texts_stay_apart(texts):
    encoder = _encoder()
    assert _packed(encoder, texts) == [encoder.encode(text) for text in texts]


def test_encode_packed_small_groups(monkeypatch):
    # As long as the longest text, so that no text is encoded from prefixes.
    monkeypatch.setattr(text_module, "_PACKED_GROUP_CHARS", 20)
    calls = []
    encode_group = text_module._AsciiShortcut._encode_group

    def recording_encode_group(self, group, sizes, max_tokens=None):
        calls.append(len(group))
        return encode_group(self, group, sizes, max_tokens)

    monkeypatch.setattr(
        text_module._AsciiShortcut, "_encode_group", recording_encode_group
    )
    encoder = _encoder(max_length=5)
    texts = ["a b", "", "great film, isn't it", "x", "...", "it's"] * 5
    assert list(encoder.encode_packed(texts)) == encoder.encode_batch(texts)
    assert len(calls) > 5
    assert sum(calls) == len(texts)


@pytest.mark.parametrize(
    "text, prefix_suffices",
    [
        ("great film " * 400, True),
        ("!" * 5000, True),
        ("it's a film<br />of note... " * 300, True),
        ("a" * 3000 + " b" * 50, False),
        (" " * 2000 + "late start " * 100, False),
    ],
)
def test_encode_packed_long_text_from_prefix(monkeypatch, text, prefix_suffices):
    """A text longer than a group is encoded from prefixes that grow."""
    monkeypatch.setattr(text_module, "_PACKED_GROUP_CHARS", 64)
    encoder = _encoder(max_length=40)
    groups = []
    encode_group = text_module._AsciiShortcut._encode_group

    def recording_encode_group(self, group, sizes, max_tokens=None):
        groups.append(int(sizes.sum()))
        return encode_group(self, group, sizes, max_tokens)

    monkeypatch.setattr(
        text_module._AsciiShortcut, "_encode_group", recording_encode_group
    )
    texts = [text, "short one"] * 12

    assert list(encoder.encode_packed(texts)) == encoder.encode_batch(texts)
    assert (max(groups) < len(text)) == prefix_suffices


def test_encode_packed_truncates():
    encoder = _encoder(max_length=3)
    texts = ["one two three four five", "Отличный фильм a b c d", "a b"] * 10
    packed = encoder.encode_packed(texts)
    assert packed.lengths.tolist() == [3, 3, 2] * 10
    assert list(packed) == encoder.encode_batch(texts)
    assert list(encoder.encode_packed(texts[:3])) == encoder.encode_batch(texts[:3])


_KEY_ALPHABET = "ab'.\x00~"


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.text(alphabet=_KEY_ALPHABET, min_size=1, max_size=19),
        max_size=40,
        unique=True,
    ),
    st.lists(st.text(alphabet=_KEY_ALPHABET, min_size=1, max_size=19), max_size=40),
)
def test_token_keys_match_a_dictionary(vocabulary, others):
    """Tokens that differ in one byte or in length get their own ids."""
    table = {token.encode(): 10 + index for index, token in enumerate(vocabulary)}
    keys = text_module._TokenKeys(list(table), list(table.values()))
    tokens = [token.encode() for token in vocabulary + others]
    chars = np.frombuffer(b"".join(tokens), dtype=np.uint8)
    lengths = np.array([len(token) for token in tokens], dtype=np.int64)
    ids = keys.lookup(chars, np.cumsum(lengths) - lengths, lengths)
    expected = [
        table.get(token, UNK_INDEX) if len(token) <= 15 else UNK_INDEX
        for token in tokens
    ]
    assert ids.tolist() == expected


def test_token_keys_with_long_chains():
    """A table of many similar tokens needs several probes for some of them."""
    vocabulary = [f"w{number:05d}".encode() for number in range(5000)]
    keys = text_module._TokenKeys(vocabulary, list(range(5000)))
    assert keys._probes > 2
    tokens = vocabulary[::-1] + [b"w05000", b"w00000", b"w0000"]
    chars = np.frombuffer(b"".join(tokens), dtype=np.uint8)
    lengths = np.array([len(token) for token in tokens], dtype=np.int64)
    ids = keys.lookup(chars, np.cumsum(lengths) - lengths, lengths)
    assert ids.tolist() == list(range(4999, -1, -1)) + [UNK_INDEX, 0, UNK_INDEX]


@pytest.mark.parametrize("lowercase", [True, False])
def test_encode_packed_tokens_around_the_key_size(lowercase):
    """Words of 7 to 17 letters, in the vocabulary and one letter off."""
    words = ["abcdefghijklmnopq"[:size] for size in range(7, 18)] + [
        "Mixed",
        "isn't",
        "...",
    ]
    encoder = TextEncoder.build(
        words * 2, TextEncoderConfig(lowercase=lowercase, min_frequency=2)
    )
    near = [
        word[:place] + "z" + word[place + 1 :]
        for word in words[:11]
        for place in (0, 7, len(word) - 1)
    ]
    texts = [" ".join(words), " ".join(near), " ".join(words[::-1] + near)] * 10
    texts.append("MIXED mixed Mixed ISN'T ....")
    assert _packed(encoder, texts) == _through_tokenizer(encoder, texts)
    known = _packed(encoder, [" ".join(words)])[0]
    assert UNK_INDEX not in known


def test_encode_packed_bad_input():
    encoder = _encoder()
    assert len(encoder.encode_packed([])) == 0
    with pytest.raises(TypeError, match="single str"):
        encoder.encode_packed("great film")
    with pytest.raises(TypeError, match="index 2"):
        encoder.encode_packed(["ok", "fine", 3] + ["ok"] * 30)


def test_packed_ids_lists_and_padding():
    packed = PackedTokenIds.from_lists([[5, 6, 7], [], [8], [9, 10]])
    assert len(packed) == 4
    assert packed[0] == [5, 6, 7]
    assert packed[1] == []
    assert packed[-1] == [9, 10]
    assert list(packed) == [[5, 6, 7], [], [8], [9, 10]]
    padded = packed.padded(np.array([3, 2, 0]), pad_index=0)
    assert padded.tolist() == [[9, 10, 0], [8, 0, 0], [5, 6, 7]]
    assert PackedTokenIds.from_lists(packed) is packed


def test_loaded_encoder_with_other_pipeline_skips_shortcut(tmp_path, caplog):
    encoder = _save_valid(tmp_path)
    path = tmp_path / text_module.TOKENIZER_FILENAME
    document = json.loads(path.read_text(encoding="utf-8"))
    # A pipeline that keeps "<br>" as tokens: the shortcut would drop it.
    document["normalizer"]["normalizers"] = [
        step
        for step in document["normalizer"]["normalizers"]
        if "br" not in json.dumps(step)
    ]
    path.write_text(json.dumps(document), encoding="utf-8")
    loaded = TextEncoder.load(tmp_path)
    assert loaded._ascii is None
    assert "normalizer differs" in caplog.text
    assert loaded.tokenize("a<br>b") == ["a", "<", "br", ">", "b"]
    assert _packed(loaded, ["a<br>b"]) == loaded.encode_batch(["a<br>b"])
    assert encoder.tokenize("a<br>b") == ["a", "b"]


def test_load_earlier_normalizer_keeps_its_ids(tmp_path, caplog):
    encoder = _save_valid(tmp_path)
    path = tmp_path / text_module.TOKENIZER_FILENAME
    document = json.loads(path.read_text(encoding="utf-8"))
    # what builds before the handling of invisible characters saved
    steps = document["normalizer"]["normalizers"]
    document["normalizer"]["normalizers"] = [
        step
        for step in steps
        if not any(code in json.dumps(step) for code in ("u00ad", "u200b"))
    ]
    assert len(document["normalizer"]["normalizers"]) == len(steps) - 2
    path.write_text(json.dumps(document), encoding="utf-8")

    loaded = TextEncoder.load(tmp_path)

    assert "differs" not in caplog.text
    assert loaded._ascii is not None
    assert loaded.tokenize("gre\u00adat") == ["gre", "\u00ad", "at"]
    assert encoder.tokenize("gre\u00adat") == ["great"]
    texts = ["a great film", "gre\u00adat"]
    assert _packed(loaded, texts) == loaded.encode_batch(texts)
    assert loaded.encode("a great film") == encoder.encode("a great film")


def test_loaded_encoder_keeps_shortcut(tmp_path):
    _save_valid(tmp_path)
    assert TextEncoder.load(tmp_path)._ascii is not None


def _full_ids(encoder: TextEncoder, text: str) -> list[int]:
    """Return the ids that tokenizers gives the whole text, truncated."""
    return encoder._tokenizer.encode(text, add_special_tokens=False).ids


@pytest.mark.parametrize(
    "construct",
    [
        "rock'n'roll'n'roll",
        "<br" + " " * 40 + "/>",
        "." * 30,
        "e" + "\u0301" * 30,
        "caf\u00ad\u00adé",
    ],
)
def test_long_text_prefix_cut(construct):
    # The first prefix ends inside the construct, with about max_length
    # tokens before it, so the cut falls on either side of the margin.
    encoder = _encoder(max_length=400)
    cut = text_module._LONG_TEXT_CHARS
    for count in range(395, 425, 3):
        width = (cut - len(construct)) // count - 1
        head = ("é" * width + " ") * count
        head = head.ljust(cut - len(construct) // 2)
        assert len(head) == cut - len(construct) // 2
        for rest in ("", " fin" * 2000):
            text = head + construct + rest
            assert encoder.encode(text) == _full_ids(encoder, text), (count, rest)


def test_long_text_few_tokens():
    # One long word: no prefix gives enough tokens, so the whole text is read.
    encoder = _encoder()
    text = "é" * (5 * text_module._LONG_TEXT_CHARS) + " great"

    assert encoder.encode(text) == _full_ids(encoder, text)
    assert len(encoder.encode(text)) == 2


def test_long_texts_in_batch_keep_order():
    encoder = _encoder(max_length=20)
    long_text = "café au lait " * 10_000
    texts = ["great fun", long_text, "Отличный фильм", long_text[::-1], "dull"]

    batch = encoder.encode_batch(texts)
    packed = [list(row) for row in encoder.encode_packed(texts * 5)]

    assert batch == [_full_ids(encoder, text) for text in texts]
    assert packed == batch * 5
    assert len(batch[1]) == 20
