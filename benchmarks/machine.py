"""The machine description printed with every benchmark table."""

from __future__ import annotations

import os
import subprocess


def machine_description() -> str:
    """Return the CPU model from lscpu and the number of cores."""
    cpu = "unknown CPU"
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=True)
        for line in lscpu.stdout.splitlines():
            if line.startswith("Model name:"):
                cpu = line.split(":", 1)[1].strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    return f"{cpu}, {os.cpu_count()} cores"
