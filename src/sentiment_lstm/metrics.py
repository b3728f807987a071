"""Classification metrics of a model on labelled reviews."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    precision_recall_fscore_support,
    roc_auc_score,
)


def classification_report(
    labels: Sequence[int],
    positive_probabilities: Sequence[float],
    label_names: Sequence[str] = ("negative", "positive"),
) -> dict[str, Any]:
    """Compute accuracy, per-class precision/recall/F1, confusion matrix, ROC-AUC.

    Args:
        labels: True classes, 0 for negative and 1 for positive.
        positive_probabilities: Predicted probability of the positive class.
        label_names: Names of classes 0 and 1.

    Returns:
        A JSON-serialisable dict. ``roc_auc`` is None when only one class
        occurs in ``labels``, because the curve is undefined then.

    Raises:
        ValueError: If the inputs differ in length or are empty.
    """
    truth = np.asarray(labels, dtype=np.int64)
    scores = np.asarray(positive_probabilities, dtype=np.float64)
    if truth.shape != scores.shape:
        raise ValueError(f"{len(truth)} labels but {len(scores)} probabilities")
    if truth.size == 0:
        raise ValueError("no labelled reviews to evaluate")
    predicted = (scores >= 0.5).astype(np.int64)
    classes = list(range(len(label_names)))

    precision, recall, f1, support = precision_recall_fscore_support(
        truth, predicted, labels=classes, zero_division=0
    )
    per_class = {
        name: {
            "precision": float(precision[i]),
            "recall": float(recall[i]),
            "f1": float(f1[i]),
            "support": int(support[i]),
        }
        for i, name in enumerate(label_names)
    }
    roc_auc = None
    if len(np.unique(truth)) == 2:
        roc_auc = float(roc_auc_score(truth, scores))
    matrix = confusion_matrix(truth, predicted, labels=classes)
    return {
        "reviews": int(truth.size),
        "accuracy": float(accuracy_score(truth, predicted)),
        "macro_f1": float(np.mean(f1)),
        "per_class": per_class,
        "confusion_matrix": {
            "labels": list(label_names),
            "rows_are": "true label",
            "columns_are": "predicted label",
            "matrix": matrix.tolist(),
        },
        "roc_auc": roc_auc,
    }


def format_report(report: dict[str, Any]) -> str:
    """Render a classification report as an aligned text table."""
    names = report["confusion_matrix"]["labels"]
    width = max(len(name) for name in names + ["predicted"]) + 2
    lines = [f"reviews:  {report['reviews']}"]
    # evaluate adds the count of reviews that it could not score
    unscored = report.get("unscored_reviews", 0)
    if unscored:
        lines.append(
            f"unscored: {unscored} without tokens, left out of the figures below"
        )
    # evaluate adds the count of reviews that the model was trained on
    # None for a model that records no hashes of its training reviews.
    seen = report.get("training_reviews_seen")
    if seen is not None and report.get("training_reviews_compared"):
        trained = (
            f"trained:  {seen} of the {report['training_reviews_compared']} "
            "reviews of 5 or more words were in the model's training part"
        )
        if seen:
            trained += (
                ", which makes the figures below overstate accuracy on new reviews"
            )
        lines.append(trained)
    lines += [
        f"accuracy: {report['accuracy']:.4f}",
        f"macro F1: {report['macro_f1']:.4f}",
        "ROC-AUC:  "
        + (
            "n/a (one class only)"
            if report["roc_auc"] is None
            else f"{report['roc_auc']:.4f}"
        ),
        "",
        f"{'class':<{width}}{'precision':>10}{'recall':>10}{'f1':>10}{'support':>10}",
    ]
    for name in names:
        scores = report["per_class"][name]
        lines.append(
            f"{name:<{width}}{scores['precision']:>10.4f}{scores['recall']:>10.4f}"
            f"{scores['f1']:>10.4f}{scores['support']:>10d}"
        )
    lines += ["", "confusion matrix (rows: true, columns: predicted)"]
    lines.append(" " * width + "".join(f"{name:>{width}}" for name in names))
    for name, row in zip(names, report["confusion_matrix"]["matrix"]):
        lines.append(
            f"{name:<{width}}" + "".join(f"{count:>{width}d}" for count in row)
        )
    return "\n".join(lines)


def mean_and_std(values: Sequence[float]) -> tuple[float, float]:
    """Return the mean and the sample standard deviation (0 for one value)."""
    array = np.asarray(values, dtype=np.float64)
    if array.size == 0:
        return math.nan, math.nan
    std = float(array.std(ddof=1)) if array.size > 1 else 0.0
    return float(array.mean()), std
