"""Stratified k-fold cross-validation, its command and the protocol order."""

import json

import numpy as np
import pytest
from sklearn.model_selection import StratifiedKFold

from sentiment_lstm import crossval, training
from sentiment_lstm.cli import main
from sentiment_lstm.crossval import (
    CrossValidationConfig,
    CrossValidationResult,
    FoldResult,
    cross_validate,
    protocol_folds,
)
from sentiment_lstm.data import read_examples
from sentiment_lstm.predictor import physical_core_count
from sentiment_lstm.training import TrainingConfig
from tests.conftest import NEGATIVE_REVIEWS, POSITIVE_REVIEWS

SMALL_MODEL = {"embedding_dim": 8, "hidden_dim": 8}
FAST_TRAINING = TrainingConfig(num_epochs=2, batch_size=8, learning_rate=0.01)


def corpus(copies: int = 3) -> tuple[list[str], list[int]]:
    """Distinct texts, negative first, as a pos/neg pair is read."""
    negative = [f"{text} {i}" for i in range(copies) for text in NEGATIVE_REVIEWS]
    positive = [f"{text} {i}" for i in range(copies) for text in POSITIVE_REVIEWS]
    return negative + positive, [0] * len(negative) + [1] * len(positive)


def test_protocol_folds_match_sklearn():
    labels = np.array([0] * 30 + [1] * 30)
    expected = StratifiedKFold(10, shuffle=True, random_state=0).split(
        np.zeros(60), labels
    )

    folds = protocol_folds(labels, 10, 0)

    for (train, test), (train_expected, test_expected) in zip(folds, expected):
        assert np.array_equal(train, train_expected)
        assert np.array_equal(test, test_expected)


def test_folds_partition_the_data():
    labels = np.array([0] * 30 + [1] * 30)

    tests = [test for _, test in protocol_folds(labels, 5, 0)]

    assert sorted(np.concatenate(tests).tolist()) == list(range(60))
    assert all(labels[test].sum() == 6 for test in tests)


def test_test_fold_never_trains(monkeypatch):
    texts, labels = corpus()
    seen_training_texts = []
    real_build = crossval.InputFactory.build

    def recording_build(self, train_texts, train_labels=None):
        seen_training_texts.append(set(train_texts))
        return real_build(self, train_texts, train_labels)

    monkeypatch.setattr(crossval.InputFactory, "build", recording_build)
    calls = []
    real_train = training.train

    def recording_train(model, train_split, validation_split, config, **kwargs):
        calls.append((len(train_split), len(validation_split), kwargs["test_split"]))
        return real_train(model, train_split, validation_split, config, **kwargs)

    monkeypatch.setattr(training, "train", recording_train)
    cv_config = CrossValidationConfig(folds=3, validation_fraction=0.25)

    result = cross_validate(
        texts,
        labels,
        cv_config=cv_config,
        model_options=SMALL_MODEL,
        training_config=FAST_TRAINING,
    )

    folds = protocol_folds(labels, 3, 0)
    for (_, test_indices), training_texts in zip(folds, seen_training_texts):
        assert not training_texts & {texts[i] for i in test_indices}
    assert [call[2] for call in calls] == [None, None, None]
    assert [call[0] + call[1] for call in calls] == [32, 32, 32]
    assert [fold.sizes["test"] for fold in result.folds] == [16, 16, 16]


def test_run_folds_limits_folds():
    texts, labels = corpus()

    result = cross_validate(
        texts,
        labels,
        cv_config=CrossValidationConfig(folds=4, run_folds=2),
        model_options=SMALL_MODEL,
        training_config=FAST_TRAINING,
    )

    assert [fold.fold for fold in result.folds] == [1, 2]
    assert result.settings["cross_validation"]["run_folds"] == 2


def test_parallel_members_match_sequential(one_torch_thread):
    texts, labels = corpus()
    config = TrainingConfig(
        num_epochs=2, batch_size=8, learning_rate=0.01, ensemble_size=3
    )
    runs = {}
    for workers in (1, 2):
        runs[workers] = cross_validate(
            texts,
            labels,
            cv_config=CrossValidationConfig(
                folds=3, run_folds=1, parallel_members=workers
            ),
            model_options=SMALL_MODEL,
            training_config=config,
        )

    sequential, parallel = runs[1].folds[0], runs[2].folds[0]
    assert parallel.accuracy == sequential.accuracy
    assert parallel.validation_accuracy == sequential.validation_accuracy
    assert parallel.best_epochs == sequential.best_epochs
    assert runs[2].settings["cross_validation"]["parallel_members"] == 2


