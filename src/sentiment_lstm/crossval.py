"""Stratified k-fold cross-validation of the LSTM on one labelled data set.

Protocol: ``StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)``
splits the examples in the order they were read (for a pos/neg pair, the neg
lines then the pos lines). Within each training part a stratified
``validation_fraction`` is held out for early stopping and best-epoch
selection. The vocabulary comes from the rest of the training part. The test
fold is scored once, after training, with the best epoch's weights; no
decision looks at it.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sklearn.model_selection import StratifiedKFold, train_test_split

from sentiment_lstm.data.split import add_missing_classes
from sentiment_lstm.embeddings import EmbeddingConfig, InputFactory
from sentiment_lstm.metrics import classification_report, mean_and_std
from sentiment_lstm.pipeline import HELD_OUT_OVERLAP_WARNING_SHARE
from sentiment_lstm.text import TextEncoderConfig
from sentiment_lstm.training import (
    EncodedSplit,
    MemberProcessError,
    TrainingConfig,
    predict_probabilities,
    seed_everything,
    train_ensemble,
    warn_about_reviews_without_tokens,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class CrossValidationConfig:
    """Fold settings of a cross-validation run.

    Attributes:
        folds: Number of stratified folds.
        seed: ``random_state`` of the fold shuffle and of each fold's
            validation split.
        validation_fraction: Share of each training part held out for early
            stopping and best-epoch selection.
        run_folds: Run only the first this many folds; None runs all.
        parallel_members: Ensemble members trained at once, each in a process
            of its own on one thread; the results equal a one-thread run.
    """

    folds: int = 10
    seed: int = 0
    validation_fraction: float = 0.1
    run_folds: int | None = None
    parallel_members: int = 1

    def __post_init__(self) -> None:
        if isinstance(self.folds, bool) or not isinstance(self.folds, int):
            raise ValueError(f"folds must be an integer, got {self.folds!r}")
        if self.folds < 2:
            raise ValueError(f"folds must be at least 2, got {self.folds}")
        if not 0.0 < self.validation_fraction < 1.0:
            raise ValueError(
                "validation_fraction must be in (0, 1), "
                f"got {self.validation_fraction!r}"
            )
        if (
            isinstance(self.parallel_members, bool)
            or not isinstance(self.parallel_members, int)
            or self.parallel_members < 1
        ):
            raise ValueError(
                "parallel_members must be an integer of at least 1, "
                f"got {self.parallel_members!r}"
            )
        if self.run_folds is not None and not 1 <= self.run_folds <= self.folds:
            raise ValueError(
                f"run_folds must be between 1 and folds ({self.folds}), "
                f"got {self.run_folds!r}"
            )


@dataclass
class FoldResult:
    """Test scores of one fold and how its training went.

    Attributes:
        fold: 1-based fold number.
        accuracy: Test accuracy of the best validation epoch.
        macro_f1: Test macro F1 of that epoch.
        seconds: Wall time of the fold: encoding, training and scoring.
        cpu_seconds: CPU time of the process and of its member processes
            during the fold, all threads added up. With one PyTorch thread
            it is about the wall time the fold takes on a core of its own.
        best_epochs: Epoch chosen on validation accuracy, per ensemble member.
        epochs_run: Epochs trained before stopping, per ensemble member.
        validation_accuracy: Validation accuracy of the best epoch, or of the
            merged ensemble.
        sizes: Examples in the train, validation and test parts.
        unscored: Examples without tokens in each part, which training
            leaves out and the accuracies do not count.
        network: Settings of one member's network as built, such as the
            embedding size that pretrained vectors or MiniLM set.
    """

    fold: int
    accuracy: float
    macro_f1: float
    seconds: float
    cpu_seconds: float
    best_epochs: list[int]
    epochs_run: list[int]
    validation_accuracy: float
    sizes: dict[str, int] = field(default_factory=dict)
    unscored: dict[str, int] = field(default_factory=dict)
    network: dict[str, Any] = field(default_factory=dict)


@dataclass
class CrossValidationResult:
    """Per-fold results and the work shared by all folds.

    Attributes:
        folds: One result per fold run.
        shared_seconds: Wall time spent once before the folds, such as
            computing the contextual feature cache or reading a vectors file.
        settings: The configurations of the run, JSON-serialisable.
        complete: False when the run was interrupted before its last fold.
    """

    folds: list[FoldResult]
    shared_seconds: float
    settings: dict[str, Any]
    complete: bool = True

    def summary(self) -> dict[str, float | None]:
        """Return mean and sample standard deviation of accuracy, F1 and times.

        Each standard deviation is None (null in JSON) for a single fold,
        where it is undefined.
        """
        values: dict[str, float | None] = {}
        for name in ("accuracy", "macro_f1", "seconds", "cpu_seconds"):
            mean, std = mean_and_std([getattr(fold, name) for fold in self.folds])
            values[f"{name}_mean"] = mean
            values[f"{name}_std"] = std if len(self.folds) > 1 else None
        values["shared_seconds_per_fold"] = self.shared_seconds / max(
            1, len(self.folds)
        )
        return values

    def to_dict(self) -> dict[str, Any]:
        return {
            "complete": self.complete,
            "settings": self.settings,
            "folds": [dataclasses.asdict(fold) for fold in self.folds],
            "shared_seconds": self.shared_seconds,
            "summary": self.summary(),
        }


class CrossValidationFailed(ValueError):
    """A failure during the folds, with those that finished.

    Attributes:
        partial: The result of the finished folds, ``complete`` False.
    """

    def __init__(self, message: str, partial: CrossValidationResult) -> None:
        super().__init__(message)
        self.partial = partial


class CrossValidationInterrupted(KeyboardInterrupt):
    """An interruption by Ctrl-C or SIGTERM during the folds, with those that finished.

    Attributes:
        partial: The result of the finished folds, ``complete`` False unless
            the signal came after the last one.
    """

    def __init__(self, partial: CrossValidationResult) -> None:
        super().__init__()
        self.partial = partial


def check_validation_splits(
    labels: np.ndarray,
    folds: Sequence[tuple[np.ndarray, np.ndarray]],
    cv_config: CrossValidationConfig,
) -> None:
    """Check that each training part allows a stratified validation split.

    The conditions are those of scikit-learn's ``train_test_split`` with
    ``test_size=validation_fraction`` and ``stratify``: each class needs 2
    examples in the part, and each side of the split needs at least one
    example per class, 2 in all.

    Args:
        labels: Label of each example, 0 or 1.
        folds: The ``(train_indices, test_indices)`` pairs to run.
        cv_config: Fold count and validation share.

    Raises:
        ValueError: Naming the smallest training part that cannot be split,
            why, and the flag values or data that would make it work.
    """
    failures = []
    for train_indices, _ in folds:
        counts = np.bincount(labels[train_indices], minlength=2)
        reason = _split_problem(counts, cv_config.validation_fraction)
        if reason is not None:
            failures.append((int(counts.sum()), counts, reason))
    if not failures:
        return
    size, counts, reason = min(failures, key=lambda failure: failure[0])
    raise ValueError(
        f"{cv_config.folds} folds of {len(labels)} examples leave a training "
        f"part of {size} ({counts[0]} negative, {counts[1]} positive), too "
        f"small for a stratified --validation-fraction split: {reason}; use "
        + _split_fixes(labels, counts, cv_config)
    )


def _examples(count: int) -> str:
    """Return "1 example" or "3 examples"."""
    return f"{count} example" if count == 1 else f"{count} examples"


def _split_problem(class_counts: np.ndarray, fraction: float) -> str | None:
    """Return why a stratified split of a part with these counts fails, or None."""
    size = int(class_counts.sum())
    # train_test_split rounds the held-out count up and keeps the rest.
    held_out = math.ceil(fraction * size)
    if class_counts.min() < 2:
        return f"a class has {_examples(class_counts.min())} and needs 2"
    if held_out < 2:
        return (
            f"--validation-fraction {fraction:g} holds out {_examples(held_out)}, "
            "fewer than one per class"
        )
    if size - held_out < 2:
        return (
            f"--validation-fraction {fraction:g} leaves {_examples(size - held_out)} "
            "to train on, fewer than one per class"
        )
    return None


def _split_fixes(
    labels: np.ndarray, counts: np.ndarray, cv_config: CrossValidationConfig
) -> str:
    """List the flag changes and data that make such a part splittable."""
    fraction = cv_config.validation_fraction
    size = int(counts.sum())
    fixes = []
    if counts.min() >= 2:
        if math.ceil(fraction * size) < 2:
            # Rounded up, so that any value above it holds out 2 examples.
            fixes.append(
                f"a --validation-fraction above {math.ceil(1000 / size) / 1000:g}"
            )
        else:
            fixes.append("a smaller --validation-fraction")
    # More folds give larger training parts. StratifiedKFold (scikit-learn
    # 1.9) puts at most ceil(c / folds) examples of a class of c into a test
    # fold, so the first fold count whose smallest possible parts pass works.
    class_counts = np.bincount(labels, minlength=2)
    for more_folds in range(cv_config.folds + 1, int(class_counts.min()) + 1):
        smallest_part = class_counts - np.ceil(class_counts / more_folds).astype(int)
        if _split_problem(smallest_part, fraction) is None:
            fixes.append(f"--folds {more_folds}")
            break
    fixes.append("more data")
    if len(fixes) == 1:
        return fixes[0]
    return ", ".join(fixes[:-1]) + f" or {fixes[-1]}"


def _check_fold_overlap(
    texts: list[str], folds: Sequence[tuple[np.ndarray, np.ndarray]]
) -> None:
    """Warn when the folds' test reviews mostly repeat their training reviews."""
    shared = 0
    tested = 0
    for train_indices, test_indices in folds:
        training_texts = {texts[index] for index in train_indices}
        shared += sum(texts[index] in training_texts for index in test_indices)
        tested += len(test_indices)
    # The same share as for train's held-out parts.
    if shared and shared / tested >= HELD_OUT_OVERLAP_WARNING_SHARE:
        logger.warning(
            "%d of the %d test reviews of the folds also occur in their "
            "folds' training parts, because the data repeats reviews, so the "
            "accuracies are mostly measured on training reviews; remove the "
            "repeats from the data",
            shared,
            tested,
        )


