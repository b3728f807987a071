"""Inference speed of ONNX Runtime against PyTorch eager, end to end.

Measures, for a unidirectional and a bidirectional model:

* file scoring throughput: ``sentiment-lstm predict --input X.csv --output
  Y.csv`` on 100,000 reviews, as reviews per second of the whole process
  (start, model load, read, tokenize, score, write), per backend, and for
  PyTorch also limited to one thread (``OMP_NUM_THREADS=1``). Each variant
  runs ``--rounds`` times (5), in turn with the others, and the run with the
  median wall time is reported, with the range and the ratio of each round;
* one-review latency inside one process: p50 and p99 of 1,000
  ``SentimentModel.predict(["..."])`` calls after a warm-up, per backend;
* cold start: wall time of ``sentiment-lstm predict --model M "one review"``
  from process start to exit, median of 5 runs, per backend;
* peak resident memory of scoring a 1,000,000-row CSV, and a pos/neg pair
  of 1,000,000 lines in all, with ONNX Runtime.

The review files are made by sampling rt-polarity lines and Netflix app
reviews with a fixed seed. Without ``--uni-model`` and ``--bi-model`` the
script trains both models for one epoch on rt-polarity and exports them.
The package's bytecode is compiled first, as a wheel install does. Every
measured command runs in a child process at normal priority; its CPU
time and peak memory come from ``os.wait4``. Other jobs on the machine skew
wall times, so the load average before and after each step is printed too.

Run it from the repository root::

    python benchmarks/inference.py --json benchmark-inference.json
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from importlib import metadata
from pathlib import Path

import numpy as np
from machine import cpu_name, non_negative_int, positive_int

logger = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA_DIR = REPO_ROOT / ".." / "shared" / "data"

SEED = 0
LATENCY_REVIEW = "an engaging , funny film with a warm heart and a sharp script"
BACKENDS = ("onnx", "torch")
# PyTorch runs its LSTM on all cores with OpenMP by default. When other jobs
# hold a core, its threads wait on each other at every time step, so the
# throughput table also shows PyTorch limited to one thread.
TORCH_ONE_THREAD = "torch, 1 thread"
ONE_THREAD_ENVIRONMENT = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


@dataclass(frozen=True)
class ChildRun:
    """Wall time, CPU time and peak memory of one child process."""

    wall_seconds: float
    cpu_seconds: float
    peak_rss_mib: float
    stdout: str


@dataclass(frozen=True)
class ThroughputResult:
    model: str
    backend: str
    rows: int
    wall_seconds: float
    cpu_seconds: float
    reviews_per_second: float
    peak_rss_mib: float
    load_before: float
    load_after: float
    runs: int = 1
    min_wall_seconds: float = 0.0
    max_wall_seconds: float = 0.0


@dataclass(frozen=True)
class LatencyResult:
    model: str
    backend: str
    calls: int
    p50_ms: float
    p99_ms: float
    load_before: float


@dataclass(frozen=True)
class ColdStartResult:
    model: str
    backend: str
    runs: int
    median_seconds: float
    min_seconds: float
    load_before: float


def run_child(
    command: Sequence[str], environment: dict[str, str] | None = None
) -> ChildRun:
    """Run a command and measure it with ``os.wait4``.

    Args:
        command: The program and its arguments.
        environment: Variables to set on top of this process's environment.

    Raises:
        RuntimeError: If the command exits with a non-zero status.
    """
    # Files, not pipes: nothing is read until the child exits, and os.wait4
    # must reap the child itself to return its resource usage.
    with tempfile.TemporaryFile("w+") as stdout, tempfile.TemporaryFile("w+") as stderr:
        started = time.perf_counter()
        process = subprocess.Popen(
            command,
            stdout=stdout,
            stderr=stderr,
            cwd=REPO_ROOT,
            env={**os.environ, **(environment or {})},
        )
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        stdout.seek(0)
        stderr.seek(0)
        output = stdout.read()
        errors = stderr.read()
    if process.returncode != 0:
        raise RuntimeError(
            f"{' '.join(command)} failed with status {process.returncode}: {errors}"
        )
    return ChildRun(
        wall_seconds=wall,
        cpu_seconds=usage.ru_utime + usage.ru_stime,
        peak_rss_mib=usage.ru_maxrss / 1024,
        stdout=output,
    )


def cli_command() -> list[str]:
    """Return the command that runs this environment's ``sentiment-lstm``."""
    script = Path(sys.executable).with_name("sentiment-lstm")
    if script.is_file():
        return [str(script)]
    found = shutil.which("sentiment-lstm")
    if found:
        return [found]
    return [sys.executable, "-m", "sentiment_lstm"]


