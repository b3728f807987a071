import dataclasses
import errno
import functools
import json
import logging
import re
import multiprocessing
import os
import time

import numpy as np
import pytest
import torch

from sentiment_lstm.model import (
    ModelConfig,
    SentimentLSTM,
    count_parameters,
    parameter_count,
)
from sentiment_lstm.training import (
    CheckpointError,
    DivergenceError,
    EncodedSplit,
    EpochMetrics,
    LearningRateSchedule,
    TrainingConfig,
    accuracy,
    available_memory,
    build_optimizer,
    class_weight_tensor,
    correct_count,
    estimate_training_memory,
    load_checkpoint,
    save_checkpoint,
    train,
    train_ensemble,
)

VOCAB_SIZE = 30
GOOD, BAD = 2, 3


def toy_split(size: int, seed: int) -> EncodedSplit:
    """Reviews of random filler words with one GOOD or BAD word inside."""
    rng = np.random.default_rng(seed)
    token_ids, labels = [], []
    for _ in range(size):
        label = int(rng.integers(2))
        length = int(rng.integers(2, 9))
        ids = rng.integers(4, VOCAB_SIZE, size=length).tolist()
        ids[int(rng.integers(length))] = GOOD if label else BAD
        token_ids.append(ids)
        labels.append(label)
    return EncodedSplit(token_ids, np.array(labels))


def new_model(seed: int = 0, **overrides) -> SentimentLSTM:
    torch.manual_seed(seed)
    config = ModelConfig(vocab_size=VOCAB_SIZE, embedding_dim=16, hidden_dim=16)
    return SentimentLSTM(ModelConfig(**{**config.to_dict(), **overrides}))


def test_loss_goes_down_and_model_learns():
    config = TrainingConfig(num_epochs=8, batch_size=16, learning_rate=0.01)
    result = train(new_model(), toy_split(400, 1), toy_split(100, 2), config)

    first, last = result.history[0], result.history[-1]
    assert last.train_loss < first.train_loss
    assert result.best.validation_accuracy > 0.9


def test_same_seed_gives_same_model():
    config = TrainingConfig(num_epochs=2, batch_size=16, seed=7)
    runs = [
        train(new_model(), toy_split(200, 1), toy_split(50, 2), config)
        for _ in range(2)
    ]

    for name, tensor in runs[0].model.state_dict().items():
        assert torch.equal(tensor, runs[1].model.state_dict()[name]), name


def test_other_seed_gives_other_model():
    results = [
        train(
            new_model(),
            toy_split(200, 1),
            toy_split(50, 2),
            TrainingConfig(num_epochs=1, batch_size=16, seed=seed),
        )
        for seed in (1, 2)
    ]

    assert results[0].history[0].train_loss != results[1].history[0].train_loss


def test_best_epoch_weights_are_restored():
    validation = toy_split(60, 2)
    config = TrainingConfig(num_epochs=4, batch_size=16, patience=None)

    result = train(new_model(), toy_split(200, 1), validation, config)

    best = max(m.validation_accuracy for m in result.history)
    assert result.best.validation_accuracy == best
    assert accuracy(result.model, validation) == pytest.approx(best)


@pytest.mark.parametrize(("patience", "epochs"), [(2, "2 epochs"), (1, "1 epoch")])
def test_early_stopping_with_patience(caplog, patience, epochs):
    # a learning rate this small cannot improve on the first epoch's accuracy
    config = TrainingConfig(
        num_epochs=20, batch_size=16, learning_rate=1e-9, patience=patience
    )
    with caplog.at_level(logging.INFO, logger="sentiment_lstm"):
        result = train(new_model(), toy_split(100, 1), toy_split(40, 2), config)

    assert result.stopped_early
    assert len(result.history) == result.best_epoch + patience
    assert f"val_acc has not improved for {epochs} (best" in caplog.text


