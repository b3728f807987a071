"""The machine description printed with every benchmark table."""

from __future__ import annotations

import argparse
import os
import subprocess


def cpu_name() -> str:
    """Return the CPU model from lscpu, with its family and model numbers.

    Cloud machines often report only the vendor's line, such as "AMD EPYC",
    for CPUs of different generations. The family and model numbers tell
    them apart: AMD's family 25 is Zen 3 and Zen 4, and family 26 is Zen 5.
    """
    fields = {}
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return "unknown CPU"
    for line in lscpu.stdout.splitlines():
        name, _, value = line.partition(":")
        fields.setdefault(name.strip(), value.strip())
    name = fields.get("Model name", "unknown CPU")
    if "CPU family" in fields and "Model" in fields:
        name += f" (family {fields['CPU family']}, model {fields['Model']})"
    return name


def machine_description() -> str:
    """Return the CPU model and the number of cores."""
    return f"{cpu_name()}, {os.cpu_count()} cores"


def positive_int(text: str) -> int:
    """Parse an integer of 1 or more for argparse."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected 1 or more, got {value}")
    return value


def non_negative_int(text: str) -> int:
    """Parse an integer of 0 or more for argparse."""
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected 0 or more, got {value}")
    return value


def positive_float(text: str) -> float:
    """Parse a finite number above 0 for argparse."""
    value = float(text)
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number above 0, got {text}")
    return value