def protocol_folds(
    labels: Sequence[int], folds: int = 10, seed: int = 0
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Split example indices into stratified, shuffled folds.

    Args:
        labels: Label of each example, in reading order.
        folds: Number of folds.
        seed: ``random_state`` of the shuffle.

    Returns:
        One ``(train_indices, test_indices)`` pair per fold.
    """
    labels = np.asarray(labels)
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    return list(splitter.split(np.zeros(len(labels)), labels))


FoldCallback = Callable[[FoldResult], None]


def cross_validate(
    texts: Sequence[str],
    labels: Sequence[int],
    *,
    cv_config: CrossValidationConfig = CrossValidationConfig(),
    encoder_config: TextEncoderConfig = TextEncoderConfig(),
    embedding_config: EmbeddingConfig = EmbeddingConfig(),
    model_options: dict[str, Any] | None = None,
    training_config: TrainingConfig = TrainingConfig(),
    on_fold: FoldCallback | None = None,
    show_progress: bool | None = False,
) -> CrossValidationResult:
    """Train and test the LSTM on each fold.

    Args:
        texts: All reviews, in reading order.
        labels: Their labels, 0 for negative and 1 for positive.
        cv_config: Folds, seed and validation share.
        encoder_config: Word tokenizer and vocabulary settings.
        embedding_config: Where the input vectors come from.
        model_options: ``ModelConfig`` fields other than ``vocab_size``.
        training_config: Optimisation settings, the same for every fold.
        on_fold: Called with each fold's result as soon as it is known.
        show_progress: Progress bar of each epoch's batches; None shows it
            only when stderr is a terminal.

    Returns:
        The per-fold results and the shared setup time.

    Raises:
        ValueError: If texts and labels differ in length, a class has fewer
            examples than there are folds, or a training part is too small
            for a stratified validation split.
        CrossValidationInterrupted: On Ctrl-C during the folds, carrying the
            results of those that finished.
    """
    labels_array = np.asarray(labels, dtype=np.int64)
    if len(texts) != len(labels_array):
        raise ValueError(f"{len(texts)} texts but {len(labels_array)} labels")
    counts = np.bincount(labels_array, minlength=2)
    if counts.min() < cv_config.folds:
        smallest = int(counts.min())
        # 2 folds is the fewest, so below that only more reviews help.
        fix = (
            f"lower --folds to {max(smallest, 2)} or add reviews of the smaller class"
            if smallest >= 2
            else f"add reviews of the smaller class, to at least {cv_config.folds}"
        )
        raise ValueError(
            f"{cv_config.folds} stratified folds need at least {cv_config.folds} "
            f"examples of each class, got {counts[0]} negative and {counts[1]} "
            f"positive; {fix}"
        )
    folds = protocol_folds(labels_array, cv_config.folds, cv_config.seed)
    if cv_config.run_folds is not None:
        folds = folds[: cv_config.run_folds]
    # Every fold to run is checked before any training, so that no fold's
    # validation split fails after earlier folds have trained.
    check_validation_splits(labels_array, folds, cv_config)
    texts = list(texts)
    _check_fold_overlap(texts, folds)

    started = time.perf_counter()
    factory = InputFactory(embedding_config, encoder_config, texts)
    shared_seconds = time.perf_counter() - started

    settings = {
        "cross_validation": dataclasses.asdict(cv_config),
        "text_encoder": dataclasses.asdict(encoder_config),
        "embeddings": dataclasses.asdict(embedding_config),
        "model": dict(model_options or {}),
        "training": training_config.to_dict(),
        "examples": len(texts),
    }
    results: list[FoldResult] = []
    try:
        _run_folds(
            results,
            folds,
            texts,
            labels_array,
            factory=factory,
            cv_config=cv_config,
            model_options=model_options or {},
            training_config=training_config,
            on_fold=on_fold,
            show_progress=show_progress,
        )
        return CrossValidationResult(results, shared_seconds, settings)
    except KeyboardInterrupt as err:
        # Complete when the signal came after the last fold.
        partial = CrossValidationResult(
            list(results),
            shared_seconds,
            settings,
            complete=len(results) == len(folds),
        )
        raise CrossValidationInterrupted(partial) from err
    except MemberProcessError as err:
        partial = CrossValidationResult(
            list(results), shared_seconds, settings, complete=False
        )
        raise CrossValidationFailed(str(err), partial) from err


def _run_folds(
    results: list[FoldResult],
    folds: Sequence[tuple[np.ndarray, np.ndarray]],
    texts: list[str],
    labels_array: np.ndarray,
    *,
    factory: InputFactory,
    cv_config: CrossValidationConfig,
    model_options: dict[str, Any],
    training_config: TrainingConfig,
    on_fold: FoldCallback | None,
    show_progress: bool | None,
) -> None:
    """Run the folds in order, appending each result to ``results``."""
    for number, (train_indices, test_indices) in enumerate(folds, start=1):
        logger.info("fold %d of %d", number, cv_config.folds)
        result = _run_fold(
            number,
            texts,
            labels_array,
            train_indices,
            test_indices,
            factory=factory,
            cv_config=cv_config,
            model_options=model_options,
            training_config=training_config,
            show_progress=show_progress,
        )
        logger.info(
            "fold %d: test accuracy %.4f, macro F1 %.4f, best epochs %s, %.1f s",
            number,
            result.accuracy,
            result.macro_f1,
            result.best_epochs,
            result.seconds,
        )
        results.append(result)
        if on_fold is not None:
            on_fold(result)


def _cpu_seconds() -> float:
    """Return the CPU time of this process and of its children that have ended.

    The worker processes of ``parallel_members`` end with the fold's
    ensemble, so their CPU time counts in the fold's.
    """
    try:
        import resource
    except ImportError:  # Windows, which has no getrusage
        return time.process_time()
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def _run_fold(
    number: int,
    texts: list[str],
    labels: np.ndarray,
    train_indices: np.ndarray,
    test_indices: np.ndarray,
    *,
    factory: InputFactory,
    cv_config: CrossValidationConfig,
    model_options: dict[str, Any],
    training_config: TrainingConfig,
    show_progress: bool | None,
) -> FoldResult:
    started = time.perf_counter()
    cpu_started = _cpu_seconds()
    fit_indices, validation_indices = train_test_split(
        train_indices,
        test_size=cv_config.validation_fraction,
        stratify=labels[train_indices],
        random_state=cv_config.seed,
        shuffle=True,
    )
    add_missing_classes(labels, fit_indices, validation_indices, "validation")

    # The vocabulary comes from the fitting part alone.
    seed_everything(training_config.seed)
    fit_texts = [texts[i] for i in fit_indices]
    prepared = factory.build(fit_texts, labels[fit_indices].tolist())
    if factory.config.source == "random" and prepared.encoder.vocab_size <= 2:
        raise ValueError(
            f"no word of the training part of fold {number} occurs "
            f"--min-frequency {factory.encoder_config.min_frequency} times, so "
            "the vocabulary would be only <pad> and <unk>; lower --min-frequency"
        )

    def encode(indices: np.ndarray) -> EncodedSplit:
        token_ids = prepared.encoder.encode_batch([texts[i] for i in indices])
        return EncodedSplit(token_ids, labels[indices])

    fit_split = EncodedSplit(prepared.encode_training(fit_texts), labels[fit_indices])
    validation_split = encode(validation_indices)
    test_split = encode(test_indices)

    # Validation picks the epoch. The test fold is scored only after training.
    warn_about_reviews_without_tokens(
        validation_split, f"fold {number} validation", "val_acc"
    )
    ensemble = train_ensemble(
        functools.partial(factory.make_model, prepared, model_options),
        fit_split,
        validation_split,
        training_config,
        show_progress=show_progress,
        workers=cv_config.parallel_members,
    )
    # Reviews without tokens get no score, as in evaluate.
    scorable = np.flatnonzero(test_split.lengths)
    unscored = len(test_split) - len(scorable)
    if unscored == 1:
        logger.warning("fold %d: 1 test review has no tokens and is not scored", number)
    elif unscored:
        logger.warning(
            "fold %d: %d test reviews have no tokens and are not scored",
            number,
            unscored,
        )
    probabilities = predict_probabilities(
        ensemble.model,
        [test_split.token_ids[index] for index in scorable],
        training_config.eval_batch_size,
    )
    report = classification_report(test_split.labels[scorable], probabilities[:, 1])
    return FoldResult(
        fold=number,
        accuracy=report["accuracy"],
        macro_f1=report["macro_f1"],
        seconds=time.perf_counter() - started,
        cpu_seconds=_cpu_seconds() - cpu_started,
        best_epochs=[member.best_epoch for member in ensemble.members],
        epochs_run=[len(member.history) for member in ensemble.members],
        validation_accuracy=ensemble.validation_accuracy,
        sizes={
            "train": len(fit_split),
            "validation": len(validation_split),
            "test": len(test_split),
        },
        unscored={
            "train": len(fit_split) - len(fit_split.with_tokens()),
            "validation": len(validation_split) - len(validation_split.with_tokens()),
            "test": unscored,
        },
        network=ensemble.members[0].model.config.to_dict(),
    )
