"""The training loop: batches, optimisation, per-epoch evaluation, early stopping."""

from __future__ import annotations

import copy
import dataclasses
import io
import logging
import math
import multiprocessing
import os
import signal
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from logging.handlers import QueueHandler, QueueListener
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from sentiment_lstm import interrupts
from sentiment_lstm.files import stderr_is_terminal
from sentiment_lstm.batching import (
    POOL_BATCHES,
    bucketed_batches,
    pad_batch,
    sorted_batches,
)
from sentiment_lstm.data.records import LABEL_NAMES
from sentiment_lstm.model import (
    ModelConfig,
    SentimentLSTM,
    merge_ensemble,
    parameter_count,
)

logger = logging.getLogger(__name__)

OPTIMIZER_CHOICES = ("adam", "adamw")
LR_SCHEDULE_CHOICES = ("constant", "cosine", "plateau")
CLASS_WEIGHT_CHOICES = ("none", "balanced")

# A class below this share of the training examples gets a warning, because an
# unweighted loss then lets the model favour the larger class.
MINORITY_WARNING_SHARE = 0.2

# ReduceLROnPlateau-style schedule: the rate is multiplied by this factor after
# PLATEAU_PATIENCE epochs without a better validation accuracy.
PLATEAU_FACTOR = 0.5
PLATEAU_PATIENCE = 1

CHECKPOINT_FORMAT_VERSION = 1

# Copies of each trained parameter that training keeps: the weights, their
# gradients, Adam's two moment estimates and the weights of the best epoch.
# A frozen parameter has the weights and the best epoch's copy only.
TRAINING_COPIES_PER_PARAMETER = 5
FROZEN_COPIES_PER_PARAMETER = 2
# Floats that the backward pass keeps per review, time step and LSTM unit of
# each layer and direction. By peak resident memory, PyTorch 2.13's CPU LSTM
# kept 10 to 17 in one forward and backward pass of 2 to 200 layers of 8 to
# 512 units. The estimate takes fewer, so that it errs towards letting a run
# start.
ACTIVATION_FLOATS_PER_UNIT = 8
FLOAT_BYTES = 4


# A mean training loss above this, 5 times that of a 50/50 guess, is far from
# anything a working run reaches after an epoch.
FAILING_LOSS = 5 * math.log(2)


class DivergenceError(ValueError):
    """Error for a training loss or weights that are no longer finite numbers.

    Attributes:
        epoch: The epoch at whose end the loss or a weight was not finite.
        loss: The epoch's mean loss, ``nan`` or ``inf`` unless only weights
            are not finite.
    """

    def __init__(self, message: str, *, epoch: int, loss: float) -> None:
        super().__init__(message)
        self.epoch = epoch
        self.loss = loss

    @property
    def problem(self) -> str:
        """What was not finite, as in "the loss became nan"."""
        return _divergence_problem(self.loss)


def _divergence_problem(loss: float) -> str:
    if not math.isfinite(loss):
        return f"the loss became {loss}"
    return f"weights became infinite or NaN (the loss was {loss:.3g})"


class ModelSizeError(ValueError):
    """Error for a network too large to train in the available memory."""


class CheckpointError(ValueError):
    """A resumable checkpoint is missing, unreadable or from another run."""


class MemberProcessError(ValueError):
    """A process that trained ensemble members ended without a result."""


# Maximum epochs of a run. The cosine schedule's warm-up and decay are
# fractions of all epochs, so with far more epochs than a run could finish
# the learning rate would stay near zero, and patience waits for the
# warm-up to end.
MAX_EPOCHS = 100_000
EPOCHS_LIMIT_REASON = (
    "the learning-rate schedule spreads over all epochs, so a run that cannot "
    "finish them would train at a rate near zero; patience ends a run early "
    "once validation accuracy stops improving"
)