@pytest.mark.parametrize("workers", [0, -1, 1.5, True])
def test_parallel_members_rejects(workers):
    with pytest.raises(ValueError, match="parallel_members must be an integer"):
        CrossValidationConfig(parallel_members=workers)


def test_summary_uses_sample_std():
    folds = [
        FoldResult(i, accuracy, accuracy, 10.0 * i, 5.0 * i, [1], [1], 0.5)
        for i, accuracy in enumerate([0.7, 0.8, 0.9], start=1)
    ]

    summary = CrossValidationResult(folds, 6.0, {}).summary()

    assert summary["accuracy_mean"] == pytest.approx(0.8)
    assert summary["accuracy_std"] == pytest.approx(0.1)
    assert summary["seconds_mean"] == pytest.approx(20.0)
    assert summary["cpu_seconds_mean"] == pytest.approx(10.0)
    assert summary["shared_seconds_per_fold"] == pytest.approx(2.0)


def test_too_few_examples_for_folds():
    with pytest.raises(ValueError, match="lower --folds"):
        cross_validate(["a", "b", "c"], [0, 1, 1], cv_config=CrossValidationConfig())


def test_config_rejects_bad_values():
    with pytest.raises(ValueError, match="run_folds"):
        CrossValidationConfig(folds=3, run_folds=4)
    with pytest.raises(ValueError, match="validation_fraction"):
        CrossValidationConfig(validation_fraction=0.0)


def test_posneg_pair_reads_negative_first(tiny_posneg):
    labels = [example.label for example in read_examples(tiny_posneg).examples]

    assert labels == [0] * 48 + [1] * 48


def test_command_prints_and_writes_json(tiny_posneg, tmp_path, capsys):
    output = tmp_path / "cv.json"

    status = main(
        [
            "-q",
            "cross-validate",
            "--data",
            str(tiny_posneg),
            "--folds",
            "3",
            "--run-folds",
            "2",
            "--num-epochs",
            "2",
            "--lstm-units",
            "8",
            "--embedding-size",
            "8",
            "--preset",
            "scratch-best",
            "--output-json",
            str(output),
        ]
    )

    printed = capsys.readouterr().out
    values = json.loads(output.read_text())
    assert status == 0
    assert printed.splitlines()[0].split() == [
        "fold",
        "accuracy",
        "macro",
        "F1",
        "seconds",
        "best",
        "epochs",
    ]
    assert printed.splitlines()[1].startswith("   1")
    assert "mean" in printed.splitlines()[3]
    assert len(values["folds"]) == 2
    assert values["settings"]["preset"] == "scratch-best"
    # the preset's 5 members train one per core by default
    expected_workers = min(physical_core_count(), 5)
    assert values["settings"]["cross_validation"]["parallel_members"] == (
        expected_workers
    )
    assert values["settings"]["model"]["hidden_dim"] == 8
    assert values["settings"]["model"]["bidirectional"] is True
    assert set(values["summary"]) >= {"accuracy_mean", "accuracy_std"}


def test_command_rejects_run_folds_above_folds(tiny_posneg, capsys):
    with pytest.raises(SystemExit):
        main(
            [
                "cross-validate",
                "--data",
                str(tiny_posneg),
                "--folds",
                "3",
                "--run-folds",
                "4",
            ]
        )

    assert "--run-folds (4) cannot exceed --folds (3)" in capsys.readouterr().err


def test_train_rejects_contextual_inputs(tiny_posneg, tmp_path, capsys):
    status = main(
        [
            "train",
            "--data",
            str(tiny_posneg),
            "--output-dir",
            str(tmp_path / "model"),
            "--embeddings",
            "minilm-contextual",
        ]
    )

    assert status == 2
    assert "cannot be saved for prediction" in capsys.readouterr().err


def test_cli_output_json_folder_rejected(tiny_posneg, tmp_path, capsys):
    status = main(
        ["-q", "cross-validate", "--data", str(tiny_posneg), "--folds", "2"]
        + ["--output-json", str(tmp_path)]
    )

    captured = capsys.readouterr()
    assert status == 2
    assert "is a folder; name a file in it" in captured.err
    assert "fold" not in captured.out


def test_cli_failed_run_prints_no_table(tmp_path, capsys):
    source = tmp_path / "tiny.csv"
    source.write_text("text,label\ngreat,pos\nawful,neg\nfine,pos\n")

    status = main(["-q", "cross-validate", "--data", str(source), "--folds", "2"])

    captured = capsys.readouterr()
    assert status == 1
    assert "lower --folds" in captured.err
    assert captured.out == ""
