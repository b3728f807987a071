"""Classical baselines on rt-polarity under 10-fold cross-validation.

Protocol: the neg lines followed by the pos lines form one list (label 0 for
negative, 1 for positive). ``StratifiedKFold(n_splits=10, shuffle=True,
random_state=0)`` splits it, and each baseline is fitted on the training part
of a fold and scored on its test part (accuracy and macro F1).

Baselines:
  * ``tfidf-lr``: TF-IDF over word unigrams and bigrams with logistic
    regression. C is picked per fold on a stratified validation part carved
    from the training part, and the model is then refitted on the whole
    training part.
  * ``nbsvm-svm`` and ``nbsvm-lr``: NBSVM-bi from Wang and Manning, "Baselines
    and Bigrams: Simple, Good Sentiment and Topic Classification" (ACL 2012).
    Binarized unigram and bigram features are scaled by the log-count ratio,
    then a linear SVM (with the paper's interpolation towards the mean weight)
    or a logistic regression is fitted on them.

The functions are importable by a larger benchmark script, and nothing here
depends on the sentiment_lstm package. Run it from the repository root::

    python benchmarks/baselines.py --data ../shared/data/rt-polarity --json out.json
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import sklearn
from sklearn.feature_extraction.text import CountVectorizer, TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score
from sklearn.model_selection import StratifiedKFold, train_test_split
from sklearn.svm import LinearSVC

logger = logging.getLogger(__name__)

DEFAULT_DATA_DIR = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
DEFAULT_RT_POLARITY_DIR = DEFAULT_DATA_DIR / "rt-polarity"

PROTOCOL_N_SPLITS = 10
PROTOCOL_SEED = 0
RT_POLARITY_ENCODING = "cp1252"
# The corpus is lowercased and tokenized by its authors, so whitespace splitting
# keeps punctuation such as "!" and "?" as tokens of their own.
WHITESPACE_TOKEN_PATTERN = r"\S+"
TFIDF_C_GRID = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0)


@dataclass(frozen=True)
class FoldResult:
    """Scores of one baseline on one test fold.

    Attributes:
        accuracy: Fraction of test examples classified correctly.
        macro_f1: Unweighted mean of the per-class F1 scores.
        seconds: Wall-clock time of feature extraction, fitting (model
            selection included) and prediction.
        num_train: Number of training examples.
        num_test: Number of test examples.
        params: Hyperparameters used, including any chosen on validation data.
    """

    accuracy: float
    macro_f1: float
    seconds: float
    num_train: int
    num_test: int
    params: dict[str, float | str] = field(default_factory=dict)


BaselineFunction = Callable[
    [Sequence[str], np.ndarray, Sequence[str], np.ndarray], FoldResult
]


def load_rt_polarity(folder: str | Path) -> tuple[list[str], np.ndarray]:
    """Read rt-polarity.neg then rt-polarity.pos as one labelled list.

    The files are cp1252, where byte 0x85 is an ellipsis. Lines are split on
    b"\\n" only because ``str.splitlines`` would also break at 0x85.

    Args:
        folder: Directory containing ``rt-polarity.neg`` and ``rt-polarity.pos``.

    Returns:
        The texts (all neg lines, then all pos lines) and an int64 array of
        labels, 0 for negative and 1 for positive.

    Raises:
        FileNotFoundError: A file is missing from ``folder``.
        ValueError: A line is not valid cp1252 or is blank. The message names
            the file and the 1-based line number.
    """
    folder = Path(folder)
    texts: list[str] = []
    labels: list[int] = []
    for label, suffix in ((0, "neg"), (1, "pos")):
        path = folder / f"rt-polarity.{suffix}"
        if not path.is_file():
            raise FileNotFoundError(
                f"rt-polarity file not found: {path}. Pass --data with the "
                "directory that contains rt-polarity.neg and rt-polarity.pos."
            )
        lines = _read_lines(path)
        logger.info("read %d lines from %s", len(lines), path)
        texts.extend(lines)
        labels.extend([label] * len(lines))
    return texts, np.asarray(labels, dtype=np.int64)


def _read_lines(path: Path) -> list[str]:
    raw_lines = path.read_bytes().split(b"\n")
    # A final newline leaves one empty piece after the last line.
    if raw_lines and raw_lines[-1] == b"":
        raw_lines.pop()
    lines = []
    for line_number, raw in enumerate(raw_lines, start=1):
        try:
            text = raw.decode(RT_POLARITY_ENCODING).rstrip("\r")
        except UnicodeDecodeError as err:
            raise ValueError(
                f"{path}:{line_number}: invalid {RT_POLARITY_ENCODING} byte at "
                f"offset {err.start}. Expected the original rt-polarity files."
            ) from err
        if not text.strip():
            raise ValueError(
                f"{path}:{line_number}: blank line. Each line must contain one "
                "review snippet."
            )
        lines.append(text)
    return lines


def protocol_folds(
    labels: np.ndarray,
    n_splits: int = PROTOCOL_N_SPLITS,
    seed: int = PROTOCOL_SEED,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Split example indices into the protocol's stratified folds.

    Args:
        labels: Label of each example, in the order of ``load_rt_polarity``.
        n_splits: Number of folds. The protocol uses 10.
        seed: ``random_state`` of the shuffle. The protocol uses 0.

    Returns:
        One ``(train_indices, test_indices)`` pair of int arrays per fold.
    """
    labels = np.asarray(labels)
    splitter = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    return list(splitter.split(np.zeros(len(labels)), labels))