@dataclass(frozen=True)
class TrainingConfig:
    """Settings of one training run; saved in the artifact's metadata.

    Attributes:
        num_epochs: Maximum passes over the training split.
        batch_size: Reviews per optimisation step.
        learning_rate: Peak step size of the optimiser.
        required_accuracy: Validation accuracy a model must reach before it is
            saved.
        patience: Epochs without a better validation accuracy before training
            stops; ``None`` trains for every epoch.
        seed: Seed of the weight initialisation, batch order and dropout.
        max_grad_norm: Gradients are clipped to this L2 norm; ``None`` disables
            clipping.
        weight_decay: With ``adam``, an L2 penalty added to the gradients; with
            ``adamw``, decoupled weight decay.
        eval_batch_size: Reviews per batch when scoring held-out splits.
        optimizer: ``adam`` or ``adamw``.
        lr_schedule: ``constant``, ``cosine`` or ``plateau``. ``cosine`` warms
            up linearly over ``warmup_fraction`` of all steps, then decays
            along a cosine to zero at the last step of ``num_epochs``.
            ``plateau`` halves the rate after an epoch without a better
            validation accuracy.
        warmup_fraction: Share of all optimisation steps spent warming up with
            the ``cosine`` schedule.
        class_weights: ``none``, or ``balanced`` to weight the loss of each
            class by ``examples / (classes * examples of the class)``.
        freeze_embeddings: Keep the embedding table fixed during training.
        ensemble_size: Networks trained with seeds ``seed``, ``seed + 1``,
            and so on, each picking its best epoch on validation accuracy,
            then merged into one network that averages their logits (see
            :func:`sentiment_lstm.model.merge_ensemble`).
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
    optimizer: str = "adam"
    lr_schedule: str = "constant"
    warmup_fraction: float = 0.0
    class_weights: str = "none"
    freeze_embeddings: bool = False
    ensemble_size: int = 1

    def __post_init__(self) -> None:
        for name in ("num_epochs", "batch_size", "eval_batch_size", "ensemble_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.num_epochs > MAX_EPOCHS:
            raise ValueError(
                f"num_epochs must be at most {MAX_EPOCHS}, got {self.num_epochs}; "
                f"{EPOCHS_LIMIT_REASON}"
            )
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
        if self.optimizer == "adamw" and self.learning_rate * self.weight_decay >= 1:
            # AdamW multiplies each weight by 1 - lr * weight_decay every
            # step, which then flips its sign and grows it without bound.
            raise ValueError(
                "learning_rate times weight_decay must be below 1 with adamw, "
                "which multiplies every weight by 1 - learning_rate * "
                f"weight_decay each step; got {self.learning_rate:g} * "
                f"{self.weight_decay:g} = "
                f"{self.learning_rate * self.weight_decay:g}"
            )
        choices = {
            "optimizer": OPTIMIZER_CHOICES,
            "lr_schedule": LR_SCHEDULE_CHOICES,
            "class_weights": CLASS_WEIGHT_CHOICES,
        }
        for name, allowed in choices.items():
            value = getattr(self, name)
            if value not in allowed:
                raise ValueError(
                    f"{name} must be one of {', '.join(allowed)}, got {value!r}"
                )
        if not 0.0 <= self.warmup_fraction < 1.0:
            raise ValueError(
                f"warmup_fraction must be in [0, 1), got {self.warmup_fraction!r}"
            )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainingConfig:
        """Build a config from saved values, rejecting unknown keys."""
        known = {field.name for field in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown training config keys: {', '.join(unknown)}")
        return cls(**values)


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

    def with_tokens(self) -> EncodedSplit:
        """Return the split without the reviews that have no tokens."""
        keep = [index for index, length in enumerate(self.lengths) if length]
        if len(keep) == len(self):
            return self
        return EncodedSplit(
            [self.token_ids[index] for index in keep], self.labels[keep]
        )


@dataclass
class EpochMetrics:
    """Figures of one epoch; ``test_accuracy`` is None without a test split.

    ``learning_rate`` is the rate of the epoch's last optimisation step, so a
    warm-up shows how far it got rather than where it began.
    """

    epoch: int
    train_loss: float
    train_accuracy: float
    validation_accuracy: float
    test_accuracy: float | None
    seconds: float
    learning_rate: float | None = None

    def format_line(self) -> str:
        """Return the epoch line, e.g. ``epoch_nr: 3, train_loss: 0.412, ...``."""
        parts = [
            f"epoch_nr: {self.epoch}",
            f"train_loss: {_loss_text(self.train_loss)}",
            f"train_acc: {self.train_accuracy:.3f}",
            f"val_acc: {self.validation_accuracy:.3f}",
        ]
        if self.test_accuracy is not None:
            parts.append(f"test_acc: {self.test_accuracy:.3f}")
        if self.learning_rate is not None:
            parts.append(f"lr: {self.learning_rate:.2e}")
        parts.append(f"secs: {self.seconds:.1f}")
        return ", ".join(parts)


def _loss_text(loss: float) -> str:
    """Format a loss with 3 decimals, or in e notation from a million on."""
    return f"{loss:.3f}" if abs(loss) < 1e6 else f"{loss:.3e}"


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


class LearningRateSchedule:
    """Sets the optimiser's learning rate per step or per epoch.

    The state is a few numbers, so it goes into a resumable checkpoint as a
    plain dict.

    Args:
        optimizer: Its parameter groups receive the rate.
        config: ``lr_schedule``, ``learning_rate``, ``warmup_fraction`` and
            ``num_epochs`` are read.
        steps_per_epoch: Optimisation steps in one epoch.
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        config: TrainingConfig,
        steps_per_epoch: int,
    ) -> None:
        self.optimizer = optimizer
        self.kind = config.lr_schedule
        self.peak = config.learning_rate
        self.total_steps = max(1, steps_per_epoch * config.num_epochs)
        self.warmup_steps = int(config.warmup_fraction * self.total_steps)
        self.step_count = 0
        self.rate = self.peak
        self.best_accuracy = -math.inf
        self.epochs_without_gain = 0
        self._apply(self._rate_at(0))

    def _rate_at(self, step: int) -> float:
        if self.kind != "cosine":
            return self.rate
        if step < self.warmup_steps:
            return self.peak * (step + 1) / (self.warmup_steps + 1)
        span = max(1, self.total_steps - self.warmup_steps)
        progress = min(1.0, (step - self.warmup_steps) / span)
        return self.peak * 0.5 * (1.0 + math.cos(math.pi * progress))

    def _apply(self, rate: float) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = rate

    def warmup_epochs(self, steps_per_epoch: int) -> int:
        """Return the number of epochs that contain warm-up steps."""
        if self.kind != "cosine":
            return 0
        return -(-self.warmup_steps // max(1, steps_per_epoch))

    @property
    def current(self) -> float:
        """Rate of the next optimisation step."""
        return float(self.optimizer.param_groups[0]["lr"])

    def after_step(self) -> None:
        """Advance a per-step schedule by one optimisation step."""
        self.step_count += 1
        if self.kind == "cosine":
            self._apply(self._rate_at(self.step_count))

    def after_epoch(self, validation_accuracy: float) -> None:
        """Lower the rate of the ``plateau`` schedule when accuracy stalls."""
        if self.kind != "plateau":
            return
        if validation_accuracy > self.best_accuracy:
            self.best_accuracy = validation_accuracy
            self.epochs_without_gain = 0
            return
        self.epochs_without_gain += 1
        if self.epochs_without_gain >= PLATEAU_PATIENCE:
            self.rate *= PLATEAU_FACTOR
            self.epochs_without_gain = 0
            self._apply(self.rate)
            logger.info("val_acc did not improve: learning rate now %.2e", self.rate)

    def state_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "step_count": self.step_count,
            "rate": self.rate,
            "best_accuracy": self.best_accuracy,
            "epochs_without_gain": self.epochs_without_gain,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state["kind"] != self.kind:
            raise CheckpointError(
                f"the checkpoint used lr_schedule {state['kind']!r}, not "
                f"{self.kind!r}; resume with the same settings"
            )
        self.step_count = int(state["step_count"])
        self.rate = float(state["rate"])
        self.best_accuracy = float(state["best_accuracy"])
        self.epochs_without_gain = int(state["epochs_without_gain"])
        self._apply(self._rate_at(self.step_count))


def class_weight_tensor(
    labels: np.ndarray, num_classes: int, mode: str
) -> torch.Tensor:
    """Return per-class loss weights and warn about a small class.

    Args:
        labels: Training labels.
        num_classes: Number of classes of the model.
        mode: ``none`` for equal weights, ``balanced`` for
            ``examples / (classes * examples of the class)``.

    Returns:
        Float tensor of shape (num_classes,). A class without examples gets
        weight 1, which no example uses.
    """
    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=num_classes)
    total = int(counts.sum())
    for index, count in enumerate(counts):
        share = count / total if total else 0.0
        if share < MINORITY_WARNING_SHARE:
            advice = (
                "the loss is weighted to balance the classes"
                if mode == "balanced"
                else "consider --class-weights balanced"
            )
            logger.warning(
                "the %s class has %d of %d training examples (%.1f%%, under %d%%); "
                "%s",
                LABEL_NAMES[index] if index < len(LABEL_NAMES) else index,
                count,
                total,
                100 * share,
                round(100 * MINORITY_WARNING_SHARE),
                advice,
            )
    if mode == "none":
        return torch.ones(num_classes)
    weights = np.ones(num_classes, dtype=np.float64)
    present = counts > 0
    weights[present] = total / (num_classes * counts[present])
    return torch.tensor(weights, dtype=torch.float32)


