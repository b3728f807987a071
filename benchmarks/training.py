"""Held-out accuracy and seconds per epoch on rt-polarity, uni and bi.

Trains with the original project's hyperparameters (100 LSTM units, keep
probability 0.5, embedding size 100, learning rate 0.0005, batch 32) on the
default seeded 80/10/10 split, with early stopping off so every epoch is
measured, and prints a markdown table of each epoch's figures.

Usage:
    python benchmarks/training.py --data ../shared/data/rt-polarity --epochs 10
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import subprocess
import sys
from pathlib import Path
from tempfile import TemporaryDirectory

import torch

from sentiment_lstm.pipeline import DataSpec, load_splits, train_model
from sentiment_lstm.training import TrainingConfig

ARCHITECTURES = ("unidirectional", "bidirectional")


def machine_description() -> str:
    """Return the CPU model, core count and PyTorch thread count."""
    cpu = platform.processor() or "unknown CPU"
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=True)
        for line in lscpu.stdout.splitlines():
            if line.startswith("Model name:"):
                cpu = line.split(":", 1)[1].strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    return (
        f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__} "
        f"with {torch.get_num_threads()} threads"
    )


def run(data: str, epochs: int, seed: int) -> dict[str, list[dict]]:
    """Train each architecture and return its per-epoch history."""
    splits = load_splits(DataSpec(data=data), seed=seed)
    results = {}
    for architecture in ARCHITECTURES:
        with TemporaryDirectory() as output_dir:
            outcome = train_model(
                splits,
                Path(output_dir),
                model_options={"bidirectional": architecture == "bidirectional"},
                training_config=TrainingConfig(
                    num_epochs=epochs, patience=None, seed=seed
                ),
                show_progress=False,
            )
        results[architecture] = {
            "best_epoch": outcome.result.best_epoch,
            "epochs": [vars(m) for m in outcome.result.history],
        }
    return results


def markdown(results: dict, command: str) -> str:
    """Render the per-epoch figures of both architectures side by side."""
    lines = [
        f"Machine: {machine_description()}; load average before the run: "
        f"{os.getloadavg()[0]:.2f}.",
        f"Command: `{command}`",
        "",
        "| epoch | uni val_acc | uni test_acc | uni secs "
        "| bi val_acc | bi test_acc | bi secs |",
        "|---|---|---|---|---|---|---|",
    ]
    uni = results["unidirectional"]["epochs"]
    bi = results["bidirectional"]["epochs"]
    for u, b in zip(uni, bi):
        lines.append(
            f"| {u['epoch']} | {u['validation_accuracy']:.3f} "
            f"| {u['test_accuracy']:.3f} | {u['seconds']:.1f} "
            f"| {b['validation_accuracy']:.3f} | {b['test_accuracy']:.3f} "
            f"| {b['seconds']:.1f} |"
        )
    for architecture in ARCHITECTURES:
        history = results[architecture]
        best = history["epochs"][history["best_epoch"] - 1]
        lines.append(
            f"\n{architecture}: best validation epoch {history['best_epoch']}, "
            f"val_acc {best['validation_accuracy']:.3f}, "
            f"test_acc {best['test_accuracy']:.3f}"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/data/rt-polarity")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    results = run(args.data, args.epochs, args.seed)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    print(markdown(results, "python " + " ".join(sys.argv)))


if __name__ == "__main__":
    main()