def run_tfidf_lr(
    train_texts: Sequence[str],
    train_labels: np.ndarray,
    test_texts: Sequence[str],
    test_labels: np.ndarray,
    *,
    c_grid: Sequence[float] = TFIDF_C_GRID,
    validation_fraction: float = 0.1,
    seed: int = PROTOCOL_SEED,
) -> FoldResult:
    """Fit TF-IDF (word 1-2-grams) with logistic regression and score it.

    C is the value of ``c_grid`` with the best accuracy on a stratified
    ``validation_fraction`` of the training data. The vectorizer and the
    classifier are then refitted on all the training data with that C.

    Args:
        train_texts: Training texts.
        train_labels: Training labels (0 or 1).
        test_texts: Test texts.
        test_labels: Test labels (0 or 1).
        c_grid: Inverse regularization strengths to try.
        validation_fraction: Share of the training data held out to pick C.
        seed: Seed of the validation split.

    Returns:
        Test-fold scores, with the chosen C in ``params``.
    """
    start = time.perf_counter()
    train_labels = np.asarray(train_labels)

    # model selection on a validation part of the training data
    sub_texts, val_texts, sub_labels, val_labels = train_test_split(
        list(train_texts),
        train_labels,
        test_size=validation_fraction,
        stratify=train_labels,
        random_state=seed,
    )
    vectorizer = _make_tfidf_vectorizer()
    sub_features = vectorizer.fit_transform(sub_texts)
    val_features = vectorizer.transform(val_texts)
    val_accuracies = []
    for c in c_grid:
        classifier = _make_logistic_regression(c).fit(sub_features, sub_labels)
        val_predictions = classifier.predict(val_features)
        val_accuracies.append(accuracy_score(val_labels, val_predictions))
    # Ties go to the first C in c_grid, the smallest when the grid is ascending.
    best_c = float(c_grid[int(np.argmax(val_accuracies))])

    # refit on all the training data
    vectorizer = _make_tfidf_vectorizer()
    train_features = vectorizer.fit_transform(train_texts)
    classifier = _make_logistic_regression(best_c).fit(train_features, train_labels)
    predictions = classifier.predict(vectorizer.transform(test_texts))

    seconds = time.perf_counter() - start
    return _score(
        test_labels,
        predictions,
        seconds=seconds,
        num_train=len(train_texts),
        params={"C": best_c, "validation_accuracy": round(max(val_accuracies), 4)},
    )