def load_average() -> float:
    return os.getloadavg()[0]


# ---------------------------------------------------------------------------
# data


def review_pool(data_dir: Path) -> list[str]:
    """Return the rt-polarity lines and the Netflix review texts."""
    reviews = []
    for name in ("rt-polarity.neg", "rt-polarity.pos"):
        # cp1252, and byte 0x85 is an ellipsis, so split on b"\n" only.
        for line in (data_dir / "rt-polarity" / name).read_bytes().split(b"\n"):
            text = line.decode("cp1252").strip()
            if text:
                reviews.append(text)
    netflix = data_dir / "netflix-app-reviews" / "reviews.csv"
    with open(netflix, encoding="utf-8", newline="") as stream:
        reviews.extend(row["content"] for row in csv.DictReader(stream))
    return reviews


def write_sample(pool: Sequence[str], rows: int, path: Path, seed: int) -> Path:
    """Write ``rows`` reviews drawn with replacement as a CSV of id and text."""
    rng = np.random.default_rng(seed)
    with open(path, "w", encoding="utf-8", newline="") as stream:
        writer = csv.writer(stream, lineterminator="\n")
        writer.writerow(["id", "text"])
        for start in range(0, rows, 100_000):
            count = min(100_000, rows - start)
            picks = rng.integers(0, len(pool), size=count)
            writer.writerows(
                (start + offset, pool[pick]) for offset, pick in enumerate(picks)
            )
    return path