def test_patience_counts_after_warmup(caplog):
    # 100 reviews in batches of 16 take 7 steps an epoch, so the warm-up over
    # half of 8 epochs' 56 steps covers epochs 1 to 4.
    config = TrainingConfig(
        num_epochs=8,
        batch_size=16,
        learning_rate=1e-9,
        patience=1,
        lr_schedule="cosine",
        warmup_fraction=0.5,
    )

    with caplog.at_level(logging.INFO, logger="sentiment_lstm"):
        result = train(new_model(), toy_split(100, 1), toy_split(40, 2), config)

    assert result.best_epoch == 1
    assert result.stopped_early
    assert len(result.history) == 5
    assert re.search(
        r"val_acc has not improved for 4 epochs \(best [\d.]+ at epoch 1\), 1 "
        r"of them after the warm-up",
        caplog.text,
    )


def test_checkpoint_only_above_required_accuracy():
    saved = []
    config = TrainingConfig(num_epochs=2, batch_size=16, required_accuracy=1.0)

    train(
        new_model(),
        toy_split(100, 1),
        toy_split(40, 2),
        config,
        on_checkpoint=lambda metrics, model: saved.append(metrics.epoch),
    )

    assert saved == []


def test_resume_lower_threshold_saves_best(tmp_path):
    path = tmp_path / "checkpoint.pt"
    events = []
    # A learning rate this small keeps validation accuracy far below 1.0.
    config = TrainingConfig(
        num_epochs=2, batch_size=16, learning_rate=1e-9, required_accuracy=1.0
    )
    train(
        new_model(), toy_split(100, 1), toy_split(40, 2), config, checkpoint_path=path
    )
    best_epoch = load_checkpoint(path)["best_epoch"]
    lower = dataclasses.replace(config, required_accuracy=0.0)

    train(
        new_model(),
        toy_split(100, 1),
        toy_split(40, 2),
        lower,
        on_checkpoint=lambda metrics, model: events.append(("save", metrics.epoch)),
        on_epoch_end=lambda history: events.append(("end", history[-1].epoch)),
        checkpoint_path=path,
        resume=True,
    )

    # The model and metrics.json are written at once, with no epoch trained.
    assert events == [("save", best_epoch), ("end", 2)]
    assert load_checkpoint(path)["identity"]["training"]["required_accuracy"] == 0.0
    # The threshold of the saved model cannot be raised again.
    with pytest.raises(CheckpointError, match="--required-acc-checkpoint was 0"):
        train(
            new_model(),
            toy_split(100, 1),
            toy_split(40, 2),
            config,
            checkpoint_path=path,
            resume=True,
        )


def test_checkpoint_on_each_improvement():
    saved = []
    config = TrainingConfig(num_epochs=3, batch_size=16, learning_rate=0.01)

    result = train(
        new_model(),
        toy_split(200, 1),
        toy_split(40, 2),
        config,
        on_checkpoint=lambda metrics, model: saved.append(metrics.epoch),
    )

    assert saved[0] == 1
    assert saved[-1] == result.best_epoch


def test_test_split_reported_not_used():
    config = TrainingConfig(num_epochs=1, batch_size=16)
    result = train(
        new_model(),
        toy_split(100, 1),
        toy_split(40, 2),
        config,
        test_split=toy_split(40, 3),
    )

    assert result.history[0].test_accuracy is not None


def test_epoch_line_format():
    metrics = EpochMetrics(3, 0.4123, 0.8151, 0.7712, 0.7684, 3.14)

    assert metrics.format_line() == (
        "epoch_nr: 3, train_loss: 0.412, train_acc: 0.815, val_acc: 0.771, "
        "test_acc: 0.768, secs: 3.1"
    )


def test_epoch_line_huge_loss_in_e_notation():
    metrics = EpochMetrics(1, 7.4258e30, 0.5, 0.5, None, 2.0)

    assert metrics.format_line().startswith("epoch_nr: 1, train_loss: 7.426e+30, ")


def test_epoch_line_without_test_split():
    metrics = EpochMetrics(1, 0.5, 0.6, 0.7, None, 2.0)

    assert "test_acc" not in metrics.format_line()


def test_empty_validation_split_rejected():
    with pytest.raises(ValueError, match="validation split is empty"):
        train(
            new_model(),
            toy_split(10, 1),
            EncodedSplit([], np.array([])),
            TrainingConfig(),
        )


def test_validation_without_tokens_rejected():
    message = "none of the 2 validation reviews has a token"
    with pytest.raises(ValueError, match=message):
        train(
            new_model(),
            toy_split(10, 1),
            EncodedSplit([[], []], np.array([0, 1])),
            TrainingConfig(),
        )


