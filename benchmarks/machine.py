"""The machine description printed with every benchmark table."""

from __future__ import annotations

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
