"""The training loop: batches, optimisation, per-epoch evaluation, early stopping."""

from __future__ import annotations

import copy
import dataclasses
import logging
import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from sentiment_lstm.batching import bucketed_batches, pad_batch, sorted_batches
from sentiment_lstm.model import SentimentLSTM

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainingConfig:
    """Settings of one training run; saved in the artifact's metadata.

    Attributes:
        num_epochs: Maximum passes over the training split.
        batch_size: Reviews per optimisation step.
        learning_rate: Adam's step size.
        required_accuracy: Validation accuracy a model must reach before it is
            saved.
        patience: Epochs without a better validation accuracy before training
            stops; ``None`` trains for every epoch.
        seed: Seed of the weight initialisation, batch order and dropout.
        max_grad_norm: Gradients are clipped to this L2 norm; ``None`` disables
            clipping.
        weight_decay: L2 penalty added by Adam.
        eval_batch_size: Reviews per batch when scoring held-out splits.
    """

    num_epochs: int = 10
    batch_size: int = 32
    learning_rate: float = 5e-4
    required_accuracy: float = 0.0
    patience: int | None = 3
    seed: int = 0
    max_grad_norm: float | None = 5.0
    weight_decay: float = 0.0
    eval_batch_size: int = 256

    def __post_init__(self) -> None:
        for name in ("num_epochs", "batch_size", "eval_batch_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not self.learning_rate > 0:
            raise ValueError(
                f"learning_rate must be positive, got {self.learning_rate!r}"
            )
        if not 0.0 <= self.required_accuracy <= 1.0:
            raise ValueError(
                "required_accuracy must be between 0 and 1, "
                f"got {self.required_accuracy!r}"
            )
        if self.patience is not None and self.patience < 1:
            raise ValueError(f"patience must be at least 1, got {self.patience!r}")
        if self.max_grad_norm is not None and not self.max_grad_norm > 0:
            raise ValueError(
                f"max_grad_norm must be positive, got {self.max_grad_norm!r}"
            )
        if self.weight_decay < 0:
            raise ValueError(
                f"weight_decay must not be negative, got {self.weight_decay!r}"
            )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class EncodedSplit:
    """Token ids and labels of one split."""

    token_ids: list[list[int]]
    labels: np.ndarray

    def __post_init__(self) -> None:
        if len(self.token_ids) != len(self.labels):
            raise ValueError(
                f"{len(self.token_ids)} reviews but {len(self.labels)} labels"
            )

    def __len__(self) -> int:
        return len(self.token_ids)

    @property
    def lengths(self) -> list[int]:
        return [len(ids) for ids in self.token_ids]


@dataclass
class EpochMetrics:
    """What one epoch measured; ``test_accuracy`` is None without a test split."""

    epoch: int
    train_loss: float
    train_accuracy: float
    validation_accuracy: float
    test_accuracy: float | None
    seconds: float

    def format_line(self) -> str:
        """Return the epoch line, e.g. ``epoch_nr: 3, train_loss: 0.412, ...``."""
        parts = [
            f"epoch_nr: {self.epoch}",
            f"train_loss: {self.train_loss:.3f}",
            f"train_acc: {self.train_accuracy:.3f}",
            f"val_acc: {self.validation_accuracy:.3f}",
        ]
        if self.test_accuracy is not None:
            parts.append(f"test_acc: {self.test_accuracy:.3f}")
        parts.append(f"secs: {self.seconds:.1f}")
        return ", ".join(parts)


@dataclass
class TrainingResult:
    """The best model found and the history that led to it."""

    model: SentimentLSTM
    history: list[EpochMetrics]
    best_epoch: int
    stopped_early: bool = False
    best_state: dict[str, torch.Tensor] = field(default_factory=dict)

    @property
    def best(self) -> EpochMetrics:
        return self.history[self.best_epoch - 1]


# Called with the epoch's metrics and the model whenever validation accuracy
# improves and reaches the required accuracy.
CheckpointCallback = Callable[[EpochMetrics, SentimentLSTM], None]
# Called with the history so far after every epoch.
EpochCallback = Callable[[list[EpochMetrics]], None]


def seed_everything(seed: int) -> None:
    """Seed PyTorch's generator, so initialisation and dropout repeat."""
    torch.manual_seed(seed)


def train(
    model: SentimentLSTM,
    train_split: EncodedSplit,
    validation_split: EncodedSplit,
    config: TrainingConfig,
    test_split: EncodedSplit | None = None,
    on_checkpoint: CheckpointCallback | None = None,
    on_epoch_end: EpochCallback | None = None,
    show_progress: bool | None = None,
) -> TrainingResult:
    """Train ``model`` and keep the weights of its best validation epoch.

    Each epoch's batch order and dropout come from ``(seed, epoch)`` alone, so
    a run can be repeated exactly on the same machine.

    Args:
        model: A freshly initialised network.
        train_split: Reviews to learn from.
        validation_split: Reviews that pick the best epoch and stop training.
        config: Optimisation settings.
        test_split: Reviews only reported on, never used for any decision.
        on_checkpoint: Called when a new best epoch reaches
            ``config.required_accuracy``.
        on_epoch_end: Called with the history after every epoch.
        show_progress: Show a progress bar; by default only on a terminal.

    Returns:
        The model with its best weights loaded, and the per-epoch history.

    Raises:
        ValueError: If the training or validation split is empty.
    """
    if len(train_split) == 0:
        raise ValueError("the training split is empty; give more reviews")
    if len(validation_split) == 0:
        raise ValueError(
            "the validation split is empty; raise --validation-fraction "
            "or pass --validation-data"
        )
    if show_progress is None:
        show_progress = sys.stderr.isatty()

    optimizer = torch.optim.Adam(
        model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
    )
    loss_function = nn.CrossEntropyLoss()
    train_lengths = train_split.lengths
    labels = torch.as_tensor(train_split.labels, dtype=torch.long)
    pad_index = model.config.pad_index

    history: list[EpochMetrics] = []
    best_epoch = 0
    best_accuracy = -math.inf
    best_state: dict[str, torch.Tensor] = {}
    stopped_early = False

    for epoch in range(1, config.num_epochs + 1):
        started = time.perf_counter()
        model.train()
        torch.manual_seed(_epoch_seed(config.seed, epoch))
        rng = np.random.default_rng([config.seed, epoch])
        batches = bucketed_batches(train_lengths, config.batch_size, rng)
        total_loss = 0.0
        correct = 0
        progress = tqdm(
            batches,
            desc=f"epoch {epoch}/{config.num_epochs}",
            unit="batch",
            leave=False,
            disable=not show_progress,
        )
        for indices in progress:
            ids, lengths = pad_batch(train_split.token_ids, indices, pad_index)
            targets = labels[indices]

            # forward
            logits = model(torch.from_numpy(ids), torch.from_numpy(lengths))
            loss = loss_function(logits, targets)

            # backward, clip, step
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if config.max_grad_norm is not None:
                nn.utils.clip_grad_norm_(model.parameters(), config.max_grad_norm)
            optimizer.step()

            total_loss += loss.item() * len(indices)
            correct += int((logits.argmax(dim=1) == targets).sum())
        progress.close()

        # evaluate
        validation_accuracy = accuracy(model, validation_split, config.eval_batch_size)
        test_accuracy = None
        if test_split is not None and len(test_split) > 0:
            test_accuracy = accuracy(model, test_split, config.eval_batch_size)
        metrics = EpochMetrics(
            epoch=epoch,
            train_loss=total_loss / len(train_split),
            train_accuracy=correct / len(train_split),
            validation_accuracy=validation_accuracy,
            test_accuracy=test_accuracy,
            seconds=time.perf_counter() - started,
        )
        history.append(metrics)
        logger.info(metrics.format_line())

        # keep the best epoch
        if validation_accuracy > best_accuracy:
            best_accuracy = validation_accuracy
            best_epoch = epoch
            best_state = copy.deepcopy(model.state_dict())
            if on_checkpoint is not None and (
                validation_accuracy >= config.required_accuracy
            ):
                on_checkpoint(metrics, model)
        if on_epoch_end is not None:
            on_epoch_end(history)
        if config.patience is not None and epoch - best_epoch >= config.patience:
            logger.info(
                "stopping early: val_acc has not improved for %d epochs "
                "(best %.3f at epoch %d)",
                config.patience,
                best_accuracy,
                best_epoch,
            )
            stopped_early = True
            break

    model.load_state_dict(best_state)
    model.eval()
    return TrainingResult(
        model=model,
        history=history,
        best_epoch=best_epoch,
        stopped_early=stopped_early,
        best_state=best_state,
    )


def _epoch_seed(seed: int, epoch: int) -> int:
    return int(np.random.SeedSequence([seed, epoch]).generate_state(1)[0])


@torch.no_grad()
def predict_probabilities(
    model: SentimentLSTM, token_ids: Sequence[Sequence[int]], batch_size: int = 256
) -> np.ndarray:
    """Return softmax probabilities, shape (reviews, classes), in input order.

    Args:
        model: The network; it is switched to eval mode.
        token_ids: Token ids of each review; an empty review is scored as one
            padding token, so callers should flag empty reviews themselves.
        batch_size: Reviews per forward pass.
    """
    model.eval()
    probabilities = np.zeros((len(token_ids), model.config.num_classes), np.float32)
    lengths = [len(ids) for ids in token_ids]
    for indices in sorted_batches(lengths, batch_size):
        ids, batch_lengths = pad_batch(token_ids, indices, model.config.pad_index)
        logits = model(torch.from_numpy(ids), torch.from_numpy(batch_lengths))
        probabilities[indices] = torch.softmax(logits, dim=1).numpy()
    return probabilities


def accuracy(model: SentimentLSTM, split: EncodedSplit, batch_size: int = 256) -> float:
    """Return the share of ``split`` that ``model`` labels correctly."""
    if len(split) == 0:
        return math.nan
    probabilities = predict_probabilities(model, split.token_ids, batch_size)
    return float((probabilities.argmax(axis=1) == split.labels).mean())