def test_accuracy_leaves_out_reviews_without_tokens():
    model = new_model()
    split = toy_split(20, 2)
    with_empty = EncodedSplit(
        split.token_ids + [[], []], np.concatenate([split.labels, [0, 1]])
    )

    assert accuracy(model, with_empty) == accuracy(model, split)
    assert np.isnan(accuracy(model, EncodedSplit([[]], np.array([1]))))


@pytest.mark.parametrize(
    "field, value",
    [
        ("num_epochs", 0),
        ("batch_size", -1),
        ("learning_rate", 0.0),
        ("required_accuracy", 1.5),
        ("patience", 0),
        ("max_grad_norm", 0.0),
        ("weight_decay", -0.1),
    ],
)
def test_config_rejects_invalid_values(field, value):
    with pytest.raises(ValueError, match=field):
        TrainingConfig(**{field: value})


def test_cosine_schedule_warms_up_and_decays():
    config = TrainingConfig(
        num_epochs=3, batch_size=16, lr_schedule="cosine", warmup_fraction=0.2
    )

    result = train(new_model(), toy_split(160, 1), toy_split(40, 2), config)

    rates = [m.learning_rate for m in result.history]
    # With 10 steps per epoch and 6 warm-up steps, epoch 1 ends just after
    # the peak rate.
    assert rates[0] > 0.9 * config.learning_rate
    assert rates[0] < config.learning_rate
    assert rates[1] < rates[0]
    assert rates[2] < rates[1]


def test_cosine_schedule_ends_near_zero():
    model = new_model()
    optimizer = build_optimizer(model, TrainingConfig())
    config = TrainingConfig(num_epochs=2, lr_schedule="cosine")
    schedule = LearningRateSchedule(optimizer, config, steps_per_epoch=5)

    for _ in range(10):
        schedule.after_step()

    assert schedule.current == pytest.approx(0.0, abs=1e-12)


def test_plateau_schedule_halves_rate():
    model = new_model()
    config = TrainingConfig(lr_schedule="plateau", learning_rate=0.01)
    optimizer = build_optimizer(model, config)
    schedule = LearningRateSchedule(optimizer, config, steps_per_epoch=5)

    schedule.after_epoch(0.7)
    schedule.after_epoch(0.6)

    assert schedule.current == pytest.approx(0.005)


def test_constant_schedule_keeps_rate():
    config = TrainingConfig(num_epochs=2, batch_size=16, learning_rate=0.002)

    result = train(new_model(), toy_split(64, 1), toy_split(20, 2), config)

    assert [m.learning_rate for m in result.history] == [0.002, 0.002]


def test_balanced_class_weights():
    weights = class_weight_tensor(np.array([0, 0, 0, 1]), 2, "balanced")

    assert weights.tolist() == pytest.approx([4 / 6, 2.0])


def test_minority_class_warning(caplog):
    labels = np.array([0] * 9 + [1])

    with caplog.at_level("WARNING", logger="sentiment_lstm.training"):
        weights = class_weight_tensor(labels, 2, "none")

    assert weights.tolist() == [1.0, 1.0]
    assert "the positive class has 1 of 10 training examples" in caplog.text
    assert "--class-weights balanced" in caplog.text


def test_no_warning_for_balanced_data(caplog):
    with caplog.at_level("WARNING", logger="sentiment_lstm.training"):
        class_weight_tensor(np.array([0, 1, 0, 1]), 2, "none")

    assert caplog.text == ""


def test_adamw_optimizer():
    optimizer = build_optimizer(
        new_model(), TrainingConfig(optimizer="adamw", weight_decay=0.01)
    )

    assert isinstance(optimizer, torch.optim.AdamW)
    assert optimizer.param_groups[0]["weight_decay"] == 0.01


def test_frozen_embeddings_stay_fixed():
    model = new_model()
    before = model.embedding.weight.detach().clone()
    config = TrainingConfig(num_epochs=1, batch_size=16, freeze_embeddings=True)

    result = train(model, toy_split(64, 1), toy_split(20, 2), config)

    assert torch.equal(result.model.embedding.weight, before)
    assert not torch.equal(
        result.model.classifier.weight, new_model().classifier.weight
    )


