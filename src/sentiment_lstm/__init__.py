"""Train LSTM sentiment classifiers on review text and serve them.

``from sentiment_lstm import SentimentModel`` gives the prediction API; it is
imported on first use, so importing the package stays light.
"""

from __future__ import annotations

from importlib import metadata as _metadata
from typing import TYPE_CHECKING, Any

try:
    __version__ = _metadata.version("sentiment-lstm")
except _metadata.PackageNotFoundError:
    __version__ = "0+unknown"

if TYPE_CHECKING:
    from sentiment_lstm.predictor import Prediction, SentimentModel

__all__ = ["Prediction", "SentimentModel", "__version__"]


def __getattr__(name: str) -> Any:
    if name in ("Prediction", "SentimentModel"):
        from sentiment_lstm import predictor

        return getattr(predictor, name)
    raise AttributeError(f"module 'sentiment_lstm' has no attribute {name!r}")