def _make_tfidf_vectorizer() -> TfidfVectorizer:
    return TfidfVectorizer(
        ngram_range=(1, 2),
        token_pattern=WHITESPACE_TOKEN_PATTERN,
        lowercase=True,
        sublinear_tf=True,
    )


def _make_logistic_regression(c: float) -> LogisticRegression:
    return LogisticRegression(C=c, solver="liblinear", max_iter=1000)


def run_nbsvm(
    train_texts: Sequence[str],
    train_labels: np.ndarray,
    test_texts: Sequence[str],
    test_labels: np.ndarray,
    *,
    variant: str = "svm",
    alpha: float = 1.0,
    beta: float = 0.25,
    c: float = 1.0,
) -> FoldResult:
    """Fit NBSVM-bi (Wang and Manning, ACL 2012) and score it.

    Features are binarized word unigrams and bigrams ``x``. The log-count
    ratio is ``r = log((p / |p|_1) / (q / |q|_1))`` with ``p = alpha + sum of
    x over positive examples`` and ``q`` the same over negative examples. The
    classifier is fitted on ``r * x``.

    With ``variant="svm"`` it is an L2-regularized squared-hinge linear SVM,
    and its weights are interpolated as ``w' = (1 - beta) * mean(|w|) + beta *
    w``. The ``mean(|w|)`` share of the score is a scaled naive Bayes score, so
    the intercept is interpolated the same way between the naive Bayes log
    prior ratio and the SVM intercept. With ``variant="logistic"`` an
    L2-regularized logistic regression is fitted and ``beta`` is unused.

    Args:
        train_texts: Training texts.
        train_labels: Training labels (0 or 1).
        test_texts: Test texts.
        test_labels: Test labels (0 or 1).
        variant: "svm" or "logistic".
        alpha: Smoothing count added to every feature in ``p`` and ``q``.
        beta: Interpolation weight of the SVM weights. The paper uses 0.25.
        c: Inverse regularization strength. The paper uses 1 for the SVM.

    Returns:
        Test-fold scores, with the hyperparameters in ``params``.

    Raises:
        ValueError: ``variant`` is not "svm" or "logistic", or the training
            labels are not 0 and 1.
    """
    if variant not in ("svm", "logistic"):
        raise ValueError(
            f"invalid NBSVM variant {variant!r}: expected 'svm' or 'logistic'."
        )
    train_labels = np.asarray(train_labels)
    if set(np.unique(train_labels).tolist()) != {0, 1}:
        raise ValueError(
            f"training labels must contain both 0 and 1, got "
            f"{np.unique(train_labels).tolist()}."
        )
    start = time.perf_counter()

    # binarized 1-2-gram counts and the log-count ratio
    vectorizer = CountVectorizer(
        ngram_range=(1, 2),
        token_pattern=WHITESPACE_TOKEN_PATTERN,
        lowercase=True,
        binary=True,
    )
    train_features = vectorizer.fit_transform(train_texts).astype(np.float64)
    test_features = vectorizer.transform(test_texts).astype(np.float64)
    ratio = _log_count_ratio(train_features, train_labels, alpha)
    scaling = sp.diags(ratio)
    train_scaled = train_features @ scaling
    test_scaled = test_features @ scaling

    # classifier on the scaled features
    if variant == "svm":
        classifier = LinearSVC(C=c, loss="squared_hinge", penalty="l2", max_iter=10000)
        classifier.fit(train_scaled, train_labels)
        weights = classifier.coef_.ravel()
        mean_magnitude = np.abs(weights).mean()
        interpolated = (1.0 - beta) * mean_magnitude + beta * weights
        num_positive = int(train_labels.sum())
        log_prior_ratio = np.log(num_positive / (len(train_labels) - num_positive))
        # NOTE: the paper states the interpolation for the weights only. This
        # intercept rule is an assumption, and it is close to beta * b here
        # because rt-polarity is balanced.
        intercept = (1.0 - beta) * log_prior_ratio + beta * classifier.intercept_[0]
        scores = test_scaled @ interpolated + intercept
        predictions = (scores > 0).astype(np.int64)
        params: dict[str, float | str] = {
            "variant": variant,
            "alpha": alpha,
            "beta": beta,
            "C": c,
        }
    else:
        classifier = LogisticRegression(C=c, solver="liblinear", max_iter=1000)
        classifier.fit(train_scaled, train_labels)
        predictions = classifier.predict(test_scaled)
        params = {"variant": variant, "alpha": alpha, "C": c}

    seconds = time.perf_counter() - start
    return _score(
        test_labels,
        predictions,
        seconds=seconds,
        num_train=len(train_texts),
        params=params,
    )