def test_checkpoint_written_each_epoch(tmp_path):
    path = tmp_path / "checkpoint.pt"
    config = TrainingConfig(num_epochs=2, batch_size=16)

    train(new_model(), toy_split(64, 1), toy_split(20, 2), config, checkpoint_path=path)

    state = load_checkpoint(path)
    assert state["epoch"] == 2
    assert len(state["history"]) == 2
    assert set(state["model"]) == set(new_model().state_dict())


def test_resume_in_process_matches_whole_run(tmp_path):
    path = tmp_path / "checkpoint.pt"
    train_split, validation = toy_split(96, 1), toy_split(30, 2)
    options = dict(batch_size=16, seed=3, lr_schedule="cosine", patience=None)
    whole = train(
        new_model(), train_split, validation, TrainingConfig(num_epochs=3, **options)
    )
    # two epochs, then a fresh model resumes from the checkpoint for the third
    interrupted = TrainingConfig(num_epochs=3, **options)
    with pytest.raises(_Interrupt):
        train(
            new_model(),
            train_split,
            validation,
            interrupted,
            checkpoint_path=path,
            on_epoch_end=lambda history: _stop_after(history, 2),
        )
    saved_epoch = load_checkpoint(path)["epoch"]
    resumed = train(
        new_model(seed=99),
        train_split,
        validation,
        interrupted,
        checkpoint_path=path,
        resume=True,
    )

    assert saved_epoch == 2
    assert [m.train_loss for m in resumed.history] == [
        m.train_loss for m in whole.history
    ]
    for name, tensor in whole.model.state_dict().items():
        assert torch.equal(resumed.model.state_dict()[name], tensor), name


class _Interrupt(Exception):
    pass


def _stop_after(history, epochs):
    if len(history) == epochs:
        raise _Interrupt


def test_resume_rejects_other_settings(tmp_path):
    path = tmp_path / "checkpoint.pt"
    train_split, validation = toy_split(32, 1), toy_split(10, 2)
    train(
        new_model(),
        train_split,
        validation,
        TrainingConfig(num_epochs=1, batch_size=16),
        checkpoint_path=path,
    )

    with pytest.raises(CheckpointError, match="--batch-size was 16, now 8"):
        train(
            new_model(),
            train_split,
            validation,
            TrainingConfig(num_epochs=1, batch_size=8),
            checkpoint_path=path,
            resume=True,
        )


def test_resume_mismatch_names_flags_and_data(tmp_path):
    path = tmp_path / "checkpoint.pt"
    train_split, validation = toy_split(32, 1), toy_split(10, 2)
    config = TrainingConfig(num_epochs=1, batch_size=16)

    def identity(dropout, bidirectional, fingerprint):
        return {
            "model": {"dropout": dropout, "bidirectional": bidirectional},
            "data": {
                "fingerprint": fingerprint,
                "data_files_fingerprint": fingerprint,
                # Rows added to the data change the split sizes too.
                "split_sizes": {"train": 80 if fingerprint == "a" else 81},
            },
            "embeddings": {"vectors_path": None if fingerprint == "a" else "v.txt"},
        }

    train(
        new_model(),
        train_split,
        validation,
        config,
        checkpoint_path=path,
        run_identity=identity(0.5, False, "a"),
    )

    with pytest.raises(CheckpointError) as caught:
        train(
            new_model(),
            train_split,
            validation,
            config,
            checkpoint_path=path,
            resume=True,
            run_identity=identity(0.3, True, "b"),
        )

    message = str(caught.value)
    assert "the data files (their names or contents) changed" in message
    assert "--architecture was 'unidirectional', now 'bidirectional'" in message
    assert "--dropout-keep-prob was 0.5, now 0.7" in message
    assert message.count("the data files (their names or contents) changed") == 1
    assert "--pretrained-vectors was not given, now 'v.txt'" in message
    assert "split sizes" not in message
    assert "model." not in message
    assert "data." not in message


