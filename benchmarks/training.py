"""Held-out accuracy and seconds per epoch on rt-polarity, uni and bi.

Runs the original project's training command through the ``sentiment-lstm``
command line (100 LSTM units, keep probability 0.5, embedding size 100,
learning rate 0.0005, batch 32, every other setting at its default) on the
default seeded 80/10/10 split, with early stopping off so every epoch is
measured. Prints a markdown table of each epoch's accuracies and wall seconds,
the best validation epoch, and the CPU seconds of the whole run.

Usage:
    python benchmarks/training.py --data ../shared/data/rt-polarity --epochs 10
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from tempfile import TemporaryDirectory

from machine import machine_description, positive_int

ARCHITECTURES = ("unidirectional", "bidirectional")


def train_command(data: str, architecture: str, epochs: int, output: Path) -> list[str]:
    """Return the original project's command, with early stopping off."""
    return [
        sys.executable,
        "-m",
        "sentiment_lstm",
        "train",
        "--data",
        data,
        "--output-dir",
        str(output),
        "--num_epoch",
        str(epochs),
        "--batch_size",
        "32",
        "--learning_rate",
        "0.0005",
        "--architecture",
        architecture,
        "--lstm_units",
        "100",
        "--dropout_keep_prob",
        "0.5",
        "--embedding_size",
        "100",
        "--patience",
        "0",
    ]


def run(data: str, epochs: int) -> dict[str, dict]:
    """Train each architecture in a child process and collect its figures."""
    results = {}
    for architecture in ARCHITECTURES:
        with TemporaryDirectory() as directory:
            output = Path(directory) / "model"
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            started = time.perf_counter()
            subprocess.run(
                train_command(data, architecture, epochs, output),
                check=True,
                stderr=subprocess.DEVNULL,
            )
            wall = time.perf_counter() - started
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            history = json.loads((output / "metrics.json").read_text())
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        history["run_wall_seconds"] = wall
        history["run_cpu_seconds"] = cpu
        results[architecture] = history
    return results


def markdown(results: dict, command: str, load: float) -> str:
    """Render both architectures' per-epoch figures side by side."""
    lines = [
        f"Machine: {machine_description()}; 1-minute load average before the "
        f"run: {load:.2f}.",
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
    lines.append("")
    for architecture in ARCHITECTURES:
        history = results[architecture]
        epochs = history["epochs"]
        best = epochs[history["best_epoch"] - 1]
        mean_seconds = sum(e["seconds"] for e in epochs) / len(epochs)
        lines.append(
            f"- {architecture}: best validation epoch {history['best_epoch']}, "
            f"val_acc {best['validation_accuracy']:.3f}, "
            f"test_acc {best['test_accuracy']:.3f}; "
            f"{mean_seconds:.2f} s per epoch (wall, mean); whole run "
            f"{history['run_wall_seconds']:.1f} s wall, "
            f"{history['run_cpu_seconds']:.1f} CPU s"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/data/rt-polarity")
    parser.add_argument("--epochs", type=positive_int, default=10)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()

    load = os.getloadavg()[0]
    results = run(args.data, args.epochs)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    print(markdown(results, "python " + " ".join(sys.argv), load))


if __name__ == "__main__":
    main()