def _log_count_ratio(
    features: sp.csr_matrix, labels: np.ndarray, alpha: float
) -> np.ndarray:
    positive_counts = np.asarray(features[labels == 1].sum(axis=0)).ravel() + alpha
    negative_counts = np.asarray(features[labels == 0].sum(axis=0)).ravel() + alpha
    return np.log(positive_counts / positive_counts.sum()) - np.log(
        negative_counts / negative_counts.sum()
    )


def _score(
    test_labels: np.ndarray,
    predictions: np.ndarray,
    *,
    seconds: float,
    num_train: int,
    params: dict[str, float | str],
) -> FoldResult:
    return FoldResult(
        accuracy=float(accuracy_score(test_labels, predictions)),
        macro_f1=float(f1_score(test_labels, predictions, average="macro")),
        seconds=seconds,
        num_train=num_train,
        num_test=len(test_labels),
        params=params,
    )


def _run_nbsvm_logistic(
    train_texts: Sequence[str],
    train_labels: np.ndarray,
    test_texts: Sequence[str],
    test_labels: np.ndarray,
) -> FoldResult:
    return run_nbsvm(
        train_texts, train_labels, test_texts, test_labels, variant="logistic"
    )


BASELINES: dict[str, BaselineFunction] = {
    "tfidf-lr": run_tfidf_lr,
    "nbsvm-svm": run_nbsvm,
    "nbsvm-lr": _run_nbsvm_logistic,
}


def cross_validate(
    baseline: BaselineFunction,
    texts: Sequence[str],
    labels: np.ndarray,
    folds: Sequence[tuple[np.ndarray, np.ndarray]],
) -> list[FoldResult]:
    """Run a baseline on each fold.

    Args:
        baseline: A function with the signature of ``run_tfidf_lr``.
        texts: All texts.
        labels: All labels.
        folds: ``(train_indices, test_indices)`` pairs, as from
            ``protocol_folds``.

    Returns:
        One result per fold, in the order of ``folds``.
    """
    labels = np.asarray(labels)
    results = []
    for train_indices, test_indices in folds:
        results.append(
            baseline(
                [texts[i] for i in train_indices],
                labels[train_indices],
                [texts[i] for i in test_indices],
                labels[test_indices],
            )
        )
    return results


def summarize(results: Sequence[FoldResult]) -> dict[str, float | None]:
    """Average fold results.

    Standard deviations are sample standard deviations (ddof=1) across folds,
    and 0.0 for a single fold.

    Args:
        results: Results of one baseline on several folds.

    Returns:
        Mean and standard deviation of accuracy, macro F1 and seconds, under
        keys such as ``accuracy_mean`` and ``accuracy_std``.
    """
    summary = {}
    for metric in ("accuracy", "macro_f1", "seconds"):
        values = np.array([getattr(result, metric) for result in results])
        summary[f"{metric}_mean"] = float(values.mean())
        # The sample standard deviation of one fold is undefined.
        summary[f"{metric}_std"] = (
            float(values.std(ddof=1)) if len(values) > 1 else None
        )
    return summary