@pytest.mark.parametrize("damage", ["random bytes", "truncated", "empty"])
def test_unreadable_checkpoint_error(tmp_path, damage):
    path = tmp_path / "checkpoint.pt"
    if damage == "random bytes":
        path.write_bytes(np.random.default_rng(0).bytes(1000))
    elif damage == "truncated":
        save_checkpoint(path, {"format_version": 1, "weights": torch.zeros(1000)})
        path.write_bytes(path.read_bytes()[:500])
    else:
        path.write_bytes(b"")

    with pytest.raises(CheckpointError) as caught:
        load_checkpoint(path)

    message = str(caught.value)
    assert message.startswith(f"cannot read the checkpoint {path} (")
    assert "): it is damaged or was not written by sentiment-lstm train" in message
    assert message.endswith(
        "; start the run again with --overwrite instead of --resume"
    )
    assert "weights_only" not in message
    assert "\n" not in message


def test_resume_without_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint to resume"):
        train(
            new_model(),
            toy_split(32, 1),
            toy_split(10, 2),
            TrainingConfig(num_epochs=1),
            checkpoint_path=tmp_path / "missing.pt",
            resume=True,
        )


@pytest.mark.parametrize(
    "field, value",
    [
        ("optimizer", "sgd"),
        ("lr_schedule", "step"),
        ("class_weights", "auto"),
        ("warmup_fraction", 1.0),
    ],
)
def test_config_rejects_unknown_choices(field, value):
    with pytest.raises(ValueError, match=field):
        TrainingConfig(**{field: value})


def test_ensemble_merges_members():
    config = TrainingConfig(num_epochs=2, batch_size=16, seed=4, ensemble_size=2)
    validation = toy_split(30, 2)

    result = train_ensemble(new_model, toy_split(96, 1), validation, config)

    single = train(
        new_model(),
        toy_split(96, 1),
        validation,
        TrainingConfig(num_epochs=2, batch_size=16, seed=4),
    )
    assert len(result.members) == 2
    assert result.model.config.hidden_dim == 32
    assert result.validation_accuracy == pytest.approx(
        accuracy(result.model, validation)
    )
    assert [m.train_loss for m in result.members[0].history] == [
        m.train_loss for m in single.history
    ]


def test_ensemble_of_one_is_plain_model():
    config = TrainingConfig(num_epochs=1, batch_size=16)

    result = train_ensemble(new_model, toy_split(64, 1), toy_split(20, 2), config)

    assert result.model is result.members[0].model


def test_ensemble_resume_skips_finished_members(tmp_path):
    config = TrainingConfig(num_epochs=2, batch_size=16, ensemble_size=2)
    splits = (toy_split(64, 1), toy_split(20, 2))
    whole = train_ensemble(new_model, *splits, config, checkpoint_dir=tmp_path)

    resumed = train_ensemble(
        new_model, *splits, config, checkpoint_dir=tmp_path, resume=True
    )

    for name, tensor in whole.model.state_dict().items():
        assert torch.equal(resumed.model.state_dict()[name], tensor), name
    assert [len(m.history) for m in resumed.members] == [2, 2]


def test_ensemble_artifact_serves(tiny_posneg, tmp_path):
    from sentiment_lstm import SentimentModel
    from sentiment_lstm.cli import main

    model_dir = tmp_path / "model"
    status = main(
        [
            "train",
            "--data",
            str(tiny_posneg),
            "--output-dir",
            str(model_dir),
            "--ensemble-size",
            "2",
            "--num-epochs",
            "2",
            "--lstm-units",
            "8",
            "--embedding-size",
            "8",
        ]
    )

    history = json.loads((model_dir / "metrics.json").read_text())
    model = SentimentModel.load(model_dir)
    assert status == 0
    assert [member["seed"] for member in history["members"]] == [0, 1]
    assert model.model_config["hidden_dim"] == 16
    assert 0.0 <= model.predict(["a wonderful film"])[0].positive <= 1.0
    assert not list(model_dir.glob("checkpoint*"))


def test_ensemble_in_processes_matches_sequential(one_torch_thread):
    config = TrainingConfig(
        num_epochs=2, batch_size=16, learning_rate=0.01, ensemble_size=3
    )
    splits = (toy_split(64, 1), toy_split(20, 2))

    # The network starts from the global seed that each member sets.
    build = functools.partial(
        SentimentLSTM, ModelConfig(vocab_size=VOCAB_SIZE, embedding_dim=8, hidden_dim=8)
    )

    sequential = train_ensemble(build, *splits, config)
    parallel = train_ensemble(build, *splits, config, workers=2)

    expected = sequential.model.state_dict()
    for name, tensor in parallel.model.state_dict().items():
        assert torch.equal(tensor, expected[name]), name
    assert [m.best_epoch for m in parallel.members] == [
        m.best_epoch for m in sequential.members
    ]


