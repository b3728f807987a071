"""Training on the real data sets, end to end through the command line."""

import json

import pytest

from sentiment_lstm.cli import main


@pytest.fixture(scope="module")
def rt_polarity_model(rt_polarity_dir, tmp_path_factory):
    model_dir = tmp_path_factory.mktemp("rt") / "model"
    status = main(
        [
            "train",
            "--data",
            str(rt_polarity_dir),
            "--output-dir",
            str(model_dir),
            "--num_epoch",
            "5",
            "--batch_size",
            "32",
            "--learning_rate",
            "0.0005",
            "--architecture",
            "unidirectional",
            "--lstm_units",
            "100",
            "--dropout_keep_prob",
            "0.5",
            "--embedding_size",
            "100",
            "--required_acc_checkpoint",
            "0.6",
        ]
    )
    assert status == 0
    return model_dir


@pytest.fixture(scope="module")
def netflix_model(netflix_csv, tmp_path_factory):
    model_dir = tmp_path_factory.mktemp("netflix") / "model"
    status = main(
        [
            "train",
            "--data",
            str(netflix_csv),
            "--text-column",
            "content",
            "--label-column",
            "score",
            "--stars",
            "--output-dir",
            str(model_dir),
            "--num-epochs",
            "4",
            "--max-length",
            "120",
        ]
    )
    assert status == 0
    return model_dir


def best_epoch(model_dir):
    history = json.loads((model_dir / "metrics.json").read_text())
    return history["epochs"][history["best_epoch"] - 1]


def test_rt_polarity_accuracy_floor(rt_polarity_model):
    best = best_epoch(rt_polarity_model)

    assert best["validation_accuracy"] > 0.70
    assert best["test_accuracy"] > 0.70


def test_rt_polarity_split_sizes(rt_polarity_model):
    metadata = json.loads((rt_polarity_model / "training.json").read_text())

    assert metadata["data"]["split_sizes"] == {
        "train": 8530,
        "validation": 1066,
        "test": 1066,
    }


def test_rt_polarity_evaluate_test_split(rt_polarity_model, rt_polarity_dir, capsys):
    main(
        [
            "evaluate",
            "--model",
            str(rt_polarity_model),
            "--data",
            str(rt_polarity_dir),
            "--split",
            "test",
            "--format",
            "json",
        ]
    )
    report = json.loads(capsys.readouterr().out)

    assert report["reviews"] == 1066
    assert report["accuracy"] == pytest.approx(
        best_epoch(rt_polarity_model)["test_accuracy"], abs=1e-9
    )


def test_rt_polarity_predict(rt_polarity_model, capsys):
    main(
        [
            "predict",
            "--model",
            str(rt_polarity_model),
            "--format",
            "jsonl",
            "a gorgeous , witty , seductive movie .",
            "the plot is a dull , lifeless mess .",
        ]
    )
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]

    assert rows[0]["label"] == "positive"
    assert rows[1]["label"] == "negative"


def test_netflix_stars_accuracy_floor(netflix_model):
    best = best_epoch(netflix_model)

    assert best["test_accuracy"] > 0.75


def test_netflix_left_out_three_stars(netflix_model):
    metadata = json.loads((netflix_model / "training.json").read_text())

    assert metadata["data"]["left_out_by_stars"] == 250
    assert sum(metadata["data"]["split_sizes"].values()) == 3749


def test_netflix_evaluate(netflix_model, netflix_csv, capsys):
    status = main(
        [
            "evaluate",
            "--model",
            str(netflix_model),
            "--data",
            str(netflix_csv),
            "--text-column",
            "content",
            "--label-column",
            "score",
            "--stars",
            "--format",
            "json",
        ]
    )
    report = json.loads(capsys.readouterr().out)

    assert status == 0
    assert report["reviews"] == 3749
    assert report["roc_auc"] > 0.8


def test_netflix_predict(netflix_model, capsys):
    main(
        [
            "predict",
            "--model",
            str(netflix_model),
            "--format",
            "jsonl",
            "I love this app, works great and the shows are amazing",
            "Terrible app, keeps crashing and I can't log in. Waste of money",
        ]
    )
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]

    assert rows[0]["label"] == "positive"
    assert rows[1]["label"] == "negative"