def _spread(mean: float, std: float | None) -> str:
    """Format a mean and standard deviation as percentages, with n/a for None."""
    return f"{100 * mean:.2f} ± {'n/a' if std is None else f'{100 * std:.2f}'}"


def _format_params(params: dict[str, float | str]) -> str:
    return " ".join(f"{key}={value}" for key, value in params.items())


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Score classical baselines on rt-polarity with 10-fold "
        "stratified cross-validation (shuffled, random_state=0)."
    )
    parser.add_argument(
        "--data",
        type=Path,
        default=DEFAULT_RT_POLARITY_DIR,
        help="directory containing rt-polarity.neg and rt-polarity.pos "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--json",
        type=Path,
        default=None,
        help="path of a JSON file to write the per-fold and summary results to",
    )
    parser.add_argument(
        "--baselines",
        nargs="+",
        choices=sorted(BASELINES),
        default=list(BASELINES),
        help="baselines to run (default: all)",
    )
    parser.add_argument(
        "--folds",
        type=int,
        default=PROTOCOL_N_SPLITS,
        help="number of protocol folds to run, starting from the first. A value "
        f"below {PROTOCOL_N_SPLITS} gives a quick partial run (default: %(default)s)",
    )
    args = parser.parse_args(argv)
    if not 1 <= args.folds <= PROTOCOL_N_SPLITS:
        parser.error(
            f"--folds must be between 1 and {PROTOCOL_N_SPLITS}, got {args.folds}"
        )
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the baselines, print per-fold and summary tables, write JSON.

    Args:
        argv: Command-line arguments without the program name. None reads
            ``sys.argv``.

    Returns:
        The process exit status.
    """
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    args = _parse_args(argv)

    texts, labels = load_rt_polarity(args.data)
    folds = protocol_folds(labels)[: args.folds]
    print(
        f"rt-polarity: {len(texts)} examples ({int((labels == 0).sum())} negative, "
        f"{int(labels.sum())} positive), {len(folds)} of {PROTOCOL_N_SPLITS} folds"
    )

    report: dict[str, object] = {
        "protocol": {
            "data": str(args.data.resolve()),
            "order": "neg lines then pos lines; label 0 negative, 1 positive",
            "splitter": "StratifiedKFold(n_splits=10, shuffle=True, random_state=0)",
            "folds_run": len(folds),
            "std": "sample standard deviation across folds (ddof=1)",
        },
        "environment": {
            "python": platform.python_version(),
            "scikit_learn": sklearn.__version__,
            "numpy": np.__version__,
            "cpu_count": os.cpu_count(),
            "platform": platform.platform(),
        },
        "baselines": {},
    }

    for name in args.baselines:
        results = []
        print(f"\n{name}")
        print(f"{'fold':>4}  {'accuracy':>8}  {'macro F1':>8}  {'seconds':>7}  params")
        for fold_number, fold in enumerate(folds, start=1):
            result = cross_validate(BASELINES[name], texts, labels, [fold])[0]
            results.append(result)
            print(
                f"{fold_number:>4}  {100 * result.accuracy:>8.2f}  "
                f"{100 * result.macro_f1:>8.2f}  {result.seconds:>7.2f}  "
                f"{_format_params(result.params)}"
            )
        summary = summarize(results)
        print(
            f"mean  {_spread(summary['accuracy_mean'], summary['accuracy_std'])}  "
            f"F1 {_spread(summary['macro_f1_mean'], summary['macro_f1_std'])}  "
            f"{summary['seconds_mean']:.2f} s per fold"
        )
        report["baselines"][name] = {
            "folds": [asdict(result) for result in results],
            "summary": summary,
        }

    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        logger.info("wrote %s", args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
