"""Train LSTM sentiment classifiers on review text and serve them.

``from sentiment_lstm import SentimentModel`` gives the prediction API; it is
imported on first use, so importing the package stays light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

# The one place the version is written; pyproject.toml reads it from here.
# Reading it from the installed metadata instead cost 30 ms at every start.
__version__ = "0.1.0"

if TYPE_CHECKING:
    from sentiment_lstm.predictor import (
        Prediction,
        ScoringCancelled,
        ScoringStopped,
        SentimentModel,
    )

__all__ = [
    "Prediction",
    "ScoringCancelled",
    "ScoringStopped",
    "SentimentModel",
    "__version__",
]


def __getattr__(name: str) -> Any:
    if name in __all__ and name != "__version__":
        from sentiment_lstm import predictor

        return getattr(predictor, name)
    raise AttributeError(f"module 'sentiment_lstm' has no attribute {name!r}")


def __dir__() -> list[str]:
    # The names of __all__ load on first use, so they are not yet in globals().
    return sorted(set(globals()) | set(__all__))