class FirstMemberFailsOthersHang:
    """Builds a network for an ensemble member in a worker process.

    The first member (seed 0) fails at once; every other member sleeps far
    longer than the test waits, as a long training would.
    """

    def __call__(self) -> SentimentLSTM:
        if torch.initial_seed() == 0:
            raise ValueError("first member failed")
        time.sleep(600)
        return new_model()


def test_ensemble_in_processes_stops_queued_members_on_failure(one_torch_thread):
    config = TrainingConfig(num_epochs=1, ensemble_size=4)
    splits = (toy_split(16, 1), toy_split(8, 2))
    started = time.monotonic()

    with pytest.raises(ValueError, match="first member failed"):
        train_ensemble(FirstMemberFailsOthersHang(), *splits, config, workers=2)

    # The workers' start-up (importing PyTorch) takes a few seconds; waiting
    # for the sleeping members would take 30 minutes.
    assert time.monotonic() - started < 120
    assert not multiprocessing.active_children()


def test_ensemble_in_processes_rejects_checkpoints(tmp_path):
    config = TrainingConfig(num_epochs=1, ensemble_size=2)
    splits = (toy_split(16, 1), toy_split(8, 2))

    with pytest.raises(ValueError, match="write no checkpoints"):
        train_ensemble(new_model, *splits, config, checkpoint_dir=tmp_path, workers=2)
    with pytest.raises(ValueError, match="workers must be at least 1"):
        train_ensemble(new_model, *splits, config, workers=0)


@pytest.mark.parametrize(
    ("max_grad_norm", "advice"),
    [
        (5.0, "gradients are already clipped to norm 5"),
        (None, "or clip the gradients with max_grad_norm"),
    ],
)
def test_divergence_error_advice(max_grad_norm, advice):
    config = TrainingConfig(
        num_epochs=1,
        batch_size=16,
        optimizer="adam",
        weight_decay=1e308,
        max_grad_norm=max_grad_norm,
    )

    with pytest.raises(DivergenceError) as error_info:
        train(new_model(), toy_split(64, 1), toy_split(16, 2), config)

    error = error_info.value
    assert error.epoch == 1
    assert not np.isfinite(error.loss)
    assert "lower the learning rate (now 0.0005)" in str(error)
    assert "or the weight decay (now 1e+308)" in str(error)
    assert advice in str(error)


def test_divergence_of_weights_behind_finite_loss():
    # One batch an epoch: its loss is measured before the step, which sends
    # the weights past the largest float32.
    config = TrainingConfig(num_epochs=1, batch_size=16, learning_rate=1e39)

    with pytest.raises(DivergenceError) as error_info:
        train(new_model(), toy_split(16, 1), toy_split(8, 2), config)

    error = error_info.value
    assert np.isfinite(error.loss)
    assert str(error).startswith(
        "training failed: weights became infinite or NaN (the loss was "
    )


def test_adamw_decay_factor_checked():
    with pytest.raises(ValueError, match="must be below 1 with adamw"):
        TrainingConfig(optimizer="adamw", learning_rate=1e-3, weight_decay=1000)
    assert TrainingConfig(optimizer="adamw", learning_rate=1e-3, weight_decay=999)


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"num_layers": 3},
        {"bidirectional": True},
        {"bidirectional": True, "num_layers": 2, "hidden_dim": 5},
        {"embedding_dim": 7, "hidden_dim": 11, "num_classes": 3},
    ],
)
def test_parameter_count_matches_built_model(overrides):
    model = new_model(**overrides)

    assert parameter_count(model.config) == count_parameters(model)


def test_training_memory_grows_with_size():
    config = ModelConfig(vocab_size=1000, embedding_dim=16, hidden_dim=16)
    base = estimate_training_memory(config, batch_size=32, max_tokens=50)
    deeper = dataclasses.replace(config, num_layers=4)
    wider = dataclasses.replace(config, hidden_dim=64)

    # 1000 x 16 embedding + LSTM + classifier, five copies of 4 bytes each
    assert base >= 5 * 4 * parameter_count(config)
    assert estimate_training_memory(deeper, 32, 50) > base
    assert estimate_training_memory(wider, 32, 50) > base
    assert estimate_training_memory(config, 64, 50) > base
    assert estimate_training_memory(config, 32, 100) > base
    # a frozen embedding has no gradients and no optimiser state
    assert estimate_training_memory(config, 32, 50, freeze_embeddings=True) == (
        base - 3 * 4 * 1000 * 16
    )