def estimate_training_memory(
    config: ModelConfig,
    batch_size: int,
    max_tokens: int,
    freeze_embeddings: bool = False,
) -> int:
    """Estimate a lower bound of the memory, in bytes, that training takes.

    Counts the parameters with their gradients, optimiser state and best-epoch
    copy, and the activations that one batch keeps for the backward pass.
    Python objects, the data and PyTorch's own buffers come on top.

    Args:
        config: The network.
        batch_size: Reviews per optimisation step.
        max_tokens: Tokens of the longest training review.
        freeze_embeddings: Whether the embedding table stays fixed.
    """
    directions = 2 if config.bidirectional else 1
    embedding = config.vocab_size * config.embedding_dim
    trained = parameter_count(config) - (embedding if freeze_embeddings else 0)
    weights = trained * TRAINING_COPIES_PER_PARAMETER
    if freeze_embeddings:
        weights += embedding * FROZEN_COPIES_PER_PARAMETER
    floats_per_step = (
        directions * config.num_layers * config.hidden_dim * ACTIVATION_FLOATS_PER_UNIT
        # the word vectors and their dropout mask
        + 2 * config.embedding_dim
    )
    activations = batch_size * max_tokens * floats_per_step
    return (weights + activations) * FLOAT_BYTES


def available_memory() -> int | None:
    """Return the bytes of memory that new allocations can use, or None if unknown.

    On Linux this is ``MemAvailable`` of ``/proc/meminfo``, lowered to the
    room left under a cgroup v2 memory limit. Elsewhere it is the physical
    memory, where the platform reports it.
    """
    available = None
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    available = int(line.split()[1]) * 1024
                    break
    except (OSError, ValueError):
        pass
    if available is None:
        try:
            available = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        except (AttributeError, OSError, ValueError):
            return None
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text(encoding="ascii")
        used = Path("/sys/fs/cgroup/memory.current").read_text(encoding="ascii")
        available = min(available, int(limit) - int(used))
    except (OSError, ValueError):
        # no cgroup v2 limit ("max"), or not Linux
        pass
    return available