def write_pair(pool: Sequence[str], lines: int, stem: Path, seed: int) -> Path:
    """Write ``lines`` reviews drawn with replacement as a pos/neg pair, half each.

    Line breaks inside a review become spaces. Returns the ``.pos`` file.
    """
    rng = np.random.default_rng(seed)
    for suffix, count in ((".neg", lines // 2), (".pos", lines - lines // 2)):
        with open(stem.with_suffix(suffix), "w", encoding="utf-8") as stream:
            for start in range(0, count, 100_000):
                picks = rng.integers(0, len(pool), size=min(100_000, count - start))
                stream.writelines(" ".join(pool[pick].split()) + "\n" for pick in picks)
    return stem.with_suffix(".pos")


def count_csv_rows(path: Path) -> int:
    with open(path, encoding="utf-8", newline="") as stream:
        return sum(1 for _ in csv.reader(stream)) - 1


# ---------------------------------------------------------------------------
# models


def prepare_model(
    name: str, model_dir: Path | None, data_dir: Path, workdir: Path
) -> Path:
    """Return a model directory with model.onnx, training one if none is given."""
    cli = cli_command()
    directory = model_dir
    if directory is None:
        directory = workdir / f"model-{name}"
        architecture = "bidirectional" if name == "bi" else "unidirectional"
        logger.info("training the %s model for one epoch (minutes)", name)
        run_child(
            cli
            + ["-q", "train", "--data", str(data_dir / "rt-polarity")]
            + ["--num_epoch", "1", "--architecture", architecture]
            + ["--seed", str(SEED), "--output-dir", str(directory)]
        )
    if not (directory / "model.onnx").is_file():
        logger.info("exporting %s to ONNX", directory)
        run_child(cli + ["-q", "export", "--model", str(directory)])
    return directory


def describe_model(directory: Path) -> str:
    config = json.loads((directory / "config.json").read_text())["model"]
    kind = "bidirectional" if config["bidirectional"] else "unidirectional"
    return (
        f"{kind}, {config['num_layers']} layer, {config['hidden_dim']} units, "
        f"embedding {config['embedding_dim']}, vocabulary {config['vocab_size']}"
    )


# ---------------------------------------------------------------------------
# measurements


def measure_throughput(
    name: str, model: Path, variant: str, reviews: Path, rows: int, workdir: Path
) -> ThroughputResult:
    backend = "torch" if variant == TORCH_ONE_THREAD else variant
    environment = ONE_THREAD_ENVIRONMENT if variant == TORCH_ONE_THREAD else None
    output = workdir / f"scored-{name}-{backend}.csv"
    before = load_average()
    child = run_child(
        cli_command()
        + ["-q", "predict", "--model", str(model), "--backend", backend]
        + ["--input", str(reviews), "--output", str(output), "--no-progress"],
        environment,
    )
    after = load_average()
    written = count_csv_rows(output)
    if written != rows:
        raise RuntimeError(f"{output} has {written} rows, expected {rows}")
    output.unlink()
    return ThroughputResult(
        model=name,
        backend=variant,
        rows=rows,
        wall_seconds=child.wall_seconds,
        cpu_seconds=child.cpu_seconds,
        reviews_per_second=rows / child.wall_seconds,
        peak_rss_mib=child.peak_rss_mib,
        load_before=before,
        load_after=after,
        min_wall_seconds=child.wall_seconds,
        max_wall_seconds=child.wall_seconds,
    )


def median_run(runs: Sequence[ThroughputResult]) -> ThroughputResult:
    """Return the run with the median wall time, with the range of all runs.

    With an even number of runs, the faster of the two middle ones.
    """
    ordered = sorted(runs, key=lambda run: run.wall_seconds)
    middle = ordered[(len(ordered) - 1) // 2]
    return replace(
        middle,
        runs=len(runs),
        min_wall_seconds=ordered[0].wall_seconds,
        max_wall_seconds=ordered[-1].wall_seconds,
    )


LATENCY_SCRIPT = """
import json, sys, time
from sentiment_lstm.predictor import SentimentModel
model = SentimentModel.load(sys.argv[1], backend=sys.argv[2])
review = [sys.argv[3]]
for _ in range(20):
    model.predict(review)
timings = []
for _ in range(int(sys.argv[4])):
    started = time.perf_counter()
    model.predict(review)
    timings.append(time.perf_counter() - started)
print(json.dumps(timings))
"""


def measure_latency(name: str, model: Path, backend: str, calls: int) -> LatencyResult:
    before = load_average()
    child = run_child(
        [sys.executable, "-c", LATENCY_SCRIPT, str(model), backend]
        + [LATENCY_REVIEW, str(calls)]
    )
    timings = np.array(json.loads(child.stdout)) * 1000
    return LatencyResult(
        model=name,
        backend=backend,
        calls=calls,
        p50_ms=float(np.percentile(timings, 50)),
        p99_ms=float(np.percentile(timings, 99)),
        load_before=before,
    )


def measure_cold_start(
    name: str, model: Path, backend: str, runs: int
) -> ColdStartResult:
    before = load_average()
    walls = []
    for _ in range(runs):
        child = run_child(
            cli_command()
            + ["predict", "--model", str(model), "--backend", backend, "one review"]
        )
        walls.append(child.wall_seconds)
    return ColdStartResult(
        model=name,
        backend=backend,
        runs=runs,
        median_seconds=statistics.median(walls),
        min_seconds=min(walls),
        load_before=before,
    )


# ---------------------------------------------------------------------------
# report


def machine_lines() -> list[str]:
    from sentiment_lstm.predictor import physical_core_count

    versions = ", ".join(
        f"{package} {metadata.version(package)}"
        for package in ("onnxruntime", "torch", "tokenizers", "numpy")
    )
    return [
        f"- CPU: {cpu_name()}, {physical_core_count()} physical cores, "
        f"{os.cpu_count()} logical CPUs",
        f"- Python {platform.python_version()}; {versions}",
        "- the package's bytecode compiled before the runs, as a wheel install does",
    ]


def markdown_report(
    models: dict[str, Path],
    throughput: list[ThroughputResult],
    rounds: dict[tuple[str, str], list[ThroughputResult]],
    latency: list[LatencyResult],
    cold: list[ColdStartResult],
    big: ThroughputResult | None,
    big_pair: ThroughputResult | None,
    command: str,
) -> str:
    lines = ["# Inference benchmark", ""]
    lines += machine_lines()
    for name, directory in models.items():
        lines.append(f"- {name} model: {describe_model(directory)}")
    lines += [f"- Command: `{command}`", ""]

    lines += [
        f"## File scoring, {throughput[0].rows:,} reviews, CSV to CSV",
        "",
        f"The run with the median wall time of {throughput[0].runs}, the "
        "variants taking turns.",
        "",
        "| model | backend | reviews/s | wall s | range s | CPU s | peak RSS MiB "
        "| load before/after |",
        "|---|---|---:|---:|---|---:|---:|---|",
    ]
    for result in throughput:
        lines.append(
            f"| {result.model} | {result.backend} | {result.reviews_per_second:,.0f} "
            f"| {result.wall_seconds:.2f} "
            f"| {result.min_wall_seconds:.2f}-{result.max_wall_seconds:.2f} "
            f"| {result.cpu_seconds:.1f} | {result.peak_rss_mib:.0f} "
            f"| {result.load_before:.2f} / {result.load_after:.2f} |"
        )
    lines.append("")
    for name in models:
        by_backend = {r.backend: r for r in throughput if r.model == name}
        onnx = by_backend.get("onnx")
        for variant in ("torch", TORCH_ONE_THREAD):
            if onnx is None or variant not in by_backend:
                continue
            torch_result = by_backend[variant]
            speedup = onnx.reviews_per_second / torch_result.reviews_per_second
            cpu_ratio = torch_result.cpu_seconds / onnx.cpu_seconds
            per_round = ", ".join(
                f"{other.wall_seconds / own.wall_seconds:.2f}"
                for own, other in zip(rounds[name, "onnx"], rounds[name, variant])
            )
            lines.append(
                f"- {name}: ONNX Runtime scores {speedup:.2f}x as many reviews/s "
                f"as {variant} at the medians (round by round: {per_round}) and "
                f"uses {cpu_ratio:.2f}x less CPU time"
            )
    lines.append("")

    lines += [
        "## One review in process (SentimentModel.predict, after 20 warm-up calls)",
        "",
        "| model | backend | calls | p50 ms | p99 ms | load before |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for result in latency:
        lines.append(
            f"| {result.model} | {result.backend} | {result.calls} "
            f"| {result.p50_ms:.2f} | {result.p99_ms:.2f} | {result.load_before:.2f} |"
        )
    lines.append("")

    lines += [
        '## Cold start: `sentiment-lstm predict --model M "one review"`',
        "",
        "| model | backend | runs | median s | min s | load before |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for result in cold:
        lines.append(
            f"| {result.model} | {result.backend} | {result.runs} "
            f"| {result.median_seconds:.2f} | {result.min_seconds:.2f} "
            f"| {result.load_before:.2f} |"
        )
    lines.append("")

    for result, input_kind in ((big, "row CSV"), (big_pair, "line pos/neg pair")):
        if result is None:
            continue
        lines += [
            f"## Peak memory, {result.rows:,}-{input_kind}, {result.model} model, "
            f"{result.backend}",
            "",
            f"- peak RSS {result.peak_rss_mib:.0f} MiB, "
            f"{result.wall_seconds:.1f} s wall, {result.cpu_seconds:.1f} s CPU, "
            f"{result.reviews_per_second:,.0f} reviews/s, "
            f"load {result.load_before:.2f} / {result.load_after:.2f}",
            "",
        ]
    return "\n".join(lines)


# ---------------------------------------------------------------------------
# main


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    parser.add_argument("--uni-model", type=Path, help="unidirectional model dir")
    parser.add_argument("--bi-model", type=Path, help="bidirectional model dir")
    parser.add_argument(
        "--rows", type=positive_int, default=100_000, help="throughput rows"
    )
    parser.add_argument(
        "--rounds", type=positive_int, default=5, help="runs of each throughput variant"
    )
    parser.add_argument(
        "--big-rows",
        type=non_negative_int,
        default=1_000_000,
        help="rows of the memory runs (CSV rows, pos/neg lines); 0 skips them",
    )
    parser.add_argument("--latency-calls", type=positive_int, default=1000)
    parser.add_argument("--cold-runs", type=positive_int, default=5)
    parser.add_argument("--workdir", type=Path, help="keep files here (default: temp)")
    parser.add_argument("--json", type=Path, help="also write the results as JSON")
    return parser.parse_args(argv)


def compile_package() -> None:
    """Write the package's bytecode, as pip does when it installs a wheel.

    An editable install caches bytecode when a module is first imported,
    unless ``PYTHONDONTWRITEBYTECODE`` is set. Then every measured command
    would compile the package's source again, about 60 ms on 2 cores.
    """
    import sentiment_lstm

    package = Path(sentiment_lstm.__file__).parent
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(package)], check=True)


def run(args: argparse.Namespace, workdir: Path) -> str:
    data_dir = args.data_dir.resolve()
    compile_package()
    models = {
        "uni": prepare_model("uni", args.uni_model, data_dir, workdir),
        "bi": prepare_model("bi", args.bi_model, data_dir, workdir),
    }
    pool = review_pool(data_dir)
    reviews = write_sample(pool, args.rows, workdir / "reviews.csv", SEED)

    rounds: dict[tuple[str, str], list[ThroughputResult]] = {}
    for number in range(1, args.rounds + 1):
        for name, directory in models.items():
            for variant in (*BACKENDS, TORCH_ONE_THREAD):
                logger.info(
                    "round %d of %d, scoring %d reviews: %s model, %s",
                    number,
                    args.rounds,
                    args.rows,
                    name,
                    variant,
                )
                rounds.setdefault((name, variant), []).append(
                    measure_throughput(
                        name, directory, variant, reviews, args.rows, workdir
                    )
                )
    throughput = [median_run(runs) for runs in rounds.values()]

    latency = []
    cold = []
    for backend in BACKENDS:
        logger.info("one-review latency and cold start: %s", backend)
        latency.append(
            measure_latency("uni", models["uni"], backend, args.latency_calls)
        )
        cold.append(measure_cold_start("uni", models["uni"], backend, args.cold_runs))

    big = big_pair = None
    if args.big_rows > 0:
        logger.info("peak memory on %d rows", args.big_rows)
        big_file = write_sample(pool, args.big_rows, workdir / "big.csv", SEED + 1)
        big = measure_throughput(
            "uni", models["uni"], "onnx", big_file, args.big_rows, workdir
        )
        big_file.unlink()
        logger.info("peak memory on a pos/neg pair of %d lines", args.big_rows)
        pair = write_pair(pool, args.big_rows, workdir / "big", SEED + 2)
        big_pair = measure_throughput(
            "uni", models["uni"], "onnx", pair, args.big_rows, workdir
        )
        pair.unlink()
        pair.with_suffix(".neg").unlink()

    command = "python benchmarks/inference.py " + " ".join(sys.argv[1:])
    report = markdown_report(
        models, throughput, rounds, latency, cold, big, big_pair, command.strip()
    )
    if args.json:
        results = {
            "throughput": [asdict(r) for r in throughput],
            "throughput_runs": [asdict(r) for runs in rounds.values() for r in runs],
            "latency": [asdict(r) for r in latency],
            "cold_start": [asdict(r) for r in cold],
            "big": asdict(big) if big else None,
            "big_pair": asdict(big_pair) if big_pair else None,
            "machine": machine_lines(),
        }
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return report


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    args = parse_args(argv)
    if args.workdir:
        args.workdir.mkdir(parents=True, exist_ok=True)
        print(run(args, args.workdir.resolve()))
        return 0
    with tempfile.TemporaryDirectory(prefix="sentiment-lstm-bench-") as workdir:
        print(run(args, Path(workdir)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