def test_available_memory_is_positive():
    available = available_memory()

    assert available is None or available > 0


class _FullDisk:
    """A file whose writes fail as on a full disk."""

    def __init__(self, stream):
        self._stream = stream

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self._stream.close()
        return False

    def write(self, data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_checkpoint_on_full_disk_raises_os_error(tmp_path, monkeypatch):
    from sentiment_lstm import training

    real_fdopen = os.fdopen
    monkeypatch.setattr(
        training.os, "fdopen", lambda handle, mode: _FullDisk(real_fdopen(handle, mode))
    )

    with pytest.raises(OSError) as error_info:
        save_checkpoint(tmp_path / "checkpoint.pt", {"weights": torch.zeros(100)})

    assert error_info.value.errno == errno.ENOSPC
    assert list(tmp_path.iterdir()) == []


def test_accuracy_tie_counts_positive():
    from sentiment_lstm.metrics import classification_report

    config = ModelConfig(vocab_size=VOCAB_SIZE, embedding_dim=4, hidden_dim=3)
    model = SentimentLSTM(config)
    # Equal logits give P(positive) = 0.5 exactly for every review.
    with torch.no_grad():
        model.classifier.weight.zero_()
        model.classifier.bias.zero_()
    split = EncodedSplit([[GOOD, 5], [BAD], [4, 6, 7]], np.array([1, 1, 0]))

    report = classification_report(split.labels, [0.5, 0.5, 0.5])

    assert accuracy(model, split) == pytest.approx(2 / 3)
    assert accuracy(model, split) == pytest.approx(report["accuracy"])


def test_correct_count_breaks_ties_as_predict_does():
    # Equal logits mean P(positive) = 0.5, which predict labels positive.
    logits = torch.tensor([[0.0, 0.0], [1.0, 1.0], [2.0, -1.0], [-1.0, 2.0]])
    targets = torch.tensor([1, 1, 0, 1])

    assert correct_count(logits, targets) == 4
    assert correct_count(logits, torch.tensor([0, 0, 0, 0])) == 1


def test_reviews_without_tokens_left_out_of_training(caplog):
    split = toy_split(96, 1)
    # Three reviews that normalise to nothing, with either label.
    with_empty = EncodedSplit(
        split.token_ids + [[], [], []], np.concatenate([split.labels, [1, 0, 1]])
    )
    config = TrainingConfig(num_epochs=2, batch_size=16, learning_rate=0.01)

    with caplog.at_level("WARNING"):
        filtered = train_ensemble(new_model, with_empty, toy_split(20, 2), config)
    plain = train_ensemble(new_model, split, toy_split(20, 2), config)

    filtered_history = filtered.members[0].history
    plain_history = plain.members[0].history
    assert [m.train_loss for m in filtered_history] == [
        m.train_loss for m in plain_history
    ]
    assert [m.train_accuracy for m in filtered_history] == [
        m.train_accuracy for m in plain_history
    ]
    for name, tensor in plain.model.state_dict().items():
        assert torch.equal(filtered.model.state_dict()[name], tensor)
    assert "3 of the 99 training reviews have no tokens" in caplog.text


def test_training_reviews_all_without_tokens_rejected():
    empty = EncodedSplit([[], []], np.array([0, 1]))
    config = TrainingConfig(num_epochs=1, batch_size=16)

    with pytest.raises(ValueError, match="none of the 2 training reviews has a token"):
        train(new_model(), empty, toy_split(20, 2), config)


def test_test_part_without_tokens_rejected():
    empty_test = EncodedSplit([[], []], np.array([0, 1]))
    config = TrainingConfig(num_epochs=1, batch_size=16)

    with pytest.raises(ValueError, match="none of the 2 test reviews has a token"):
        train(
            new_model(),
            toy_split(16, 1),
            toy_split(8, 2),
            config,
            test_split=empty_test,
        )
