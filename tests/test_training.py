import numpy as np
import pytest
import torch

from sentiment_lstm.model import ModelConfig, SentimentLSTM
from sentiment_lstm.training import (
    EncodedSplit,
    EpochMetrics,
    TrainingConfig,
    accuracy,
    train,
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


def test_early_stopping_with_patience():
    # a learning rate this small cannot improve on the first epoch's accuracy
    config = TrainingConfig(
        num_epochs=20, batch_size=16, learning_rate=1e-9, patience=2
    )
    result = train(new_model(), toy_split(100, 1), toy_split(40, 2), config)

    assert result.stopped_early
    assert len(result.history) == result.best_epoch + 2


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
        new_model(), toy_split(100, 1), toy_split(40, 2), config, test_split=toy_split(40, 3)
    )

    assert result.history[0].test_accuracy is not None


def test_epoch_line_format():
    metrics = EpochMetrics(3, 0.4123, 0.8151, 0.7712, 0.7684, 3.14)

    assert metrics.format_line() == (
        "epoch_nr: 3, train_loss: 0.412, train_acc: 0.815, val_acc: 0.771, "
        "test_acc: 0.768, secs: 3.1"
    )


def test_epoch_line_without_test_split():
    metrics = EpochMetrics(1, 0.5, 0.6, 0.7, None, 2.0)

    assert "test_acc" not in metrics.format_line()


def test_empty_validation_split_rejected():
    with pytest.raises(ValueError, match="validation split is empty"):
        train(new_model(), toy_split(10, 1), EncodedSplit([], np.array([])), TrainingConfig())


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