def batches_per_epoch(num_examples: int, batch_size: int) -> int:
    """Return how many batches :func:`bucketed_batches` cuts from the examples."""
    pool_size = batch_size * POOL_BATCHES
    full_pools, rest = divmod(num_examples, pool_size)
    return full_pools * POOL_BATCHES + -(-rest // batch_size)


def build_optimizer(model: nn.Module, config: TrainingConfig) -> torch.optim.Optimizer:
    """Return Adam or AdamW over the parameters that require gradients.

    The fused implementation updates all parameters in one kernel: on rt-polarity
    it cut the optimiser's share of a CPU epoch from about 1.6 s to 0.4 s,
    because the embedding table's update dominates.
    """
    parameters = [p for p in model.parameters() if p.requires_grad]
    optimizer_class = (
        torch.optim.AdamW if config.optimizer == "adamw" else torch.optim.Adam
    )
    return optimizer_class(
        parameters,
        lr=config.learning_rate,
        weight_decay=config.weight_decay,
        fused=True,
    )


def train(
    model: SentimentLSTM,
    train_split: EncodedSplit,
    validation_split: EncodedSplit,
    config: TrainingConfig,
    test_split: EncodedSplit | None = None,
    on_checkpoint: CheckpointCallback | None = None,
    on_epoch_end: EpochCallback | None = None,
    show_progress: bool | None = None,
    checkpoint_path: Path | None = None,
    resume: bool = False,
    run_identity: dict[str, Any] | None = None,
) -> TrainingResult:
    """Train ``model`` and keep the weights of its best validation epoch.

    Each epoch's batch order and dropout come from ``(seed, epoch)`` alone, so
    a run can be repeated exactly on the same machine, and a run resumed from
    its checkpoint ends with the weights of an uninterrupted run. This trains
    one network whatever ``config.ensemble_size`` is; :func:`train_ensemble`
    trains several.

    Args:
        model: A freshly initialised network.
        train_split: Reviews to learn from. Reviews without tokens are left
            out.
        validation_split: Reviews that pick the best epoch and stop training.
        config: Optimisation settings.
        test_split: Reviews only reported on, never used for any decision.
        on_checkpoint: Called when a new best epoch reaches
            ``config.required_accuracy``.
        on_epoch_end: Called with the history after every epoch.
        show_progress: Show a progress bar; by default only on a terminal.
        checkpoint_path: Where a resumable checkpoint is written after every
            epoch; None writes none.
        resume: Continue from the checkpoint at ``checkpoint_path``.
        run_identity: JSON-like facts, such as the model config and the data
            fingerprint, that must be equal in the run that wrote a checkpoint
            and the run that resumes it. ``config`` is always compared.

    Returns:
        The model with its best weights loaded, and the per-epoch history.

    Raises:
        ValueError: If the training or validation split is empty, or no
            training, validation or test review has a token.
        CheckpointError: If ``resume`` is set and the checkpoint is missing,
            unreadable or from a run with other settings.
    """
    if len(train_split) == 0:
        raise ValueError("the training split is empty; give more reviews")
    # A review without tokens would be a batch row of padding alone, and a
    # saved model gives such reviews no score.
    with_tokens = train_split.with_tokens()
    if len(with_tokens) == 0:
        raise ValueError(
            f"none of the {len(train_split)} training reviews has a token; "
            "check the training data's text column"
        )
    train_split = with_tokens
    if len(validation_split) == 0:
        raise ValueError(
            "the validation split is empty; raise --validation-fraction "
            "or pass --validation-data"
        )
    if not any(validation_split.lengths):
        # accuracy() leaves such reviews out, so no epoch could be picked.
        raise ValueError(
            f"none of the {len(validation_split)} validation reviews has a "
            "token, so they cannot pick the best epoch; check the validation "
            "data's text column"
        )
    if test_split is not None and len(test_split) and not any(test_split.lengths):
        # test_acc would be NaN, which the JSON of the saved metrics cannot
        # represent.
        raise ValueError(
            f"none of the {len(test_split)} test reviews has a token, so they "
            "cannot measure test_acc; check the test data's text column"
        )
    if resume and checkpoint_path is None:
        raise ValueError("resume needs a checkpoint_path")
    if show_progress is None:
        show_progress = stderr_is_terminal()

    if config.freeze_embeddings:
        model.embedding.weight.requires_grad_(False)
    optimizer = build_optimizer(model, config)
    steps_per_epoch = batches_per_epoch(len(train_split), config.batch_size)
    schedule = LearningRateSchedule(optimizer, config, steps_per_epoch)
    warmup_epochs = schedule.warmup_epochs(steps_per_epoch)
    weights = class_weight_tensor(
        train_split.labels, model.config.num_classes, config.class_weights
    )
    loss_function = nn.CrossEntropyLoss(weight=weights)
    train_lengths = train_split.lengths
    labels = torch.as_tensor(train_split.labels, dtype=torch.long)
    pad_index = model.config.pad_index
    identity = {"training": config.to_dict(), **(run_identity or {})}

    history: list[EpochMetrics] = []
    best_epoch = 0
    best_accuracy = -math.inf
    best_state: dict[str, torch.Tensor] = {}
    stopped_early = False
    start_epoch = 1
    loss_warned = False

    if resume:
        state = load_checkpoint(checkpoint_path)
        _check_identity(state["identity"], identity, checkpoint_path)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        history = [EpochMetrics(**values) for values in state["history"]]
        best_epoch = int(state["best_epoch"])
        best_accuracy = float(state["best_accuracy"])
        best_state = state["best_state"]
        stopped_early = bool(state["stopped_early"])
        start_epoch = int(state["epoch"]) + 1
        logger.info(
            "resuming from %s after epoch %d (best val_acc %.3f at epoch %d)",
            checkpoint_path,
            start_epoch - 1,
            best_accuracy,
            best_epoch,
        )
        before = saved_threshold(state)
        if (
            on_checkpoint is not None
            and best_state
            and before is not None
            and config.required_accuracy <= best_accuracy < before
        ):
            # The interrupted run's higher threshold kept its best epoch from
            # being saved, and the lower one lets it through now.
            with interrupts.deferred():
                model.load_state_dict(best_state)
                on_checkpoint(next(m for m in history if m.epoch == best_epoch), model)
                model.load_state_dict(state["model"])
                # The checkpoint now records the lower threshold, which a
                # later --resume may not raise again over the saved model.
                save_checkpoint(checkpoint_path, dict(state, identity=identity))
                if on_epoch_end is not None:
                    on_epoch_end(history)

    for epoch in range(start_epoch, config.num_epochs + 1):
        if stopped_early:
            break
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
        learning_rate = schedule.current
        for indices in progress:
            interrupts.check()
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
            learning_rate = schedule.current
            optimizer.step()
            schedule.after_step()

            total_loss += loss.item() * len(indices)
            correct += correct_count(logits.detach(), targets)
        progress.close()

        # evaluate
        validation_accuracy = accuracy(model, validation_split, config.eval_batch_size)
        test_accuracy = None
        if test_split is not None and len(test_split) > 0:
            test_accuracy = accuracy(model, test_split, config.eval_batch_size)
        train_loss = total_loss / len(train_split)
        # The loss is measured before each step, so a last step, or a weight
        # decay that outgrows the loss, can leave weights that are not finite
        # behind a finite loss.
        weights_finite = all(
            bool(torch.isfinite(parameter).all()) for parameter in model.parameters()
        )
        if not math.isfinite(train_loss) or not weights_finite:
            raise DivergenceError(
                f"training failed: {_divergence_problem(train_loss)} in epoch "
                f"{epoch}; "
                f"{_divergence_advice(config)}",
                epoch=epoch,
                loss=train_loss,
            )
        metrics = EpochMetrics(
            epoch=epoch,
            train_loss=train_loss,
            train_accuracy=correct / len(train_split),
            validation_accuracy=validation_accuracy,
            test_accuracy=test_accuracy,
            seconds=time.perf_counter() - started,
            learning_rate=learning_rate,
        )
        history.append(metrics)
        logger.info(metrics.format_line())
        if train_loss > FAILING_LOSS and not loss_warned:
            loss_warned = True
            logger.warning(
                "the training loss %.4g of epoch %d is more than %d times that of "
                "a 50/50 guess (%.3f), so training is failing; lower "
                "--learning-rate (now %g)",
                train_loss,
                epoch,
                round(FAILING_LOSS / math.log(2)),
                math.log(2),
                config.learning_rate,
            )
        schedule.after_epoch(validation_accuracy)

        # The saved model, the checkpoint and metrics.json of an epoch are
        # written together: Ctrl-C or SIGTERM waits until all are, so an
        # interrupted run can always resume from its last saved epoch.
        with interrupts.deferred():
            # keep the best epoch
            if validation_accuracy > best_accuracy:
                best_accuracy = validation_accuracy
                best_epoch = epoch
                best_state = copy.deepcopy(model.state_dict())
                if on_checkpoint is not None and (
                    validation_accuracy >= config.required_accuracy
                ):
                    on_checkpoint(metrics, model)
            # The epochs of the warm-up, with their low learning rates, do
            # not count towards the patience. A long --num-epochs makes the
            # warm-up long, and its first epochs are often the best so far.
            counted_from = max(best_epoch, warmup_epochs)
            if config.patience is not None and epoch - counted_from >= config.patience:
                stalled = epoch - best_epoch
                logger.info(
                    "stopping early: val_acc has not improved for %d epoch%s "
                    "(best %.3f at epoch %d)%s",
                    stalled,
                    "" if stalled == 1 else "s",
                    best_accuracy,
                    best_epoch,
                    (
                        f", {config.patience} of them after the warm-up"
                        if stalled > config.patience
                        else ""
                    ),
                )
                stopped_early = True
            if checkpoint_path is not None:
                save_checkpoint(
                    checkpoint_path,
                    {
                        "format_version": CHECKPOINT_FORMAT_VERSION,
                        "identity": identity,
                        "epoch": epoch,
                        "model": model.state_dict(),
                        "optimizer": optimizer.state_dict(),
                        "schedule": schedule.state_dict(),
                        "history": [dataclasses.asdict(m) for m in history],
                        "best_epoch": best_epoch,
                        "best_accuracy": best_accuracy,
                        "best_state": best_state,
                        "stopped_early": stopped_early,
                    },
                )
            if on_epoch_end is not None:
                on_epoch_end(history)

    model.load_state_dict(best_state)
    model.eval()
    return TrainingResult(
        model=model,
        history=history,
        best_epoch=best_epoch,
        stopped_early=stopped_early,
        best_state=best_state,
    )


def _divergence_advice(config: TrainingConfig) -> str:
    advice = f"lower the learning rate (now {config.learning_rate:g})"
    if config.weight_decay > 0:
        advice += f" or the weight decay (now {config.weight_decay:g})"
    if config.max_grad_norm is None:
        return advice + ", or clip the gradients with max_grad_norm"
    return advice + f"; gradients are already clipped to norm {config.max_grad_norm:g}"


@dataclass
class EnsembleResult:
    """Members trained with consecutive seeds and the network merging them.

    Attributes:
        model: The merged network, in eval mode.
        members: Each member's training result, best weights loaded.
        validation_accuracy: Accuracy of the merged network on validation.
        seconds: Wall time of all members' training.
    """

    model: SentimentLSTM
    members: list[TrainingResult]
    validation_accuracy: float
    seconds: float


def member_checkpoint(directory: Path, member: int) -> Path:
    """Return the resumable checkpoint file of one ensemble member."""
    return Path(directory) / f"checkpoint-member{member}.pt"


def warn_about_reviews_without_tokens(
    split: EncodedSplit, part: str = "training", left_out_of: str = "training"
) -> None:
    """Log how many reviews of a part :func:`train` leaves out for having no tokens.

    Args:
        split: The encoded part.
        part: Its name in the message, such as "validation".
        left_out_of: What the reviews are left out of, such as "val_acc".
    """
    empty = split.lengths.count(0)
    # A part of reviews without tokens alone stops train with an error.
    if empty == 0 or empty == len(split):
        return
    logger.warning(
        "%d of the %d %s reviews %s no tokens (such as a review of HTML line "
        "breaks alone) and %s left out of %s",
        empty,
        len(split),
        part,
        "has" if empty == 1 else "have",
        "is" if empty == 1 else "are",
        left_out_of,
    )


def train_ensemble(
    build_model: Callable[[], SentimentLSTM],
    train_split: EncodedSplit,
    validation_split: EncodedSplit,
    config: TrainingConfig,
    *,
    test_split: EncodedSplit | None = None,
    checkpoint_dir: Path | None = None,
    resume: bool = False,
    run_identity: dict[str, Any] | None = None,
    show_progress: bool | None = None,
    workers: int = 1,
) -> EnsembleResult:
    """Train ``config.ensemble_size`` networks and merge them into one.

    Member ``m`` is initialised and trained with seed ``config.seed + m``, so
    member 0 is the network a single run would train. Each member keeps its
    best validation epoch. A finished member's checkpoint stays until the
    whole ensemble is done, so a resumed run skips finished members, resumes
    the interrupted one and trains the rest.

    Args:
        build_model: Returns a freshly initialised network; called after the
            member's seed is set.
        train_split: Reviews to learn from.
        validation_split: Reviews that pick each member's best epoch.
        config: Optimisation settings shared by the members.
        test_split: Reviews only reported on in the members' epoch lines.
        checkpoint_dir: Folder of the members' resumable checkpoints; None
            writes none.
        resume: Continue from the checkpoints in ``checkpoint_dir``.
        run_identity: Facts that must match when resuming, as for
            :func:`train`.
        show_progress: Show a progress bar; by default only on a terminal.
        workers: Members trained at once, each in a process of its own on one
            PyTorch thread. With more than one, ``build_model`` and the splits
            must pickle, and no checkpoints are written. A member gets the
            same weights as in a one-thread sequential run.

    Returns:
        The merged network and the members' results.

    Raises:
        CheckpointError: If ``resume`` is set and member 0 has no checkpoint.
        ValueError: If ``workers`` is below 1, or above 1 with a
            ``checkpoint_dir``.
    """
    started = time.perf_counter()
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    warn_about_reviews_without_tokens(train_split)
    if workers > 1 and checkpoint_dir is not None:
        raise ValueError(
            "members trained in parallel write no checkpoints; pass workers=1 "
            "to train with a checkpoint_dir"
        )
    if resume and checkpoint_dir is None:
        raise ValueError("resume needs a checkpoint_dir")
    if resume and not member_checkpoint(checkpoint_dir, 0).is_file():
        raise CheckpointError(
            f"no checkpoint to resume at {member_checkpoint(checkpoint_dir, 0)}; "
            "the run finished or never completed an epoch, so train without "
            "--resume"
        )
    members = []
    if workers > 1 and config.ensemble_size > 1:
        members = _train_members_in_processes(
            build_model, train_split, validation_split, config, test_split, workers
        )
    for member in range(len(members), config.ensemble_size):
        member_config = dataclasses.replace(config, seed=config.seed + member)
        seed_everything(member_config.seed)
        model = build_model()
        path = None
        if checkpoint_dir is not None:
            path = member_checkpoint(checkpoint_dir, member)
        if config.ensemble_size > 1:
            logger.info("ensemble member %d of %d", member + 1, config.ensemble_size)
        members.append(
            train(
                model,
                train_split,
                validation_split,
                member_config,
                test_split=test_split,
                show_progress=show_progress,
                checkpoint_path=path,
                resume=resume and path is not None and path.is_file(),
                run_identity=run_identity,
            )
        )
    if len(members) == 1:
        merged = members[0].model
    else:
        merged = merge_ensemble([result.model for result in members])
    validation_accuracy = accuracy(merged, validation_split, config.eval_batch_size)
    if len(members) > 1:
        logger.info(
            "ensemble of %d: val_acc %.3f (members %s)",
            config.ensemble_size,
            validation_accuracy,
            ", ".join(f"{result.best.validation_accuracy:.3f}" for result in members),
        )
    return EnsembleResult(
        model=merged,
        members=members,
        validation_accuracy=validation_accuracy,
        seconds=time.perf_counter() - started,
    )


def _train_members_in_processes(
    build_model: Callable[[], SentimentLSTM],
    train_split: EncodedSplit,
    validation_split: EncodedSplit,
    config: TrainingConfig,
    test_split: EncodedSplit | None,
    workers: int,
) -> list[TrainingResult]:
    """Train every member in a pool of ``workers`` processes, in member order."""
    # "spawn" starts clean interpreters: a forked child would inherit
    # PyTorch's OpenMP thread pool, which is not safe to use after fork.
    context = multiprocessing.get_context("spawn")
    count = config.ensemble_size
    workers = min(workers, count)
    logger.info("training %d ensemble members, %d at a time", count, workers)
    # A spawned process starts without logging handlers, so the members' log
    # records, epoch lines included, come back through a queue and are handled
    # here as if logged in this process.
    records = context.Queue()
    listener = QueueListener(records, _ForwardedRecordHandler())
    listener.start()
    try:
        with ProcessPoolExecutor(
            max_workers=workers,
            mp_context=context,
            initializer=_forward_worker_logs,
            initargs=(records, logging.getLogger(__name__).getEffectiveLevel()),
        ) as pool:
            futures = [
                pool.submit(
                    _train_member,
                    build_model,
                    train_split,
                    validation_split,
                    dataclasses.replace(config, seed=config.seed + member),
                    test_split,
                    f"member {member + 1} of {count}",
                )
                for member in range(count)
            ]
            try:
                results = []
                for member, future in enumerate(futures):
                    try:
                        results.append(future.result())
                    except BrokenProcessPool as err:
                        # The pool fails every member that had not finished.
                        raise MemberProcessError(
                            "a process that trained ensemble members ended "
                            f"abruptly before member {member + 1} of {count} "
                            "finished, as when the system runs out of memory and "
                            "kills it; train fewer members at once with "
                            "--parallel-members 1, or a smaller model"
                        ) from err
                return results
            except BaseException:
                # Ctrl-C, SIGTERM or a failed member. The pool's exit would wait
                # for every member still queued, and a signal sent to this
                # process alone never reaches the workers, so they stop here.
                # The pool then fails the queued members itself. Cancelling
                # them first can hang its exit, because Python 3.11 raises
                # InvalidStateError in the pool's management thread.
                for process in context.active_children():
                    process.terminate()
                raise
    finally:
        listener.stop()


class _ForwardedRecordHandler(logging.Handler):
    """Hand a log record from a member process to the logger of its name here."""

    def emit(self, record: logging.LogRecord) -> None:
        logging.getLogger(record.name).handle(record)


class _MemberPrefix(logging.Filter):
    """Start each log message of a member process with the member it trains."""

    def __init__(self) -> None:
        super().__init__()
        self.member = ""

    def filter(self, record: logging.LogRecord) -> bool:
        if self.member:
            record.msg = f"{self.member}: {record.getMessage()}"
            record.args = None
        return True


# The prefix filter of a member process, set by _forward_worker_logs.
_member_prefix: _MemberPrefix | None = None


def _forward_worker_logs(records: Any, level: int) -> None:
    """Send the log records of a member process to the parent's queue.

    Args:
        records: The queue that the parent's listener reads.
        level: The parent's effective level, so that ``-q`` quiets members too.
    """
    global _member_prefix
    # A Ctrl-C in a terminal reaches every process of the group. The parent
    # alone handles it and ends the members, so they do not stop in the
    # middle of a queue operation.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _member_prefix = _MemberPrefix()
    handler = QueueHandler(records)
    handler.addFilter(_member_prefix)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


def _train_member(
    build_model: Callable[[], SentimentLSTM],
    train_split: EncodedSplit,
    validation_split: EncodedSplit,
    config: TrainingConfig,
    test_split: EncodedSplit | None,
    member: str = "",
) -> TrainingResult:
    """Train one member in a worker process, as the sequential loop does.

    ``member``, such as "member 2 of 5", starts each of its log messages.
    """
    if _member_prefix is not None:
        _member_prefix.member = member
    torch.set_num_threads(1)
    seed_everything(config.seed)
    model = build_model()
    return train(
        model,
        train_split,
        validation_split,
        config,
        test_split=test_split,
        show_progress=False,
    )


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write a resumable checkpoint atomically with ``torch.save``.

    The state holds only tensors, numbers, strings, lists and dicts, so
    :func:`load_checkpoint` reads it with ``weights_only=True``. A temporary
    file is renamed over the old checkpoint, so a process killed while saving
    leaves the previous epoch's checkpoint intact.

    Args:
        path: Checkpoint file; its folder is created if missing.
        state: What :func:`train` stores after an epoch.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # torch.save reports a failed write, such as a full disk, as a RuntimeError
    # without the reason, so the state is serialised in memory and written
    # here, where a failed write raises OSError with its errno.
    # NOTE: this keeps a second copy of the checkpoint in memory while saving.
    buffer = io.BytesIO()
    torch.save(state, buffer)
    handle, temporary = tempfile.mkstemp(
        dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"
    )
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(buffer.getbuffer())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint`.

    Args:
        path: Checkpoint file.

    Returns:
        The stored state.

    Raises:
        CheckpointError: If the file is missing, is not a checkpoint of this
            format, or would need code to be unpickled.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(
            f"no checkpoint to resume at {path}; the run finished or never "
            "completed an epoch, so train without --resume"
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for a damaged file
        # PyTorch's own text is left out: for a file that does not unpickle it
        # suggests weights_only=False, which could run code from the file.
        raise CheckpointError(
            f"cannot read the checkpoint {path} ({type(err).__name__}): it is "
            "damaged or was not written by sentiment-lstm train; start the run "
            "again with --overwrite instead of --resume"
        ) from err
    version = state.get("format_version") if isinstance(state, dict) else None
    if version != CHECKPOINT_FORMAT_VERSION:
        raise CheckpointError(
            f"{path} has checkpoint format {version!r}, expected "
            f"{CHECKPOINT_FORMAT_VERSION}; start the run again with --overwrite "
            "instead of --resume"
        )
    return state


def _check_identity(saved: dict[str, Any], current: dict[str, Any], path: Path) -> None:
    """Raise CheckpointError if the run that saved ``path`` had other settings.

    Versions of the package differ in what they record. When the checkpoint
    lacks a setting or a whole section, it is newer than the version that
    wrote the checkpoint, so it is not compared, and the log names it.
    A setting that only the checkpoint records, such as the data paths that
    earlier versions kept, is no longer compared either.
    """
    unrecorded_sections = sorted(set(current) - set(saved))
    unrecorded = unrecorded_sections + sorted(
        f"{section}.{key}"
        for section, values in current.items()
        if isinstance(values, dict) and isinstance(saved.get(section), dict)
        for key in values
        if key not in saved[section]
    )
    no_longer_compared = sorted(
        f"{section}.{key}"
        for section, values in saved.items()
        if isinstance(values, dict) and isinstance(current.get(section), dict)
        for key in values
        if key not in current[section]
    )
    if no_longer_compared:
        logger.debug(
            "not comparing %s of the checkpoint %s",
            ", ".join(no_longer_compared),
            path,
        )
    if unrecorded:
        logger.info(
            "the checkpoint %s was written by an earlier version that did not "
            "record %s; resuming without comparing them",
            path,
            ", ".join(unrecorded),
        )
    differences = sorted(
        f"{section}.{key}"
        for section in sorted(set(saved) | set(current))
        if section not in unrecorded_sections
        for key in _differing_keys(saved.get(section), current.get(section))
        if f"{section}.{key}" not in unrecorded + no_longer_compared
    )
    if _threshold_lowered(saved, current):
        # The threshold changes no weight, so an epoch it now lets through
        # can still be saved from the checkpoint. Raising it could not
        # unsave a model that the interrupted run saved.
        differences.remove(_THRESHOLD)
    if _same_reviews_from_data_alone(saved, current):
        # Reading flags or file names that give the same reviews, such as a
        # flag naming the column that training detected or a renamed copy of
        # the data, change nothing.
        differences = [
            name
            for name in differences
            if name not in _READ_FACTS and name not in _DATA_CONTENT_FACTS
        ]
    elif set(differences) & _DATA_CONTENT_FACTS:
        # Other data gives other counts by itself, which would read as if
        # the flags behind them had changed.
        differences = [name for name in differences if name not in _DATA_COUNTS]
    if differences:
        # dict.fromkeys drops a phrase that two recorded facts share
        changes = "; ".join(
            dict.fromkeys(_setting_change(name, saved, current) for name in differences)
        )
        raise CheckpointError(
            f"the checkpoint {path} comes from a run with other settings "
            f"({changes}); resume with the flags and data of the interrupted "
            "run, or train without --resume"
            + (
                " (a resumed run may lower --required-acc-checkpoint, not raise it)"
                if _THRESHOLD in differences
                else ""
            )
        )


# The name in messages of each setting that a checkpoint records: the train
# flag that sets it, with the flag's spelling of the recorded value where the
# two differ.
_SETTING_NAMES: dict[str, tuple[str, Callable[[Any], Any] | None]] = {
    "training.num_epochs": ("--num-epochs", None),
    "training.batch_size": ("--batch-size", None),
    "training.learning_rate": ("--learning-rate", None),
    "training.required_accuracy": ("--required-acc-checkpoint", None),
    "training.patience": ("--patience", lambda value: 0 if value is None else value),
    "training.seed": ("--seed", None),
    "training.max_grad_norm": ("--max-grad-norm", None),
    "training.weight_decay": ("--weight-decay", None),
    "training.optimizer": ("--optimizer", None),
    "training.lr_schedule": ("--lr-schedule", None),
    "training.warmup_fraction": ("--warmup-fraction", None),
    "training.class_weights": ("--class-weights", None),
    "training.freeze_embeddings": ("--freeze-embeddings", None),
    "training.ensemble_size": ("--ensemble-size", None),
    "model.embedding_dim": ("--embedding-size", None),
    "model.hidden_dim": ("--lstm-units", None),
    "model.num_layers": ("--num-layers", None),
    "model.bidirectional": (
        "--architecture",
        lambda value: "bidirectional" if value else "unidirectional",
    ),
    "model.dropout": ("--dropout-keep-prob", lambda value: float(f"{1 - value:.6g}")),
    "model.embedding_dropout": ("--embedding-dropout", None),
    "model.pooling": ("--pooling", None),
    "model.vocab_size": ("the vocabulary size", None),
    "model.num_classes": ("the number of classes", None),
    "text_encoder.max_length": ("--max-length", None),
    "text_encoder.min_frequency": ("--min-frequency", None),
    "text_encoder.max_vocab_size": ("--max-vocab-size", None),
    "embeddings.source": ("--embeddings", None),
    "embeddings.vectors_path": ("--pretrained-vectors", None),
    "embeddings.minilm_layers": ("--minilm-layers", None),
    "embeddings.nb_init_scale": ("--nb-init-scale", None),
}

# Recorded facts, mostly of the data, whose values (mostly hashes) mean
# nothing to a reader, so messages name them in words.
_DATA_FACTS = {
    "embeddings.vectors_sha256": (
        "the --pretrained-vectors file (its contents, or whether one was given)"
    ),
    "data.fingerprint": "the data files (their names or contents)",
    "data.data_files_fingerprint": "the data files (their names or contents)",
    "data.examples_fingerprint": "the reviews read",
    "data.review_set_fingerprint": "the reviews read",
    "data.read_options": (
        "the reading flags (--format, the columns, --stars and its cut-offs, "
        "--skip-bad-rows)"
    ),
    "data.columns": "the text and label columns read (--text-column, --label-column)",
    "data.split_sizes": (
        "the split sizes (--validation-fraction, --test-fraction, "
        "--validation-data, --test-data)"
    ),
    "data.bad_rows_skipped": "the number of rows skipped as bad",
    "data.left_out_by_stars": "the number of reviews left out by --stars",
}

# Facts that change whenever the data files or the reviews in them do, and
# the counts that then change with them.
_DATA_CONTENT_FACTS = frozenset(
    (
        "data.fingerprint",
        "data.data_files_fingerprint",
        "data.examples_fingerprint",
        "data.review_set_fingerprint",
    )
)
_DATA_COUNTS = frozenset(
    ("data.split_sizes", "data.bad_rows_skipped", "data.left_out_by_stars")
)

_UNSET = object()


# Facts of how the data was read, which matter only through the reviews read.
_READ_FACTS = frozenset(("data.read_options", "data.columns"))


def _same_reviews_from_data_alone(
    saved: dict[str, Any], current: dict[str, Any]
) -> bool:
    """Return whether both runs read the same reviews, all from --data.

    The reviews' fingerprint covers --data alone, so separate validation or
    test files, which the reading flags apply to as well, rule it out.
    """
    saved_reviews = _setting(saved, "data.examples_fingerprint")
    if saved_reviews is _UNSET or saved_reviews != _setting(
        current, "data.examples_fingerprint"
    ):
        return False
    # The files' fingerprint covers the separate files too, so it equals the
    # fingerprint of --data's files only without them.
    return all(
        _setting(identity, "data.fingerprint")
        == _setting(identity, "data.data_files_fingerprint")
        for identity in (saved, current)
    )


def _setting_change(name: str, saved: dict[str, Any], current: dict[str, Any]) -> str:
    """Describe how a ``section.key`` setting differs, naming its train flag."""
    if name == "data.read_options":
        changed = _read_option_changes(saved, current)
        if changed:
            return f"reading flags changed: {changed}"
    if name in _DATA_FACTS:
        return f"{_DATA_FACTS[name]} changed"
    label, spell = _SETTING_NAMES.get(name, (name, None))

    def text(value: Any) -> str:
        if value is _UNSET:
            return "unset"
        if spell is not None:
            try:
                value = spell(value)
            except (TypeError, ValueError):
                pass
        # a flag left out, or a switch off or on
        if value is None or value is False:
            return "not given"
        if value is True:
            return "given"
        written = repr(value)
        return written if len(written) <= 60 else written[:57] + "..."

    return f"{label} was {text(_setting(saved, name))}, now {text(_setting(current, name))}"


def _read_option_changes(saved: dict[str, Any], current: dict[str, Any]) -> str:
    """Name the reading flags that differ, such as ``--stars given (training: ...)``."""
    from sentiment_lstm.provenance import read_option_differences

    before = _setting(saved, "data.read_options")
    now = _setting(current, "data.read_options")
    if not isinstance(before, dict) or not isinstance(now, dict):
        return ""
    columns = [_setting(identity, "data.columns") for identity in (saved, current)]
    differences = read_option_differences(
        before,
        now,
        saved_columns=columns[0] if isinstance(columns[0], dict) else None,
        current_columns=columns[1] if isinstance(columns[1], dict) else None,
    )
    return ", ".join(differences)


_THRESHOLD = "training.required_accuracy"


def _threshold_lowered(saved: dict[str, Any], current: dict[str, Any]) -> bool:
    """Return whether the run lowers the interrupted run's --required-acc-checkpoint."""
    before = _setting(saved, _THRESHOLD)
    now = _setting(current, _THRESHOLD)
    return (
        isinstance(before, (int, float))
        and isinstance(now, (int, float))
        and now < before
    )


def saved_threshold(state: dict[str, Any]) -> float | None:
    """Return the --required-acc-checkpoint of the run that wrote a checkpoint."""
    value = _setting(state.get("identity", {}), _THRESHOLD)
    return float(value) if isinstance(value, (int, float)) else None


def _setting(identity: dict[str, Any], name: str) -> Any:
    """Return the value of a ``section.key`` setting, or _UNSET."""
    section, _, key = name.partition(".")
    values = identity.get(section, _UNSET)
    return values.get(key, _UNSET) if isinstance(values, dict) else values


def _differing_keys(saved: Any, current: Any) -> list[str]:
    if isinstance(saved, dict) and isinstance(current, dict):
        return [
            key
            for key in sorted(set(saved) | set(current))
            if not _same_setting(saved.get(key), current.get(key))
        ]
    return [] if _same_setting(saved, current) else ["value"]


def _same_setting(saved: Any, current: Any) -> bool:
    """Compare two recorded values, floats to 12 significant digits.

    Earlier versions recorded a dropout of 0.30000000000000004 where they now
    record 0.3 for the same flags.
    """
    if isinstance(saved, float) and isinstance(current, float):
        return math.isclose(saved, current, rel_tol=1e-12, abs_tol=1e-15)
    return saved == current


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


def correct_count(logits: torch.Tensor, targets: torch.Tensor) -> int:
    """Return how many rows of (batch, classes) logits give their target label.

    With two classes a row is positive when P(positive) >= 0.5, as in predict
    and evaluate, so an exact tie counts as positive, where argmax would pick
    class 0.
    """
    if logits.shape[1] == 2:
        predicted = (logits[:, 1] >= logits[:, 0]).long()
    else:
        predicted = logits.argmax(dim=1)
    return int((predicted == targets).sum())


def accuracy(model: SentimentLSTM, split: EncodedSplit, batch_size: int = 256) -> float:
    """Return the share of ``split`` that ``model`` labels correctly.

    Reviews without tokens are left out, as ``evaluate`` leaves them out,
    because a saved model gives them no score. Returns NaN when no
    review has tokens.
    """
    scorable = np.flatnonzero(split.lengths)
    if len(scorable) == 0:
        return math.nan
    token_ids = [split.token_ids[index] for index in scorable]
    probabilities = predict_probabilities(model, token_ids, batch_size)
    # predict and evaluate label a review positive at P(positive) >= 0.5, so
    # an exact tie counts as positive here too, where argmax would pick class 0.
    predicted = (probabilities[:, 1] >= 0.5).astype(np.int64)
    return float((predicted == split.labels[scorable]).mean())
