"""HTTP load test of ``sentiment-lstm serve``: latency, throughput and errors.

Starts the server as a subprocess on 127.0.0.1 and a free port. Then
``--concurrency`` aiohttp clients, each with one request in flight, send
``--requests`` requests of one rt-polarity review each. The script prints
p50/p90/p99 latency, throughput and the error count as a markdown table.
Latency is measured by the client, from sending a request to reading the
whole response. The client runs
on the same machine, so its CPU time competes with the server's. The run stops
on its own after ``--time-limit`` seconds even if requests remain, and exits
with status 1 if any request failed or did not run.

Usage, with a model exported by ``sentiment-lstm export`` for the onnx
backend::

    python benchmarks/http_load.py --model models/rt-polarity --backend onnx
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import random
import shlex
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import numpy as np
from machine import machine_description, non_negative_int, positive_float, positive_int

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO_ROOT / ".." / "shared" / "data" / "rt-polarity"
STARTUP_SECONDS = 120


@dataclass
class LoadResult:
    """Latencies and errors measured by the clients."""

    latencies: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0
    timed_out: bool = False


def read_reviews(directory: Path) -> list[str]:
    """Read every non-empty rt-polarity line from the .pos and .neg files.

    The files are cp1252, where byte 0x85 is an ellipsis, so lines are split
    on ``\\n`` bytes only before decoding.
    """
    reviews = []
    for name in ("rt-polarity.pos", "rt-polarity.neg"):
        for line in (directory / name).read_bytes().split(b"\n"):
            text = line.decode("cp1252", errors="replace").strip()
            if text:
                reviews.append(text)
    return reviews


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def process_cpu_seconds(pid: int) -> float | None:
    """Return user plus system CPU seconds of a process, from /proc (Linux)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    # Fields 14 and 15 of /proc/PID/stat (the pid is field 1) are utime and
    # stime in clock ticks. The split above starts at field 3, the state.
    ticks = int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def start_server(
    model: Path, backend: str, port: int, log: Path
) -> subprocess.Popen[bytes]:
    """Start ``sentiment-lstm serve`` and wait until ``/health`` returns 200."""
    command = [sys.executable, "-m", "sentiment_lstm", "serve", "--model", str(model)]
    command += ["--backend", backend, "--host", "127.0.0.1", "--port", str(port)]
    with open(log, "wb") as stream:
        process = subprocess.Popen(command, stdout=stream, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"server exited with status {process.returncode}:\n{log.read_text()}"
            )
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1):
                return process
        except (urllib.error.URLError, ConnectionError):
            pass
        time.sleep(0.2)
    stop_server(process)
    raise RuntimeError(
        f"server not ready after {STARTUP_SECONDS} s:\n{log.read_text()}"
    )


