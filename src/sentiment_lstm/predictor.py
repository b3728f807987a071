"""Batched inference on a saved model: ``SentimentModel.load(dir).predict(texts)``.

The scoring backend sits behind one small interface. This module imports
nothing from training, and PyTorch only when the PyTorch backend is chosen.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from sentiment_lstm import artifact
from sentiment_lstm.batching import pad_batch, sorted_batches
from sentiment_lstm.text import TextEncoder

logger = logging.getLogger(__name__)

EMPTY_REVIEW = "empty review: no text to score"
BACKEND_CHOICES = ("auto", "torch", "onnx")


@dataclass(frozen=True)
class Prediction:
    """The score of one review.

    Attributes:
        text: The review as given.
        positive: Probability that the review is positive, or None if it could
            not be scored.
        negative: ``1 - positive``, or None.
        label: ``"positive"`` or ``"negative"``, whichever is more probable.
        error: Why the review was not scored, e.g. it was empty.
    """

    text: str
    positive: float | None
    negative: float | None
    label: str | None
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        values = {
            "text": self.text,
            "positive": self.positive,
            "negative": self.negative,
            "label": self.label,
        }
        if self.error is not None:
            values["error"] = self.error
        return values


class Backend(Protocol):
    """Turns padded token ids into class probabilities."""

    name: str

    def probabilities(self, token_ids: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        """Return (batch, classes) probabilities for (batch, seq_len) ids."""
        ...


class TorchBackend:
    """Scores with the PyTorch module rebuilt from the saved config."""

    name = "torch"

    def __init__(self, model_config: dict[str, Any], weights: dict[str, np.ndarray]):
        import torch

        from sentiment_lstm.model import ModelConfig, SentimentLSTM

        self._torch = torch
        self.module = SentimentLSTM(ModelConfig.from_dict(model_config))
        state = {name: torch.from_numpy(array) for name, array in weights.items()}
        self.module.load_state_dict(state, strict=True)
        self.module.eval()

    def probabilities(self, token_ids: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        torch = self._torch
        with torch.inference_mode():
            logits = self.module(torch.from_numpy(token_ids), torch.from_numpy(lengths))
            return torch.softmax(logits, dim=1).numpy()


class SentimentModel:
    """A trained model ready to score reviews.

    Example:
        >>> model = SentimentModel.load("models/rt-polarity")
        >>> model.predict(["a gorgeous, witty film"])[0].positive
        0.93...
    """

    def __init__(
        self,
        encoder: TextEncoder,
        backend: Backend,
        labels: Sequence[str],
        directory: Path | None = None,
        metadata: dict[str, Any] | None = None,
        model_config: dict[str, Any] | None = None,
    ) -> None:
        self.encoder = encoder
        self.backend = backend
        self.labels = tuple(labels)
        self.directory = directory
        self.metadata = metadata or {}
        self.model_config = model_config or {}
        self._positive_index = self.labels.index("positive")

    @classmethod
    def load(cls, directory: str | Path, backend: str = "auto") -> SentimentModel:
        """Load a model directory written by ``sentiment-lstm train``.

        Args:
            directory: The model directory.
            backend: ``torch``, or ``auto`` to pick the best one installed.

        Raises:
            ArtifactError: If a file is missing or corrupt; the message names it.
            ValueError: If ``backend`` is not one of ``BACKEND_CHOICES``.
        """
        if backend not in BACKEND_CHOICES:
            raise ValueError(
                f"backend must be one of {', '.join(BACKEND_CHOICES)}, "
                f"got {backend!r}"
            )
        directory = Path(directory)
        config = artifact.load_config(directory)
        encoder = artifact.load_encoder(directory)
        metadata = artifact.load_metadata(directory)
        weights = artifact.load_weights(directory)
        if "positive" not in config.labels or "negative" not in config.labels:
            raise artifact.ArtifactError(
                f"{directory / artifact.CONFIG_FILE}: labels must include "
                f"'negative' and 'positive', got {list(config.labels)}"
            )
        try:
            scorer = TorchBackend(config.model, weights)
        except (ValueError, RuntimeError, KeyError) as err:
            raise artifact.ArtifactError(
                f"{directory / artifact.WEIGHTS_FILE} does not match "
                f"{directory / artifact.CONFIG_FILE}: {err}"
            ) from err
        logger.debug("loaded %s with the %s backend", directory, scorer.name)
        return cls(
            encoder,
            scorer,
            config.labels,
            directory=directory,
            metadata=metadata,
            model_config=config.model,
        )

    def predict_proba(self, texts: Sequence[str], batch_size: int = 256) -> np.ndarray:
        """Return P(positive) per review, NaN where a review has no tokens.

        Args:
            texts: Reviews in any order; the result keeps that order.
            batch_size: Reviews per forward pass.
        """
        if isinstance(texts, str):
            raise TypeError("predict takes a list of reviews, not a single string")
        token_ids = self.encoder.encode_batch(list(texts))
        positive = np.full(len(token_ids), np.nan, dtype=np.float64)
        scorable = [i for i, ids in enumerate(token_ids) if ids]
        lengths = [len(token_ids[i]) for i in scorable]
        for batch in sorted_batches(lengths, batch_size):
            rows = [scorable[i] for i in batch]
            ids, batch_lengths = pad_batch(
                token_ids, np.asarray(rows), self.encoder.pad_index
            )
            probabilities = self.backend.probabilities(ids, batch_lengths)
            positive[rows] = probabilities[:, self._positive_index]
        return positive

    def predict(self, texts: Sequence[str], batch_size: int = 256) -> list[Prediction]:
        """Score reviews; an empty one gets a Prediction with ``error`` set.

        Args:
            texts: Reviews in any order; the result keeps that order.
            batch_size: Reviews per forward pass.

        Returns:
            One Prediction per review.
        """
        positive = self.predict_proba(texts, batch_size)
        predictions = []
        for text, probability in zip(texts, positive):
            if np.isnan(probability):
                predictions.append(Prediction(text, None, None, None, EMPTY_REVIEW))
                continue
            probability = float(probability)
            label = "positive" if probability >= 0.5 else "negative"
            predictions.append(Prediction(text, probability, 1.0 - probability, label))
        return predictions