def stop_server(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


async def drive(
    url: str,
    reviews: list[str],
    requests: int,
    concurrency: int,
    time_limit: float,
) -> LoadResult:
    """Send ``requests`` one-review requests from ``concurrency`` clients."""
    result = LoadResult()
    counter = itertools.count()

    async def client_loop(session: aiohttp.ClientSession) -> None:
        while (index := next(counter)) < requests:
            review = reviews[index % len(reviews)]
            started = time.perf_counter()
            try:
                async with session.post(
                    "/predict", json={"reviews": [review]}
                ) as response:
                    body = await response.read()
            except aiohttp.ClientError as err:
                result.errors.append(f"{type(err).__name__}: {err}")
                continue
            elapsed = time.perf_counter() - started
            try:
                predictions = json.loads(body)["predictions"]
            except (ValueError, KeyError):
                predictions = None
            if response.status != 200 or predictions is None or len(predictions) != 1:
                result.errors.append(f"HTTP {response.status}: {body[:200]!r}")
                continue
            result.latencies.append(elapsed)

    connector = aiohttp.TCPConnector(limit=concurrency)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(
        base_url=url, connector=connector, timeout=timeout
    ) as session:
        started = time.perf_counter()
        tasks = [asyncio.create_task(client_loop(session)) for _ in range(concurrency)]
        done, pending = await asyncio.wait(tasks, timeout=time_limit)
        result.seconds = time.perf_counter() - started
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        for task in done:
            if task.exception() is not None:
                result.errors.append(repr(task.exception()))
        result.timed_out = bool(pending)
    return result


def run_event_loop(coroutine):
    """Run a coroutine on uvloop when it is installed, else on asyncio."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coroutine)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coroutine)


def markdown(
    args: argparse.Namespace,
    result: LoadResult,
    backend: str,
    loads: tuple[float, float],
    cpu: dict[str, float | None],
) -> str:
    """Render the figures, the machine and the command as markdown."""
    latencies_ms = np.asarray(result.latencies) * 1000.0
    completed = len(result.latencies)
    if completed:
        p50, p90, p99 = np.percentile(latencies_ms, [50, 90, 99])
        slowest = latencies_ms.max()
    else:
        p50 = p90 = p99 = slowest = float("nan")
    throughput = completed / result.seconds if result.seconds else float("nan")
    not_run = args.requests - completed - len(result.errors)

    sent = completed + len(result.errors)

    def per_request(seconds: float | None) -> str:
        if seconds is None or not sent:
            return "n/a"
        return f"{seconds * 1000.0 / sent:.2f}"

    command = shlex.join([Path(sys.executable).name, *sys.argv])
    lines = [
        f"Machine: {machine_description()}. Load average (1 min) before the run: "
        f"{loads[0]:.2f}, after: {loads[1]:.2f}.",
        f"Command: `{command}`",
        "",
        "| backend | clients | requests | completed | errors | not run | p50 ms "
        "| p90 ms | p99 ms | max ms | requests/s | server CPU ms/request "
        "| client CPU ms/request |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        f"| {backend} | {args.concurrency} | {args.requests} | {completed} "
        f"| {len(result.errors)} | {not_run} | {p50:.2f} | {p90:.2f} | {p99:.2f} "
        f"| {slowest:.2f} | {throughput:.0f} | {per_request(cpu['server'])} "
        f"| {per_request(cpu['client'])} |",
    ]
    if result.timed_out:
        lines.append("")
        lines.append(f"Stopped by the time limit of {args.time_limit:g} s.")
    if result.errors:
        lines.append("")
        lines.append(f"First error: {result.errors[0][:300]}")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, type=Path, help="model directory")
    parser.add_argument(
        "--port",
        type=int,
        help="port on 127.0.0.1 for the server (default: one that is free)",
    )
    parser.add_argument(
        "--backend",
        choices=("auto", "torch", "onnx"),
        default="auto",
        help="scoring backend of the server (default: auto)",
    )
    parser.add_argument(
        "--requests",
        type=positive_int,
        default=10_000,
        help="requests to send (default: 10000)",
    )
    parser.add_argument(
        "--concurrency",
        type=positive_int,
        default=16,
        help="clients, each with one request in flight (default: 16)",
    )
    parser.add_argument(
        "--warmup",
        type=non_negative_int,
        default=200,
        help="requests sent before measuring, not counted (default: 200)",
    )
    parser.add_argument(
        "--time-limit",
        type=positive_float,
        default=600.0,
        help="seconds after which the measured run stops (default: 600)",
    )
    parser.add_argument(
        "--data",
        type=Path,
        default=DEFAULT_DATA,
        help="folder with rt-polarity.pos and rt-polarity.neg",
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of the review order (default: 0)"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    reviews = read_reviews(args.data)
    random.Random(args.seed).shuffle(reviews)
    port = args.port or free_port()
    url = f"http://127.0.0.1:{port}"

    with tempfile.TemporaryDirectory() as scratch:
        log = Path(scratch) / "server.log"
        process = start_server(args.model, args.backend, port, log)
        try:
            with urllib.request.urlopen(f"{url}/info", timeout=10) as response:
                backend = json.load(response)["backend"]
            warmup = run_event_loop(
                drive(url, reviews, args.warmup, args.concurrency, args.time_limit)
            )
            if warmup.errors:
                print(f"warm-up failed: {warmup.errors[0]}", file=sys.stderr)
                return 1
            load_before = os.getloadavg()[0]
            server_before = process_cpu_seconds(process.pid)
            client_before = sum(os.times()[:2])
            result = run_event_loop(
                drive(url, reviews, args.requests, args.concurrency, args.time_limit)
            )
            client_cpu = sum(os.times()[:2]) - client_before
            server_after = process_cpu_seconds(process.pid)
            load_after = os.getloadavg()[0]
        finally:
            stop_server(process)

    server_cpu = None
    if server_before is not None and server_after is not None:
        server_cpu = server_after - server_before
    print(
        markdown(
            args,
            result,
            backend,
            (load_before, load_after),
            {"server": server_cpu, "client": client_cpu},
        )
    )
    complete = len(result.latencies) == args.requests
    return 0 if complete and not result.errors else 1


if __name__ == "__main__":
    sys.exit(main())
