"""The HTTP service end to end: a real uvicorn process on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import gzip
import inspect
import json
import logging
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import uvicorn
from fastapi.testclient import TestClient

from sentiment_lstm.cli import build_parser, main
from sentiment_lstm.cli.serve import _bind_error
from sentiment_lstm.export import export_model
from sentiment_lstm import http_protocol
from sentiment_lstm.http_protocol import limited_protocol
from sentiment_lstm.predictor import SentimentModel
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from sentiment_lstm import server as server_module
from sentiment_lstm.predictor import Prediction
from sentiment_lstm.server import (
    INLINE_MAX_CHARS,
    RejectionLog,
    RequestLimitExceeded,
    ServerLimits,
    check_limits,
    create_app,
    render_predictions,
    top_level_keys,
)
from tests.conftest import NEGATIVE_REVIEWS, POSITIVE_REVIEWS, default_signals

MAX_REVIEW_CHARS = 200
MAX_REVIEWS = 20
MAX_BODY_BYTES = 8192
BODY_TIMEOUT = 2
MAX_HEADER_BYTES = 2048
HEADER_TIMEOUT = 1
STARTUP_SECONDS = 60
CHUNKED_HEAD = (
    b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
)

TRAIN_ARGS = [
    "--num-epochs",
    "2",
    "--batch-size",
    "8",
    "--learning-rate",
    "0.01",
    "--lstm-units",
    "16",
    "--embedding-size",
    "16",
    "--seed",
    "3",
]


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def serve_command(model_dir: Path, port: int, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "sentiment_lstm",
        "serve",
        "--model",
        str(model_dir),
        "--port",
        str(port),
        *extra,
    ]


def wait_until_healthy(process: subprocess.Popen, url: str, log: Path) -> None:
    """Poll ``/health`` until it returns 200; fail if the server exits first."""
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"server exited with {process.returncode}:\n{log.read_text()}")
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    pytest.fail(f"server not healthy after {STARTUP_SECONDS} s:\n{log.read_text()}")


@contextlib.contextmanager
def running_server(
    model_dir: Path, log: Path, *extra: str
) -> Iterator[tuple[subprocess.Popen, str]]:
    """Run ``sentiment-lstm serve`` until the block ends; yield (process, url).

    The server's output goes to ``log``. A server still running at the end
    gets SIGTERM.
    """
    port = free_port()
    with open(log, "wb") as stream:
        process = subprocess.Popen(
            serve_command(model_dir, port, *extra),
            stdout=stream,
            stderr=subprocess.STDOUT,
            preexec_fn=default_signals,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_healthy(process, url, log)
        yield process, url
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    """Train a tiny model once for the whole module."""
    root = tmp_path_factory.mktemp("server-model")
    (root / "tiny.pos").write_text("\n".join(POSITIVE_REVIEWS * 6) + "\n")
    (root / "tiny.neg").write_text("\n".join(NEGATIVE_REVIEWS * 6) + "\n")
    directory = root / "model"
    status = main(
        ["train", "--data", str(root / "tiny.pos"), "--output-dir", str(directory)]
        + TRAIN_ARGS
    )
    assert status == 0
    return directory


@pytest.fixture(scope="module")
def server(model_dir, tmp_path_factory):
    """Run ``sentiment-lstm serve`` with small limits; yield (url, log path)."""
    log = tmp_path_factory.mktemp("server-log") / "server.log"
    with running_server(
        model_dir,
        log,
        "--max-review-chars",
        str(MAX_REVIEW_CHARS),
        "--max-reviews",
        str(MAX_REVIEWS),
        "--max-body-bytes",
        str(MAX_BODY_BYTES),
        "--body-timeout",
        str(BODY_TIMEOUT),
        "--max-header-bytes",
        str(MAX_HEADER_BYTES),
        "--header-timeout",
        str(HEADER_TIMEOUT),
        # The tests read the log line of each request they get rejected.
        "--log-rejections",
        "0",
    ) as (_, url):
        yield url, log


@pytest.fixture
def client(server):
    url, _ = server
    with httpx.Client(base_url=url, timeout=30) as http:
        yield http


def post_reviews(client: httpx.Client, reviews: list) -> httpx.Response:
    return client.post("/predict", json={"reviews": reviews})


# The time at the start of each line that serve writes on stderr.
STAMP = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d\d:\d\d"


def message_of(line: str, level: str = "ERROR") -> str:
    """Return a line of serve's stderr without its time and level."""
    match = re.fullmatch(rf"{STAMP} {level} (.*)", line)
    assert match, line
    return match.group(1)


def test_log_lines_have_time_and_level(server, client):
    _, log = server
    client.post("/predict", content=b"{}")
    lines = log.read_text().splitlines()

    assert re.match(rf"{STAMP} INFO starting to serve ", lines[0]), lines[0]
    assert any(
        re.match(rf"{STAMP} WARNING POST /predict from .* rejected with 415", line)
        for line in lines
    )


def test_health(client):
    response = client.get("/health")

    assert response.status_code == 200
    assert response.json()["status"] == "ok"
    assert response.json()["model_loaded"] is True


@pytest.mark.parametrize("path", ["/health", "/info", "/metrics"])
def test_head_request_answered(client, path):
    response = client.head(path)

    assert response.status_code == 200
    assert response.content == b""
    assert response.headers["content-type"] == client.get(path).headers["content-type"]


def test_info_describes_model(client, model_dir):
    config = json.loads((model_dir / "config.json").read_text())
    training = json.loads((model_dir / "training.json").read_text())

    info = client.get("/info").json()

    assert info["labels"] == ["negative", "positive"]
    assert info["model"] == config["model"]
    assert info["backend"] == "torch"
    assert info["version"]
    assert info["training"]["best_epoch"] == training["best_epoch"]
    assert info["training"]["split_sizes"] == training["data"]["split_sizes"]
    assert info["limits"] == {
        "max_review_chars": MAX_REVIEW_CHARS,
        "max_reviews": MAX_REVIEWS,
        "max_body_bytes": MAX_BODY_BYTES,
        "body_timeout": BODY_TIMEOUT,
        "max_connections": None,
        "max_header_bytes": MAX_HEADER_BYTES,
        "header_timeout": HEADER_TIMEOUT,
    }


def test_info_omits_training_paths(client, model_dir):
    text = client.get("/info").text

    assert str(model_dir.parent) not in text


def test_predict_keeps_order(client):
    reviews = [POSITIVE_REVIEWS[0], NEGATIVE_REVIEWS[1], "", POSITIVE_REVIEWS[2]]

    response = post_reviews(client, reviews)
    predictions = response.json()["predictions"]

    assert response.status_code == 200
    assert [p["text"] for p in predictions] == reviews


def test_predict_matches_library(client, model_dir):
    reviews = POSITIVE_REVIEWS[:4] + NEGATIVE_REVIEWS[:4]
    expected = SentimentModel.load(model_dir, backend="torch").predict(reviews)

    predictions = post_reviews(client, reviews).json()["predictions"]

    for served, local in zip(predictions, expected, strict=True):
        assert served["positive"] == pytest.approx(local.positive, abs=1e-6)
        assert served["negative"] == pytest.approx(local.negative, abs=1e-6)
        assert served["label"] == local.label
        assert "error" not in served


def test_long_request_matches_library(client, model_dir):
    reviews = [(review + " ") * 4 for review in POSITIVE_REVIEWS + NEGATIVE_REVIEWS]
    expected = SentimentModel.load(model_dir, backend="torch").predict(reviews)

    predictions = post_reviews(client, reviews).json()["predictions"]

    assert sum(map(len, reviews)) > INLINE_MAX_CHARS
    for served, local in zip(predictions, expected, strict=True):
        assert served["positive"] == pytest.approx(local.positive, abs=1e-6)
        assert served["label"] == local.label


def test_onnx_backend(model_dir, tmp_path):
    exported = tmp_path / "exported"
    shutil.copytree(model_dir, exported)
    export_model(exported)
    reviews = POSITIVE_REVIEWS[:3] + NEGATIVE_REVIEWS[:3]
    expected = SentimentModel.load(model_dir, backend="torch").predict(reviews)
    with running_server(exported, tmp_path / "server.log", "--backend", "onnx") as (
        _,
        url,
    ):
        backend = httpx.get(f"{url}/health").json()["backend"]
        response = httpx.post(f"{url}/predict", json={"reviews": reviews}, timeout=30)

    assert backend == "onnx"
    for served, local in zip(response.json()["predictions"], expected, strict=True):
        assert served["positive"] == pytest.approx(local.positive, abs=1e-5)
        assert served["label"] == local.label


def test_max_connections(model_dir, tmp_path):
    log = tmp_path / "server.log"
    with running_server(model_dir, log, "--max-connections", "2") as (process, url):
        # Lets the server see that the health checks' connections closed.
        time.sleep(0.5)
        with (
            httpx.Client(base_url=url) as first,
            httpx.Client(base_url=url) as second,
            httpx.Client(base_url=url) as third,
        ):
            # Each client keeps its connection open after its request.
            responses = [client.get("/info") for client in (first, second, third)]
            second.close()
            time.sleep(0.5)
            after_close = third.get("/info").status_code
            limits = first.get("/info").json()["limits"]
            metrics = first.get("/metrics").text
    busy = responses[2]
    error = busy.json()

    assert [response.status_code for response in responses] == [200, 200, 503]
    assert busy.headers["content-type"] == "application/json"
    assert busy.headers["retry-after"] == "1"
    assert error["limit"] == "max_connections"
    assert error["maximum"] == 2
    assert error["value"] == 3
    assert "--max-connections" in error["detail"]
    assert after_close == 200
    assert limits["max_connections"] == 2
    assert (
        'sentiment_lstm_http_requests_total{endpoint="/info",method="GET",'
        'status="503"} 1.0' in metrics
    )


def test_empty_review_flagged(client):
    predictions = post_reviews(client, ["", "   ", "great"]).json()["predictions"]

    for empty in predictions[:2]:
        assert empty["error"]
        assert empty["positive"] is None
        assert empty["negative"] is None
        assert empty["label"] is None
    assert predictions[2]["label"] in ("positive", "negative")


def test_no_reviews(client):
    response = post_reviews(client, [])

    assert response.status_code == 200
    assert response.json() == {"predictions": []}


def test_limits_accept_maximum(client):
    response = post_reviews(client, ["a" * MAX_REVIEW_CHARS] * MAX_REVIEWS)

    assert response.status_code == 200
    assert len(response.json()["predictions"]) == MAX_REVIEWS


def test_too_many_reviews(client):
    response = post_reviews(client, ["fine"] * (MAX_REVIEWS + 1))
    body = response.json()

    assert response.status_code == 422
    assert body["limit"] == "max_reviews"
    assert body["maximum"] == MAX_REVIEWS
    assert body["value"] == MAX_REVIEWS + 1
    assert str(MAX_REVIEWS + 1) in body["detail"]


def test_many_wrong_items_counted_first(client):
    # A body of small wrong items would otherwise get one validation error
    # per item, which took seconds to write out for a 1 MiB body.
    count = MAX_BODY_BYTES // 3
    raw = b'{"reviews": [' + b",".join([b"1"] * count) + b"]}"

    response = client.post(
        "/predict", content=raw, headers={"Content-Type": "application/json"}
    )
    error = response.json()

    assert len(raw) <= MAX_BODY_BYTES
    assert response.status_code == 422
    assert error["limit"] == "max_reviews"
    assert error["maximum"] == MAX_REVIEWS
    assert error["value"] == count


def test_review_too_long(client):
    reviews = ["short", "ok", "x" * (MAX_REVIEW_CHARS + 1)]

    response = post_reviews(client, reviews)
    body = response.json()

    assert response.status_code == 422
    assert body["limit"] == "max_review_chars"
    assert body["index"] == 2
    assert body["maximum"] == MAX_REVIEW_CHARS
    assert body["value"] == MAX_REVIEW_CHARS + 1
    assert "index 2" in body["detail"]


def test_review_length_counts_characters(client):
    # Two bytes per character in UTF-8, but within the character limit.
    response = post_reviews(client, ["é" * MAX_REVIEW_CHARS])

    assert response.status_code == 200


def test_body_at_limit_accepted(client):
    body = json.dumps({"reviews": ["fine"]}).encode()
    body += b" " * (MAX_BODY_BYTES - len(body))

    response = client.post(
        "/predict", content=body, headers={"Content-Type": "application/json"}
    )

    assert len(body) == MAX_BODY_BYTES
    assert response.status_code == 200


def test_body_over_content_length(client):
    body = json.dumps({"reviews": ["fine"]}).encode()
    body += b" " * (MAX_BODY_BYTES + 1 - len(body))

    response = client.post(
        "/predict", content=body, headers={"Content-Type": "application/json"}
    )
    error = response.json()

    assert response.status_code == 413
    assert error["limit"] == "max_body_bytes"
    assert error["maximum"] == MAX_BODY_BYTES
    assert error["value"] == MAX_BODY_BYTES + 1


def send_whole_request(port: int, head: bytes, body_parts: Iterator[bytes]) -> bytes:
    """Send a request in full, as most clients do, then read the response."""
    with socket.create_connection(("127.0.0.1", port)) as connection:
        connection.settimeout(30)
        connection.sendall(head)
        for part in body_parts:
            connection.sendall(part)
        return read_response(connection)


def test_large_body_sent_in_full_gets_413(server):
    url, _ = server
    port = int(url.rsplit(":", 1)[1])
    size = 8 * 2**20
    head = (
        b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % size
    )
    parts = (b" " * 65536 for _ in range(size // 65536))

    status_line, error = split_response(send_whole_request(port, head, parts))

    assert status_line == b"HTTP/1.1 413 Request Entity Too Large"
    assert error["limit"] == "max_body_bytes"
    assert error["value"] == size


def test_large_chunked_body_sent_in_full_gets_413(server):
    url, _ = server
    port = int(url.rsplit(":", 1)[1])
    chunk = b"a" * 65536
    parts = [b"%x\r\n" % len(chunk) + chunk + b"\r\n"] * 128 + [b"0\r\n\r\n"]

    response = send_whole_request(port, CHUNKED_HEAD, iter(parts))

    assert response.startswith(b"HTTP/1.1 413 ")
    assert b'"limit":"max_body_bytes"' in response


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"FOO / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 64,
        b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Content-Length: 5\r\nContent-Length: 7\r\n\r\nhello",
        CHUNKED_HEAD + b"ZZ\r\n{}\r\n0\r\n\r\n",
        CHUNKED_HEAD + b"2\r\n{}XX0\r\n\r\n",
        b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Content-Type: application/json\r\nTransfer-Encoding: gzip\r\n\r\n{}",
    ],
    ids=[
        "unknown method",
        "HTTP/2 preface",
        "TLS handshake",
        "two lengths",
        "invalid chunk size",
        "chunk without line end",
        "gzip without chunked",
    ],
)
def test_invalid_http_gets_json_400(server, request_bytes):
    url, log = server
    port = int(url.rsplit(":", 1)[1])
    before = metric_value(url, "sentiment_lstm_http_invalid_requests_total")
    disconnects_before = _requests_without_response(url)

    response = send_and_read(port, request_bytes)
    head, _, body = response.partition(b"\r\n\r\n")

    assert head.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert b"content-type: application/json" in head
    assert json.loads(body)["detail"].startswith("invalid HTTP request")
    after = metric_value(url, "sentiment_lstm_http_invalid_requests_total")
    assert after == before + 1
    # The server closed the connection, not the client.
    assert _requests_without_response(url) == disconnects_before
    # The protocol logs the rejection with the client; uvicorn's own line
    # without it is dropped.
    assert "Invalid HTTP request received." not in log.read_text()


def test_rejection_log_limited_per_minute(caplog):
    now = [1000.0]
    rejections = RejectionLog(per_minute=2, clock=lambda: now[0])
    log = logging.getLogger("sentiment_lstm.server")

    with caplog.at_level(logging.WARNING, logger="sentiment_lstm"):
        for number in range(5):
            rejections.warning(log, "request %d rejected", number)
        now[0] += 60
        rejections.warning(log, "request %d rejected", 5)
    lines = [record.getMessage() for record in caplog.records]

    assert lines[:2] == ["request 0 rejected", "request 1 rejected"]
    assert lines[2].startswith("2 rejected requests logged in this minute, the most")
    assert lines[3].startswith("3 more rejected requests in the minute from ")
    assert lines[3].endswith(" were not logged (--log-rejections 2)")
    assert lines[4:] == ["request 5 rejected"]


def test_rejection_log_reports_at_minute_end(caplog):
    now = [1000.0]
    rejections = RejectionLog(per_minute=1, clock=lambda: now[0])
    log = logging.getLogger("sentiment_lstm.server")

    async def reject_twice() -> None:
        loop = asyncio.get_running_loop()
        later = []
        original = loop.call_later

        def record(delay, callback, *args):
            later.append(delay)
            return original(0, callback, *args)

        loop.call_later = record
        rejections.warning(log, "request %d rejected", 0)
        rejections.warning(log, "request %d rejected", 1)
        await asyncio.sleep(0.05)
        # The report is due when the minute ends; the sleep schedules a call too.
        assert later[0] == 60.0

    with caplog.at_level(logging.WARNING, logger="sentiment_lstm"):
        asyncio.run(reject_twice())
    lines = [record.getMessage() for record in caplog.records]

    assert lines[0] == "request 0 rejected"
    assert lines[1].startswith("1 rejected request logged in this minute, the most")
    assert lines[2].startswith("1 more rejected request in the minute from ")
    assert lines[2].endswith(" was not logged (--log-rejections 1)")


def test_rejection_log_unlimited(caplog):
    rejections = RejectionLog()
    log = logging.getLogger("sentiment_lstm.server")

    with caplog.at_level(logging.WARNING, logger="sentiment_lstm"):
        for number in range(100):
            rejections.warning(log, "request %d rejected", number)

    assert len(caplog.records) == 100


def metric_value(url: str, name: str) -> float:
    """Return the value of an unlabelled metric from the server's /metrics."""
    text = httpx.get(f"{url}/metrics", timeout=10).text
    (line,) = [line for line in text.splitlines() if line.startswith(name + " ")]
    return float(line.split()[1])


def _requests_without_response(url: str) -> float:
    """Return the requests that /metrics counts with the status "none"."""
    text = httpx.get(f"{url}/metrics", timeout=10).text
    return sum(
        float(line.split()[1])
        for line in text.splitlines()
        if line.startswith("sentiment_lstm_http_requests_total{")
        and 'status="none"' in line
    )


def test_chunked_body_over_limit(client):
    chunks = [b'{"reviews": ["'] + [b"a" * 1024] * 9 + [b'"]}']

    response = client.post(
        "/predict",
        content=iter(chunks),
        headers={"Content-Type": "application/json"},
    )
    error = response.json()

    assert response.request.headers.get("Transfer-Encoding") == "chunked"
    assert response.status_code == 413
    assert error["limit"] == "max_body_bytes"
    assert error["value"] > MAX_BODY_BYTES


def send_and_read(port: int, data: bytes) -> bytes:
    """Send raw bytes to the server on ``port`` and read until it closes."""
    with socket.create_connection(("127.0.0.1", port)) as connection:
        connection.sendall(data)
        connection.settimeout(30)
        return read_response(connection)


def read_response(connection: socket.socket) -> bytes:
    """Read until the server closes the connection."""
    received = b""
    while chunk := connection.recv(65536):
        received += chunk
    return received


def test_stalled_body_times_out(server):
    url, log = server
    port = int(url.rsplit(":", 1)[1])
    head = (
        b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n"
    )

    with socket.create_connection(("127.0.0.1", port)) as connection:
        # A client that sends part of its body and then nothing more.
        connection.sendall(head + b'{"reviews": ["fi')
        connection.settimeout(BODY_TIMEOUT + 30)
        started = time.monotonic()
        raw = read_response(connection)
        waited = time.monotonic() - started
    status_line, _, rest = raw.partition(b"\r\n")
    error = json.loads(rest.partition(b"\r\n\r\n")[2])

    assert status_line == b"HTTP/1.1 408 Request Timeout"
    assert error["limit"] == "body_timeout"
    assert error["maximum"] == BODY_TIMEOUT
    assert error["value"] == BODY_TIMEOUT
    assert "16 bytes" in error["detail"]
    assert "--body-timeout" in error["detail"]
    assert BODY_TIMEOUT - 0.5 <= waited < BODY_TIMEOUT + 20
    assert "rejected with 408" in log.read_text()


# A pause within the body timeout, and one longer than the header timeout,
# whose clock stops once the headers are complete.
@pytest.mark.parametrize("pause", [BODY_TIMEOUT / 4, HEADER_TIMEOUT * 1.5])
def test_slow_body_within_timeout(server, pause):
    assert pause < BODY_TIMEOUT
    url, _ = server
    port = int(url.rsplit(":", 1)[1])
    body = json.dumps({"reviews": ["fine"]}).encode()
    head = (
        b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
        b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body)
    )

    with socket.create_connection(("127.0.0.1", port)) as connection:
        connection.sendall(head + body[:5])
        time.sleep(pause)
        connection.sendall(body[5:])
        connection.settimeout(30)
        raw = read_response(connection)

    assert raw.startswith(b"HTTP/1.1 200 OK")


def split_response(raw: bytes) -> tuple[bytes, dict]:
    """Return the status line and the JSON body of a raw HTTP response."""
    status_line, _, rest = raw.partition(b"\r\n")
    return status_line, json.loads(rest.partition(b"\r\n\r\n")[2])


@pytest.mark.parametrize(
    ("head", "hosts"),
    [
        (b"GET /health HTTP/1.1\r\n\r\n", 0),
        (b"GET /health HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 2),
    ],
    ids=["none", "two"],
)
def test_http11_host_header_required(server, head, hosts):
    url, _ = server
    port = int(url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
        connection.sendall(head)
        status_line, error = split_response(read_response(connection))

    assert status_line == b"HTTP/1.1 400 Bad Request"
    assert error == {
        "detail": "an HTTP/1.1 request needs exactly one Host header, and this "
        f"one has {hosts}; send one, such as Host: 127.0.0.1"
    }


def test_http10_without_host_answered(server):
    url, _ = server
    port = int(url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
        connection.sendall(b"GET /health HTTP/1.0\r\n\r\n")
        status_line, health = split_response(read_response(connection))

    assert status_line == b"HTTP/1.1 200 OK"
    assert health["status"] == "ok"


def header_rejections(client: httpx.Client, limit: str) -> float:
    name = f'sentiment_lstm_http_header_rejections_total{{limit="{limit}"}}'
    for line in client.get("/metrics").text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return 0.0


def test_headers_over_limit_rejected(server, client):
    url, log = server
    port = int(url.rsplit(":", 1)[1])
    before = header_rejections(client, "max_header_bytes")
    head = (
        b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Long: "
        + b"a" * MAX_HEADER_BYTES
        + b"\r\n\r\n"
    )

    status_line, error = split_response(send_and_read(port, head))

    assert status_line == b"HTTP/1.1 431 Request Header Fields Too Large"
    assert error["limit"] == "max_header_bytes"
    assert error["maximum"] == MAX_HEADER_BYTES
    # Every byte of the head: the request line, each header line and the
    # empty line that ends the head.
    assert error["value"] == len(head)
    assert "--max-header-bytes" in error["detail"]
    assert header_rejections(client, "max_header_bytes") == before + 1
    assert "rejected with 431" in log.read_text()


def test_long_url_over_header_limit_named(server):
    url, _ = server
    port = int(url.rsplit(":", 1)[1])
    target = b"/health?" + b"a" * MAX_HEADER_BYTES
    head = b"GET " + target + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"

    status_line, error = split_response(send_and_read(port, head))

    assert status_line == b"HTTP/1.1 431 Request Header Fields Too Large"
    request_line = b"GET " + target + b" HTTP/1.1"
    assert (
        f"of which the request line takes {len(request_line)}; send a shorter URL"
    ) in error["detail"]


def test_headers_below_limit_accepted(server):
    url, _ = server
    # The request line and the Host header take the rest of the limit.
    padding = "a" * (MAX_HEADER_BYTES - 200)

    response = httpx.get(f"{url}/health", headers={"X-Padding": padding})

    assert response.status_code == 200


def head_of_size(size: int) -> bytes:
    """Return a GET /health head of exactly ``size`` bytes."""
    start = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nX-Pad: "
    end = b"\r\n\r\n"
    return start + b"a" * (size - len(start) - len(end)) + end


@pytest.mark.parametrize(
    ("size", "status_line"),
    [
        (MAX_HEADER_BYTES, b"HTTP/1.1 200 OK"),
        (MAX_HEADER_BYTES + 1, b"HTTP/1.1 431 Request Header Fields Too Large"),
    ],
)
def test_header_limit_counts_request_line(server, size, status_line):
    url, _ = server
    port = int(url.rsplit(":", 1)[1])
    head = head_of_size(size)
    assert len(head) == size

    # The whole head in one read, so the server measures the parsed head.
    raw = send_and_read(port, head)

    assert raw.startswith(status_line)


def test_endless_headers_cut_off(server):
    url, _ = server
    port = int(url.rsplit(":", 1)[1])
    chunk = b"a" * 65536
    answer = b""

    with socket.create_connection(("127.0.0.1", port)) as connection:
        connection.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Endless: ")
        connection.settimeout(0)
        # Sends up to 64 MiB of one header, until the server responds.
        for _ in range(1024):
            try:
                answer += connection.recv(65536)
            except BlockingIOError:
                pass
            if answer:
                break
            try:
                connection.send(chunk)
            except BlockingIOError:
                time.sleep(0.01)
        connection.settimeout(30)
        raw = answer + read_response(connection)
    status_line, error = split_response(raw)

    assert status_line == b"HTTP/1.1 431 Request Header Fields Too Large"
    # The server stops within one read of the socket (at most 256 KiB) past
    # the limit, however much more the client sends.
    assert MAX_HEADER_BYTES < error["value"] <= MAX_HEADER_BYTES + 256 * 1024


# The head of a /predict request with a chunked body.


def test_endless_trailer_cut_off(server):
    url, log = server
    port = int(url.rsplit(":", 1)[1])
    head = CHUNKED_HEAD
    body = b'{"reviews": ["fine"]}'
    chunk = b"a" * 65536

    with socket.create_connection(("127.0.0.1", port)) as connection:
        # A whole chunked body, then a trailer field that never ends.
        connection.sendall(
            head + b"%x\r\n" % len(body) + body + b"\r\n0\r\nX-Endless: "
        )
        connection.settimeout(5)
        # Sends 32 MiB of the trailer, which the server reads and drops
        # after its response.
        for _ in range(512):
            connection.sendall(chunk)
        connection.settimeout(30)
        raw = read_response(connection)

    assert raw.startswith(b"HTTP/1.1 431 Request Header Fields Too Large")
    assert split_response(raw)[1]["limit"] == "max_header_bytes"
    assert "request trailers too large" in log.read_text()


@pytest.mark.parametrize("whole_request_at_once", [True, False])
def test_large_trailer_in_one_read_rejected(server, whole_request_at_once):
    url, log = server
    port = int(url.rsplit(":", 1)[1])
    head = CHUNKED_HEAD
    body = b'{"reviews": ["fine"]}'
    chunked_body = b"%x\r\n" % len(body) + body + b"\r\n0\r\n"
    # Complete trailer fields, twice the limit, that reach the server in one
    # read, so they are parsed whole before the read is counted.
    trailer = b"X-Large: " + b"a" * (2 * MAX_HEADER_BYTES) + b"\r\n\r\n"
    rejections_before = log.read_text().count("request trailers too large")

    with socket.create_connection(("127.0.0.1", port)) as connection:
        if whole_request_at_once:
            connection.sendall(head + chunked_body + trailer)
        else:
            connection.sendall(head + chunked_body)
            time.sleep(0.2)
            connection.sendall(trailer)
        connection.settimeout(30)
        raw = read_response(connection)

    # The application has the request but has not responded, so it reads a
    # disconnect and the protocol responds.
    assert raw.startswith(b"HTTP/1.1 431 Request Header Fields Too Large")
    assert raw.count(b"HTTP/1.1 4") == 1
    rejections = log.read_text().count("request trailers too large")
    assert rejections == rejections_before + 1


def test_slow_headers_time_out(server, client):
    url, log = server
    port = int(url.rsplit(":", 1)[1])
    before = header_rejections(client, "header_timeout")
    head = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"

    with socket.create_connection(("127.0.0.1", port)) as connection:
        started = time.monotonic()
        connection.settimeout(HEADER_TIMEOUT / 5)
        answer = b""
        # One byte at a time, never the whole head within the timeout.
        for byte in head[:-1]:
            connection.sendall(bytes([byte]))
            try:
                answer = connection.recv(65536)
            except TimeoutError:
                continue
            break
        connection.settimeout(30)
        raw = answer + read_response(connection)
        waited = time.monotonic() - started
    status_line, error = split_response(raw)

    assert status_line == b"HTTP/1.1 408 Request Timeout"
    assert error["limit"] == "header_timeout"
    assert error["maximum"] == HEADER_TIMEOUT
    assert "--header-timeout" in error["detail"]
    assert HEADER_TIMEOUT - 0.2 <= waited < HEADER_TIMEOUT + 10
    assert header_rejections(client, "header_timeout") == before + 1
    assert "rejected with 408: request headers timed out" in log.read_text()


def test_quiet_connection_closed(server):
    url, _ = server
    port = int(url.rsplit(":", 1)[1])

    with socket.create_connection(("127.0.0.1", port)) as connection:
        connection.settimeout(HEADER_TIMEOUT + 10)
        started = time.monotonic()
        received = connection.recv(65536)
        waited = time.monotonic() - started

    assert received == b""
    assert HEADER_TIMEOUT - 0.2 <= waited < HEADER_TIMEOUT + 10


def test_request_after_oversized_head_dropped(server, client):
    url, _ = server
    port = int(url.rsplit(":", 1)[1])
    unanswered = 'sentiment_lstm_http_requests_total{endpoint="/info",method="GET",status="none"}'
    oversized = (
        b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Long: "
        + b"a" * MAX_HEADER_BYTES
        + b"\r\n\r\n"
    )
    pipelined = b"GET /info HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"

    with socket.create_connection(("127.0.0.1", port)) as connection:
        # Both requests arrive in one read, so the parser reaches the second
        # one after the first is rejected.
        connection.sendall(oversized + pipelined)
        connection.settimeout(30)
        raw = read_response(connection)
    # Gives a request that reached the application time to see the
    # disconnect and be counted.
    time.sleep(1)
    metrics = client.get("/metrics").text

    assert raw.startswith(b"HTTP/1.1 431 Request Header Fields Too Large")
    assert raw.count(b"HTTP/1.1 ") == 1
    assert unanswered not in metrics


def test_invalid_bytes_over_limit_not_counted(server, client):
    url, log = server
    port = int(url.rsplit(":", 1)[1])
    before = header_rejections(client, "max_header_bytes")
    logged_before = log.read_text().count("rejected with 431")

    with socket.create_connection(("127.0.0.1", port)) as connection:
        connection.sendall(b"\x00" * (MAX_HEADER_BYTES + 100))
        connection.settimeout(30)
        raw = read_response(connection)

    assert raw.startswith(b"HTTP/1.1 400 Bad Request")
    assert raw.count(b"HTTP/1.1 4") == 1
    assert header_rejections(client, "max_header_bytes") == before
    assert log.read_text().count("rejected with 431") == logged_before


def run_protocol_server(app, port: int, **limits) -> tuple:
    """Start uvicorn with ``limited_protocol`` in a thread; return (server, thread)."""
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        http=limited_protocol(**limits),
        ws="none",
        lifespan="off",
        log_config=None,
    )
    uvicorn_server = uvicorn.Server(config)
    thread = threading.Thread(target=uvicorn_server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + STARTUP_SECONDS
    while not uvicorn_server.started:
        assert thread.is_alive(), "uvicorn exited before it started"
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    return uvicorn_server, thread


async def sleeping_app(scope, receive, send) -> None:
    """Send 200 after sleeping the seconds in the X-Sleep header (0 without one)."""
    await receive()
    await asyncio.sleep(float(dict(scope["headers"]).get(b"x-sleep", b"0")))
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-length", b"2")],
        }
    )
    await send({"type": "http.response.body", "body": b"ok"})


def test_pipelined_request_outlives_header_timeout():
    port = free_port()
    uvicorn_server, thread = run_protocol_server(
        sleeping_app, port, max_header_bytes=MAX_HEADER_BYTES, header_timeout=1
    )
    fast = b"GET /fast HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    slow = (
        b"GET /slow HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Sleep: 2\r\n"
        b"Connection: close\r\n\r\n"
    )
    try:
        with socket.create_connection(("127.0.0.1", port)) as connection:
            # The second request is complete before the response to the
            # first is sent, and its response takes longer than the header
            # timeout.
            connection.sendall(fast + slow)
            connection.settimeout(30)
            raw = read_response(connection)
    finally:
        uvicorn_server.should_exit = True
        thread.join(timeout=10)

    assert raw.count(b"HTTP/1.1 200 OK") == 2


def test_hang_up_behind_pipelined_requests():
    # The client closes while the first of three pipelined requests runs;
    # its response must not be written to the closed connection.
    failures = []

    async def recording_app(scope, receive, send) -> None:
        try:
            await sleeping_app(scope, receive, send)
        except Exception as err:
            failures.append(err)
            raise

    port = free_port()
    uvicorn_server, thread = run_protocol_server(
        recording_app, port, max_header_bytes=MAX_HEADER_BYTES, header_timeout=5
    )
    slow = b"GET /slow HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Sleep: 0.5\r\n\r\n"
    try:
        with socket.create_connection(("127.0.0.1", port)) as connection:
            connection.sendall(slow * 3)
            time.sleep(0.1)
        time.sleep(1.5)
    finally:
        uvicorn_server.should_exit = True
        thread.join(timeout=10)

    assert failures == []


OVERSIZED_HEAD = b"GET / HTTP/1.1\r\nX-Long: " + b"a" * (2 * MAX_HEADER_BYTES)


@pytest.mark.parametrize(
    ("after", "later", "status"),
    [
        (b"\x16\x03\x01garbage", b"", b"400"),
        # Counted as it arrives, in a read of its own.
        (b"", OVERSIZED_HEAD, b"431"),
        # Parsed in the read of the requests before it, so not counted: it
        # times out instead.
        (OVERSIZED_HEAD, b"", b"408"),
        # A third pipelined request whose chunked body does not parse.
        (
            b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked"
            b"\r\n\r\nZZZ\r\nabc\r\n0\r\n\r\n",
            b"",
            b"400",
        ),
    ],
    ids=[
        "invalid bytes",
        "oversized head",
        "unfinished head in the same read",
        "bad chunked body",
    ],
)
def test_error_behind_pipelined_requests_answered_after_them(after, later, status):
    port = free_port()
    uvicorn_server, thread = run_protocol_server(
        sleeping_app, port, max_header_bytes=MAX_HEADER_BYTES, header_timeout=2
    )
    slow = b"GET /slow HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Sleep: 0.5\r\n\r\n"
    fast = b"GET /fast HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    try:
        with socket.create_connection(("127.0.0.1", port)) as connection:
            # An error sent at once would read as the response to the first
            # request.
            connection.sendall(slow + fast + after)
            if later:
                time.sleep(0.1)
                connection.sendall(later)
            connection.settimeout(30)
            raw = read_response(connection)
    finally:
        uvicorn_server.should_exit = True
        thread.join(timeout=10)
    statuses = re.findall(rb"HTTP/1\.1 (\d{3}) ", raw)

    assert statuses == [b"200", b"200", status]


def test_lingering_connections_bounded(monkeypatch):
    monkeypatch.setattr(http_protocol, "MAX_LINGERING_CONNECTIONS", 2)
    port = free_port()
    uvicorn_server, thread = run_protocol_server(
        sleeping_app, port, max_header_bytes=MAX_HEADER_BYTES, header_timeout=5
    )
    oversized = b"GET / HTTP/1.1\r\nX-Long: " + b"a" * (2 * MAX_HEADER_BYTES)
    clients = []
    try:
        open_before = len(os.listdir("/proc/self/fd"))
        for _ in range(5):
            connection = socket.create_connection(("127.0.0.1", port))
            clients.append(connection)
            connection.sendall(oversized)
            connection.settimeout(30)
            assert read_response(connection).startswith(b"HTTP/1.1 431 ")
        # The client sockets stay open: 5 of them, and on the server's side
        # only the 2 connections that linger.
        open_after = len(os.listdir("/proc/self/fd"))
    finally:
        for connection in clients:
            connection.close()
        uvicorn_server.should_exit = True
        thread.join(timeout=10)

    assert open_after - open_before == 5 + 2


def read_one_response(connection: socket.socket) -> bytes:
    """Read one response with a Content-Length from a kept-alive connection."""
    received = b""
    while b"\r\n\r\n" not in received:
        received += connection.recv(65536)
    head, _, body = received.partition(b"\r\n\r\n")
    length = int(re.search(rb"content-length: (\d+)", head, re.IGNORECASE).group(1))
    while len(body) < length:
        body += connection.recv(65536)
    return head + b"\r\n\r\n" + body


def test_header_clock_restarts_after_response(server):
    url, _ = server
    port = int(url.rsplit(":", 1)[1])
    head = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"

    with socket.create_connection(("127.0.0.1", port)) as connection:
        connection.settimeout(30)
        connection.sendall(head)
        first = read_one_response(connection)
        # Longer than the header timeout in all, but each head arrives in time.
        time.sleep(HEADER_TIMEOUT * 0.6)
        connection.sendall(head)
        second = read_one_response(connection)
        time.sleep(HEADER_TIMEOUT * 0.6)
        connection.sendall(head[:10])
        time.sleep(HEADER_TIMEOUT * 0.6)
        connection.sendall(head[10:])
        third = read_response(connection)

    assert first.startswith(b"HTTP/1.1 200 OK")
    assert second.startswith(b"HTTP/1.1 200 OK")
    # The third head took longer than the header timeout from the end of
    # the second response.
    assert third.startswith(b"HTTP/1.1 408 Request Timeout")


def test_partial_pipelined_head_times_out(server):
    url, _ = server
    port = int(url.rsplit(":", 1)[1])
    head = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"

    with socket.create_connection(("127.0.0.1", port)) as connection:
        # The start of the second head comes in the same read as the first
        # request, and the rest never comes.
        connection.sendall(head + head[:10])
        connection.settimeout(30)
        first = read_one_response(connection)
        second = read_response(connection)

    assert first.startswith(b"HTTP/1.1 200 OK")
    # Without a response, the client could not tell this from a server that
    # went away.
    assert second.startswith(b"HTTP/1.1 408 Request Timeout")
    assert split_response(second)[1]["limit"] == "header_timeout"


def test_shutdown_with_pipelined_requests_queued(model_dir, tmp_path):
    # Five clients each pipeline 3,000 requests and read the responses; at
    # SIGTERM most are still queued behind the running one.
    log = tmp_path / "server.log"
    body = json.dumps({"reviews": ["a witty film"] * 3}).encode()
    request = (
        b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body)
    ) + body
    received = []

    def pipeline(connection: socket.socket) -> None:
        threading.Thread(
            target=_send_quietly, args=(connection, request * 3000), daemon=True
        ).start()
        data = b""
        with contextlib.suppress(OSError):
            while chunk := connection.recv(65536):
                data += chunk
        received.append(data)

    with running_server(model_dir, log, "--shutdown-timeout", "2") as (process, url):
        port = int(url.rsplit(":", 1)[1])
        connections = [socket.create_connection(("127.0.0.1", port)) for _ in range(5)]
        readers = [
            threading.Thread(target=pipeline, args=(connection,), daemon=True)
            for connection in connections
        ]
        for reader in readers:
            reader.start()
        time.sleep(3)
        process.send_signal(signal.SIGTERM)
        exit_status = process.wait(timeout=30)
        for reader in readers:
            reader.join(timeout=10)
        for connection in connections:
            connection.close()
    text = log.read_text()

    assert exit_status == 128 + signal.SIGTERM
    assert "Exception in ASGI application" not in text
    assert "Task was destroyed" not in text
    assert "Traceback" not in text
    assert sum(data.count(b"HTTP/1.1 500") for data in received) == 0
    assert sum(data.count(b"HTTP/1.1 200") for data in received) > 0


def _send_quietly(connection: socket.socket, data: bytes) -> None:
    with contextlib.suppress(OSError):
        connection.sendall(data)


def predict_requests_counted(url: str) -> float:
    """Return the number of /predict requests that the server's /metrics counts."""
    text = httpx.get(f"{url}/metrics", timeout=10).text
    prefix = 'sentiment_lstm_http_requests_total{endpoint="/predict"'
    return sum(
        float(line.split()[-1]) for line in text.splitlines() if line.startswith(prefix)
    )


def test_shutdown_with_client_not_reading(model_dir, tmp_path):
    # Two clients pipeline large requests and read nothing, so responses
    # wait on flow control until the shutdown timeout cancels them.
    log = tmp_path / "server.log"
    body = json.dumps({"reviews": ["great awful film " * 200] * 256}).encode()
    request = (
        b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body)
    ) + body

    def send_without_reading(connection: socket.socket) -> None:
        with contextlib.suppress(OSError):
            connection.sendall(request * 12)

    with running_server(model_dir, log, "--shutdown-timeout", "1") as (process, url):
        port = int(url.rsplit(":", 1)[1])
        connections = [socket.create_connection(("127.0.0.1", port)) for _ in range(2)]
        for connection in connections:
            threading.Thread(
                target=send_without_reading, args=(connection,), daemon=True
            ).start()
        # The socket buffers take a few responses. Once they are full, the
        # count of completed requests stops growing. A request scored slowly
        # on a loaded machine also stops it for a while, so the wait is long.
        deadline = time.monotonic() + 120
        answered, since = predict_requests_counted(url), time.monotonic()
        while answered < 1 or time.monotonic() - since < 6:
            assert time.monotonic() < deadline, "the responses never stalled"
            time.sleep(0.2)
            now = predict_requests_counted(url)
            if now != answered:
                answered, since = now, time.monotonic()
        process.send_signal(signal.SIGTERM)
        exit_status = process.wait(timeout=30)
        for connection in connections:
            connection.close()
    text = log.read_text()

    assert exit_status == 128 + signal.SIGTERM
    assert "cancelled at shutdown; its connection was closed" in text
    assert "Exception in ASGI application" not in text
    assert "Traceback" not in text


@pytest.mark.parametrize(
    ("extra", "signals", "status", "within"),
    [
        # SIGTERM waits --shutdown-timeout for the stalled request.
        (["--shutdown-timeout", "1"], [signal.SIGTERM], 128 + signal.SIGTERM, 10),
        # The first Ctrl-C would wait the default 5 s; the second stops the
        # server without waiting.
        ([], [signal.SIGINT, signal.SIGINT], 128 + signal.SIGINT, 4),
    ],
    ids=["SIGTERM", "two Ctrl-C"],
)
def test_shutdown_does_not_wait_for_stalled_body(
    model_dir, tmp_path, extra, signals, status, within
):
    log = tmp_path / "server.log"
    with running_server(model_dir, log, *extra) as (process, url):
        port = int(url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port)) as connection:
            # A body that stalls; the default body timeout is 60 s.
            connection.sendall(
                b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{"
            )
            time.sleep(0.5)
            started = time.monotonic()
            for number in signals:
                process.send_signal(number)
                time.sleep(0.2)
            exit_status = process.wait(timeout=30)
            stopped_after = time.monotonic() - started
            connection.settimeout(10)
            status_line, error = split_response(read_response(connection))
    text = log.read_text()

    # Like every command that a signal stops, serve exits with 128 + its number.
    assert exit_status == status
    assert stopped_after < within
    assert status_line == b"HTTP/1.1 503 Service Unavailable"
    assert "--shutdown-timeout" in error["detail"]
    assert "second Ctrl-C" in error["detail"]
    assert set(error) == {"detail"}
    assert "cancelled with 503" in text
    assert "Traceback" not in text
    assert "Error" not in text
    # The planned cancellation is no error.
    assert " ERROR " not in text
    if signals == [signal.SIGTERM]:
        assert re.search(r" WARNING Cancel 1 running task\(s\)", text), text
    last_line = "terminated" if signals == [signal.SIGTERM] else "interrupted"
    assert message_of(text.rstrip().splitlines()[-1], "INFO") == last_line


def test_sighup_shuts_down_gracefully(model_dir, tmp_path):
    log = tmp_path / "server.log"
    with running_server(model_dir, log) as (process, url):
        with httpx.Client(base_url=url, timeout=30) as http:
            before = post_reviews(http, [POSITIVE_REVIEWS[0]])
        process.send_signal(signal.SIGHUP)
        status = process.wait(timeout=30)
    text = log.read_text()

    assert before.status_code == 200
    assert status == 128 + signal.SIGHUP
    assert "Shutting down" in text
    assert "Traceback" not in text
    assert message_of(text.rstrip().splitlines()[-1], "INFO") == "hung up (SIGHUP)"


def test_quiet_server_logs_termination(model_dir, tmp_path):
    log = tmp_path / "server.log"
    with running_server(model_dir, log, "-q") as (process, _):
        process.send_signal(signal.SIGTERM)
        status = process.wait(timeout=30)
    lines = log.read_text().splitlines()

    assert status == 128 + signal.SIGTERM
    assert "starting to serve" not in log.read_text()
    assert message_of(lines[-1], "INFO") == "terminated"


def test_health_and_metrics_served_over_connection_limit(model_dir, tmp_path):
    log = tmp_path / "server.log"
    with running_server(model_dir, log, "--max-connections", "1") as (process, url):
        time.sleep(0.5)
        with (
            httpx.Client(base_url=url) as first,
            httpx.Client(base_url=url) as second,
        ):
            first.get("/health")
            statuses = {
                path: second.get(path).status_code
                for path in ("/health", "/metrics", "/info")
            }

    assert statuses == {"/health": 200, "/metrics": 200, "/info": 503}


def test_rejected_connection_frees_its_place(model_dir, tmp_path):
    log = tmp_path / "server.log"
    with running_server(
        model_dir, log, "--max-connections", "1", "--max-header-bytes", "1024"
    ) as (process, url):
        port = int(url.rsplit(":", 1)[1])
        time.sleep(0.5)
        with socket.create_connection(("127.0.0.1", port)) as rejected:
            rejected.sendall(
                b"GET /info HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Long: "
                + b"a" * 2048
                + b"\r\n\r\n"
            )
            rejected.settimeout(10)
            answer = rejected.recv(65536)
            # The rejected connection is still open, lingering, while the
            # next request arrives.
            info = httpx.get(f"{url}/info").status_code

    assert answer.startswith(b"HTTP/1.1 431")
    assert info == 200


def test_head_request_over_header_limit_has_no_body(server):
    url, _ = server
    port = int(url.rsplit(":", 1)[1])
    head = (
        b"HEAD /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Long: "
        + b"a" * MAX_HEADER_BYTES
        + b"\r\n\r\n"
    )

    raw = send_and_read(port, head)
    response_head, _, body = raw.partition(b"\r\n\r\n")

    assert response_head.startswith(b"HTTP/1.1 431")
    assert int(re.search(rb"content-length: (\d+)", response_head).group(1)) > 0
    assert body == b""


def test_malformed_json(client):
    response = client.post(
        "/predict",
        content=b'{"reviews": ["unterminated',
        headers={"Content-Type": "application/json"},
    )

    assert response.status_code == 422
    assert response.json()["detail"][0]["type"] == "json_invalid"


def test_json_error_context_kept(client):
    response = client.post(
        "/predict",
        content=b'{"reviews": ["fine"],,}',
        headers={"Content-Type": "application/json"},
    )
    first = response.json()["detail"][0]

    assert response.status_code == 422
    assert first["ctx"] == {
        "error": "Expecting property name enclosed in double quotes"
    }


def test_validation_error_leaves_out_the_value(client, server):
    _, log = server
    review = "a long review that should not come back " * 4
    response = client.post("/predict", json={"reviews": review})
    schema = client.get("/openapi.json").json()["components"]["schemas"]

    assert response.status_code == 422
    assert review not in response.text
    assert set(response.json()["detail"][0]) <= set(
        schema["ValidationErrorItem"]["properties"]
    )
    assert "rejected with 422" in log.read_text()


@pytest.mark.parametrize(
    ("raw", "offset"),
    [
        (b'{"reviews": ["caf\xe9 au lait"]}', 17),
        (b'{"reviews": ["fine", "\xff\xfe"]}', 22),
        (b'\xef\xbb\xbf{"reviews": ["a\xff"]}', 18),
    ],
)
def test_body_not_utf8(client, server, raw, offset):
    _, log = server
    response = client.post(
        "/predict", content=raw, headers={"Content-Type": "application/json"}
    )
    detail = response.json()["detail"]

    assert response.status_code == 400
    assert f"not valid UTF-8: byte 0x{raw[offset]:02x} at offset {offset}" in detail
    assert "encoded as UTF-8" in detail
    assert f"rejected with 400: {detail}" in log.read_text()


def test_body_not_utf32(client):
    head = '{"reviews": ["caf'.encode("utf-32-le")
    # 0x110000 is above the last Unicode code point.
    raw = head + b"\x00\x00\x11\x00" + '"]}'.encode("utf-32-le")

    response = client.post(
        "/predict", content=raw, headers={"Content-Type": "application/json"}
    )
    detail = response.json()["detail"]

    assert response.status_code == 400
    assert f"not valid UTF-32-LE: bytes 00001100 at offset {len(head)}" in detail


@pytest.mark.parametrize(
    "body",
    [b"", b"   \n", b"\xef\xbb\xbf", "\ufeff ".encode("utf-16")],
    ids=["nothing", "spaces", "UTF-8 BOM", "UTF-16 BOM and space"],
)
def test_empty_json_body_named(server, client, body):
    _, log = server
    response = client.post(
        "/predict", content=body, headers={"Content-Type": "application/json"}
    )
    (error,) = response.json()["detail"]
    logged = [line for line in log.read_text().splitlines() if "422" in line][-1]

    assert response.status_code == 422
    assert error["loc"] == ["body"]
    assert error["msg"].startswith("the request body is empty")
    # The log line gives the message that the client received.
    assert logged.endswith(
        f"rejected with 422: 1 validation error: body: {error['msg']}"
    )


@pytest.mark.parametrize(
    "payload",
    [b'{"reviews": ["great fun"]}', gzip.compress(b'{"reviews": ["great fun"]}')],
    ids=["plain", "gzip"],
)
def test_transfer_coding_besides_chunked_rejected(server, payload):
    url, _ = server
    port = int(url.rsplit(":", 1)[1])
    head = (
        b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Content-Type: application/json\r\n"
        b"Transfer-Encoding: gzip, chunked\r\nConnection: close\r\n\r\n"
    )
    body = b"%x\r\n" % len(payload) + payload + b"\r\n0\r\n\r\n"

    status_line, error = split_response(send_and_read(port, head + body))

    assert status_line == b"HTTP/1.1 501 Not Implemented"
    assert "Transfer-Encoding 'gzip, chunked' is not supported" in error["detail"]


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b'{"reviews": ' + b"[" * 3500 + b"]" * 3500 + b"}", "RecursionError"),
        (b'{"reviews": ["fine"], "n": ' + b"9" * 5000 + b"}", "ValueError"),
    ],
)
def test_json_python_cannot_parse(client, server, raw, reason):
    _, log = server
    response = client.post(
        "/predict", content=raw, headers={"Content-Type": "application/json"}
    )
    detail = response.json()["detail"]

    assert response.status_code == 400
    assert f"could not be parsed as JSON: {reason}" in detail
    assert "set_int_max_str_digits" not in detail
    assert f"rejected with 400: {detail}" in log.read_text()


def test_compressed_body_rejected(client):
    body = gzip.compress(b'{"reviews": ["great fun"]}')
    response = client.post(
        "/predict",
        content=body,
        headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
    )

    assert response.status_code == 415
    assert "Content-Encoding 'gzip' is not supported" in response.json()["detail"]


@pytest.mark.parametrize("encoding", ["gzip", "br", "identity, gzip"])
def test_encoded_plain_body_rejected(client, server, encoding):
    # The body is plain JSON, so only the header says that it is encoded.
    response = client.post(
        "/predict",
        content=b'{"reviews": ["great fun"]}',
        headers={"Content-Type": "application/json", "Content-Encoding": encoding},
    )
    _, log = server
    detail = response.json()["detail"]

    assert response.status_code == 415
    assert f"Content-Encoding {encoding!r} is not supported" in detail
    assert "rejected with 415: Content-Encoding" in log.read_text()


@pytest.mark.parametrize(
    ("second", "status"),
    [(b"br", b"415 Unsupported Media Type"), (b"identity", b"200 OK")],
)
def test_encoding_over_two_header_lines(server, second, status):
    # Header lines of one name are one list, such as "identity, br".
    url, _ = server
    port = int(url.rsplit(":", 1)[1])
    body = b'{"reviews": ["great fun"]}'
    request = (
        b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Content-Type: application/json\r\nContent-Encoding: identity\r\n"
        b"Content-Encoding: %s\r\nContent-Length: %d\r\nConnection: close\r\n\r\n"
        % (second, len(body))
    ) + body

    status_line, content = split_response(send_and_read(port, request))

    assert status_line == b"HTTP/1.1 " + status
    if second == b"br":
        assert "Content-Encoding 'identity, br' is not supported" in content["detail"]


def test_identity_encoding_accepted(client):
    response = client.post(
        "/predict",
        content=b'{"reviews": ["great fun"]}',
        headers={"Content-Type": "application/json", "Content-Encoding": "identity"},
    )

    assert response.status_code == 200


def test_repeated_reviews_field_rejected(client):
    response = client.post(
        "/predict",
        content=b'{"reviews": ["great fun"], "reviews": ["dull", "slow"]}',
        headers={"Content-Type": "application/json"},
    )
    (error,) = response.json()["detail"]

    assert response.status_code == 422
    assert error["loc"] == ["body", "reviews"]
    assert error["type"] == "repeated_field"
    assert "appears 2 times" in error["msg"]


def test_repeated_reviews_field_in_utf16_rejected(client):
    body = '{"reviews": ["great fun"], "reviews": ["dull"]}'.encode("utf-16")

    response = client.post(
        "/predict", content=body, headers={"Content-Type": "application/json"}
    )

    assert response.status_code == 422
    assert response.json()["detail"][0]["type"] == "repeated_field"


@pytest.mark.parametrize(
    "key", ["review\\u0073", "\\u0072eviews", "\\u0072\\u0065views"]
)
@pytest.mark.parametrize("encoding", ["utf-8", "utf-16"])
def test_escaped_repeated_reviews_field_rejected(client, key, encoding):
    body = f'{{"reviews": ["great fun"], "{key}": ["dull"]}}'.encode(encoding)

    response = client.post(
        "/predict", content=body, headers={"Content-Type": "application/json"}
    )

    assert response.status_code == 422
    assert response.json()["detail"][0]["type"] == "repeated_field"


def test_repeated_reviews_never_scored_at_any_depth(client):
    # Near Python's recursion limit the body parses for FastAPI but not for
    # the second, deeper read of its keys; no depth may let it through.
    statuses = set()
    for depth in range(880, 1040, 2):
        body = b'{"reviews": ' + b"[" * depth + b"]" * depth + b', "reviews": ["b"]}'
        response = client.post(
            "/predict", content=body, headers={"Content-Type": "application/json"}
        )
        statuses.add(response.status_code)

    assert 200 not in statuses
    assert statuses <= {400, 422}


@pytest.mark.parametrize(
    ("body", "found"),
    [
        # A surrogate pair encoded as two 3-byte sequences (CESU-8).
        (
            b'{"reviews": ["a\xed\xa0\x80\xed\xb0\x80b"]}',
            "UTF-8: byte 0xed at offset 15",
        ),
        # UTF-16 that ends in a lone high surrogate.
        (
            '{"reviews": ["ab"]}'.encode("utf-16-le") + b"\x00\xd8",
            "UTF-16-LE: bytes 00d8",
        ),
    ],
    ids=["encoded surrogates", "UTF-16 lone surrogate"],
)
def test_surrogate_bytes_get_400(client, body, found):
    response = client.post(
        "/predict", content=body, headers={"Content-Type": "application/json"}
    )

    assert response.status_code == 400
    assert f"the request body is not valid {found}" in response.json()["detail"]


def test_escaped_lone_surrogate_gets_422(client):
    # The escape is valid JSON, so only the review is wrong.
    response = client.post(
        "/predict",
        content=b'{"reviews": ["a\\ud800b"]}',
        headers={"Content-Type": "application/json"},
    )

    assert response.status_code == 422
    assert response.json()["detail"][0]["type"] == "unicode_surrogate"


def test_escapes_and_nested_reviews_keys_accepted(client):
    body = {
        "reviews": ["caf\u00e9 au lait, a charming film", "dull"],
    }
    raw = json.dumps(body, ensure_ascii=True)[:-1] + ', "extra": null}'
    nested = '{"reviews": ["fine"], "x": [{"reviews": 1}, {"reviews": 2}]}'

    escaped = client.post(
        "/predict",
        content=json.dumps(body, ensure_ascii=True).encode(),
        headers={"Content-Type": "application/json"},
    )
    with_extra = client.post(
        "/predict", content=raw.encode(), headers={"Content-Type": "application/json"}
    )
    with_nested = client.post(
        "/predict",
        content=nested.encode(),
        headers={"Content-Type": "application/json"},
    )

    assert escaped.status_code == 200
    assert [item["text"] for item in escaped.json()["predictions"]] == body["reviews"]
    # Unknown fields are rejected by the schema, not as a repeated field.
    assert with_extra.json()["detail"][0]["type"] == "extra_forbidden"
    assert with_nested.json()["detail"][0]["type"] == "extra_forbidden"


def test_top_level_keys_reads_only_top_level():
    text = ' {"a": {"reviews": 1, "b": [{"reviews": 2}]}, "review\\u0073": "x"} '

    assert top_level_keys(text) == ["a", "reviews"]
    assert top_level_keys("[1, 2]") == []
    assert top_level_keys("{}") == []
    assert top_level_keys('{"a": 1') == []
    assert top_level_keys('{"a": 1, "a": 2}') == ["a", "a"]


def test_word_reviews_inside_a_review_accepted(client):
    body = {"reviews": ['the "reviews" were wrong', 'more "reviews"']}

    response = client.post("/predict", json=body)

    assert response.status_code == 200
    assert len(response.json()["predictions"]) == 2


def test_many_unknown_fields_one_error(client):
    body = {"reviews": ["fine"]} | {f"key{number}": 1 for number in range(500)}
    response = client.post("/predict", json=body)
    detail = response.json()["detail"]

    assert response.status_code == 422
    assert len(detail) == 1
    assert detail[0]["type"] == "extra_forbidden"
    assert detail[0]["msg"].startswith("500 unknown fields, first key0, key1, key2")


@pytest.mark.parametrize(
    "fields",
    [
        '"\\udc80": 1',
        '"ok \\ud800": 1, "b": 2',
        ", ".join(f'"\\udc8{number:x}": 1' for number in range(12)),
    ],
)
def test_surrogate_field_name_rejected(client, fields):
    # JSON can escape an unpaired surrogate in a key, but UTF-8 cannot encode it.
    raw = ('{"reviews": ["fine"], ' + fields + "}").encode()
    response = client.post(
        "/predict", content=raw, headers={"Content-Type": "application/json"}
    )
    detail = response.json()["detail"]

    assert response.status_code == 422
    assert len(detail) == 1
    assert detail[0]["type"] == "unicode_surrogate"
    assert detail[0]["loc"] == ["body"]
    assert "has an unpaired UTF-16 surrogate" in detail[0]["msg"]
    assert "field name '" in detail[0]["msg"]
    assert "\\ud" in detail[0]["msg"]
    assert "\\\\ud" not in detail[0]["msg"]


@pytest.mark.parametrize(
    "headers",
    [
        {"Content-Type": "text/plain"},
        {"Content-Type": "application/x-www-form-urlencoded"},
        {},
    ],
)
def test_body_not_sent_as_json(client, headers):
    response = client.post(
        "/predict", content=b'{"reviews": ["great fun"]}', headers=headers
    )

    assert response.status_code == 415
    assert "Content-Type: application/json" in response.json()["detail"]


def test_json_media_type_with_parameters(client):
    response = client.post(
        "/predict",
        content=b'{"reviews": ["great fun"]}',
        headers={"Content-Type": "application/json; charset=utf-8"},
    )

    assert response.status_code == 200
    assert response.json()["predictions"][0]["text"] == "great fun"


@pytest.mark.parametrize(
    ("body", "error_type", "location"),
    [
        ({"reviews": [1, "fine"]}, "string_type", ["body", "reviews", 0]),
        ({"reviews": "one review"}, "list_type", ["body", "reviews"]),
        ({"reviews": [None]}, "string_type", ["body", "reviews", 0]),
        ({"texts": ["fine"]}, "missing", ["body", "reviews"]),
        ({"reviews": ["fine"], "extra": 1}, "extra_forbidden", ["body", "extra"]),
        (["fine"], "model_attributes_type", ["body"]),
    ],
)
def test_wrong_types(client, body, error_type, location):
    response = client.post("/predict", json=body)
    first = response.json()["detail"][0]

    assert response.status_code == 422
    assert first["type"] == error_type
    assert first["loc"] == location


@pytest.mark.parametrize(
    ("raw", "location"),
    [
        (b'{"reviews": 1e999}', ["body", "reviews"]),
        (b'{"reviews": [NaN]}', ["body", "reviews", 0]),
        (b'{"reviews": ["fine"], "n": -Infinity}', ["body", "n"]),
    ],
)
def test_non_finite_numbers_rejected(client, raw, location):
    response = client.post(
        "/predict", content=raw, headers={"Content-Type": "application/json"}
    )

    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == location


@pytest.mark.parametrize("review", ["\\udc80", "ok \\ud800abc"])
def test_unpaired_surrogate_rejected(client, review):
    raw = ('{"reviews": ["fine", "' + review + '"]}').encode()
    response = client.post(
        "/predict", content=raw, headers={"Content-Type": "application/json"}
    )
    first = response.json()["detail"][0]

    assert response.status_code == 422
    assert first["type"] == "unicode_surrogate"
    assert first["loc"] == ["body", "reviews", 1]
    assert "review at index 1 has an unpaired UTF-16 surrogate" in first["msg"]


@pytest.mark.parametrize(
    ("reviews", "expected"),
    [
        (["fine", "ok \ud800", "x" * 11], ("unicode_surrogate", 1)),
        (["fine", "x" * 11 + "\udc80", "ok"], ("unicode_surrogate", 1)),
        (["fine", "x" * 11, "ok \ud800"], ("max_review_chars", 1)),
        (["é" * 10, "x" * 10, "y" * 12, "z" * 13], ("max_review_chars", 2)),
        (["é" * 10, "\ud800", "\udc00"], ("unicode_surrogate", 1)),
    ],
    ids=[
        "surrogate before long",
        "surrogate in long",
        "long before surrogate",
        "first long one",
        "pair split over reviews",
    ],
)
def test_limits_report_first_problem(reviews, expected):
    kind, index = expected
    limits = ServerLimits(max_review_chars=10)

    if kind == "unicode_surrogate":
        with pytest.raises(RequestValidationError) as raised:
            check_limits(reviews, limits)
        (error,) = raised.value.errors()
        assert error["type"] == kind
        assert error["loc"] == ("body", "reviews", index)
    else:
        with pytest.raises(RequestLimitExceeded) as raised:
            check_limits(reviews, limits)
        assert raised.value.to_dict()["limit"] == kind
        assert raised.value.to_dict()["index"] == index
        assert raised.value.to_dict()["value"] == len(reviews[index])


def test_limits_accept_valid_reviews():
    limits = ServerLimits(max_review_chars=10)

    check_limits([], limits)
    check_limits(["é" * 10, "😀" * 10, "", "x" * 10], limits)


@pytest.mark.parametrize("count", [0, 1, 2, 3, 4, 5])
def test_sliced_rendering_matches_one_call(monkeypatch, count):
    monkeypatch.setattr(server_module, "RENDER_SLICE", 2)
    kinds = [
        Prediction(
            'a "fine" film é 😀', 0.7123456789012345, 0.2876543210987655, "positive"
        ),
        Prediction("", None, None, None, "empty review"),
        Prediction("dull\n", 1e-300, 1.0, "negative"),
    ]
    predictions = [kinds[index % 3] for index in range(count)]
    expected = JSONResponse(
        {"predictions": [item.to_dict() for item in predictions]}
    ).body

    assert render_predictions(predictions) == expected
    assert json.loads(render_predictions(predictions))["predictions"] == [
        item.to_dict() for item in predictions
    ]


def test_unknown_path(client):
    assert client.get("/nothing-here").status_code == 404


@pytest.mark.parametrize("method, path", [("GET", "/health/"), ("POST", "/predict/")])
def test_trailing_slash_not_redirected(client, method, path):
    response = client.request(
        method, path, json={"reviews": ["good"]}, headers={"Host": "elsewhere.test"}
    )

    assert response.status_code == 404
    assert "location" not in response.headers
    assert response.json()["detail"] == "Not Found"


def test_metrics_format(client):
    post_reviews(client, ["great fun", ""])

    response = client.get("/metrics")
    text = response.text

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert (
        'sentiment_lstm_http_requests_total{endpoint="/predict",method="POST",'
        'status="200"}' in text
    )
    assert "sentiment_lstm_http_request_duration_seconds_bucket{" in text
    assert "# TYPE sentiment_lstm_reviews_scored_total counter" in text


def test_metrics_count_reviews(client):
    def scored_total() -> float:
        for line in client.get("/metrics").text.splitlines():
            if line.startswith("sentiment_lstm_reviews_scored_total "):
                return float(line.split()[1])
        raise AssertionError("sentiment_lstm_reviews_scored_total not found")

    before = scored_total()
    post_reviews(client, ["great fun", "dull", ""])

    assert scored_total() == before + 2


def test_metrics_count_rejections(client):
    post_reviews(client, ["fine"] * (MAX_REVIEWS + 1))
    client.get("/nothing-here")

    text = client.get("/metrics").text

    assert (
        'sentiment_lstm_http_requests_total{endpoint="/predict",method="POST",'
        'status="422"}' in text
    )
    assert 'endpoint="other",method="GET",status="404"' in text


def test_openapi_docs(client):
    docs = client.get("/docs")
    schema = client.get("/openapi.json").json()

    assert docs.status_code == 200
    assert "text/html" in docs.headers["content-type"]
    assert "/predict" in schema["paths"]
    assert "/health" in schema["paths"]


def test_openapi_operation_ids_unique(client):
    schema = client.get("/openapi.json").json()
    operations = [
        (path, method, operation["operationId"])
        for path, methods in schema["paths"].items()
        for method, operation in methods.items()
    ]
    ids = [operation_id for _, _, operation_id in operations]

    assert len(ids) == len(set(ids)), operations
    assert {method for _, method, _ in operations} == {"get", "post"}
    for path in ("/health", "/info", "/metrics", "/docs", "/redoc", "/openapi.json"):
        assert client.head(path).status_code == 200, path


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_docs_pages_work_offline(client, page):
    html = client.get(page).text
    assets = re.findall(r"(?:src|href)=['\"]([^'\"]+)['\"]", html)
    assets += re.findall(r"url: ?['\"]([^'\"]+)['\"]", html)
    scripts = [asset for asset in assets if asset.endswith(".js")]

    assert scripts
    assert "/openapi.json" in assets or 'spec-url="/openapi.json"' in html
    for asset in assets:
        assert asset.startswith("/"), asset
        assert client.get(asset).status_code == 200, asset


def test_openapi_documents_415(client):
    schema = client.get("/openapi.json").json()
    responses = schema["paths"]["/predict"]["post"]["responses"]

    assert "415" in responses


def test_openapi_states_limits_and_media_types(client):
    schema = client.get("/openapi.json").json()
    reviews = schema["components"]["schemas"]["PredictRequest"]["properties"]["reviews"]
    metrics_ok = schema["paths"]["/metrics"]["get"]["responses"]["200"]
    metrics_response = client.get("/metrics")

    # The limits of the server fixture.
    assert reviews["maxItems"] == MAX_REVIEWS
    assert reviews["items"]["maxLength"] == MAX_REVIEW_CHARS
    assert list(metrics_ok["content"]) == ["text/plain"]
    assert metrics_response.headers["content-type"].startswith("text/plain")
    # Only /health and /metrics are served over the connection limit.
    assert "503" in schema["paths"]["/info"]["get"]["responses"]
    assert "503" not in schema["paths"]["/health"]["get"]["responses"]
    assert "503" not in schema["paths"]["/metrics"]["get"]["responses"]


def test_openapi_503_both_bodies(client):
    schema = client.get("/openapi.json").json()
    for path, method in (("/predict", "post"), ("/info", "get")):
        response = schema["paths"][path][method]["responses"]["503"]
        choices = response["content"]["application/json"]["schema"]["anyOf"]
        names = {choice["$ref"].rsplit("/", 1)[-1] for choice in choices}

        assert names == {"LimitError", "ShutdownError"}
    assert schema["components"]["schemas"]["ShutdownError"]["required"] == ["detail"]


def test_read_endpoint_405_allows_head(client):
    response = client.request("OPTIONS", "/health")

    assert response.status_code == 405
    assert response.headers["allow"] == "GET, HEAD"


def test_openapi_422_both_bodies(client):
    schema = client.get("/openapi.json").json()
    response = schema["paths"]["/predict"]["post"]["responses"]["422"]
    choices = response["content"]["application/json"]["schema"]["anyOf"]
    names = {choice["$ref"].rsplit("/", 1)[-1] for choice in choices}

    assert names == {"LimitError", "ValidationFailure"}
    failure = client.post("/predict", json={"reviews": 5}).json()
    assert set(failure) == set(
        schema["components"]["schemas"]["ValidationFailure"]["properties"]
    )
    assert {"loc", "msg", "type"} <= set(failure["detail"][0])


def test_concurrent_results_match(server):
    url, _ = server
    rng = random.Random(7)
    words = " ".join(POSITIVE_REVIEWS + NEGATIVE_REVIEWS).split()
    requests = []
    for number in range(48):
        # Every fourth request is long enough to be scored in the thread pool.
        count = rng.randint(10, MAX_REVIEWS) if number % 4 == 0 else rng.randint(1, 4)
        reviews = [
            " ".join(rng.choices(words, k=rng.randint(1, 30))) for _ in range(count)
        ]
        requests.append([review[:MAX_REVIEW_CHARS] for review in reviews])
    assert sum(map(len, requests[0])) > INLINE_MAX_CHARS

    with httpx.Client(base_url=url, timeout=30) as http:
        alone = [post_reviews(http, reviews).json() for reviews in requests]

    local = threading.local()
    opened = []

    def send(index: int) -> tuple[int, dict]:
        # One client per thread, so each thread has its own connections.
        if not hasattr(local, "http"):
            local.http = httpx.Client(base_url=url, timeout=30)
            opened.append(local.http)
        return index, post_reviews(local.http, requests[index]).json()

    order = list(range(len(requests))) * 2
    rng.shuffle(order)
    try:
        with ThreadPoolExecutor(max_workers=16) as pool:
            together = list(pool.map(send, order))
    finally:
        for http in opened:
            http.close()

    for index, answer in together:
        assert answer == alone[index], f"request {index} differs under load"


def test_predict_dependencies_stay_on_event_loop(model_dir):
    # FastAPI runs a plain function dependency in its thread pool, and under
    # 16 concurrent clients that hand-over more than doubled the p99 latency.
    app = create_app(SentimentModel.load(model_dir, backend="torch"))
    (route,) = [
        route for route in app.routes if getattr(route, "path", "") == "/predict"
    ]
    calls = [dependency.call for dependency in route.dependant.dependencies]

    assert calls
    for call in calls:
        assert inspect.iscoroutinefunction(call), call.__name__


@pytest.mark.parametrize(
    ("backend", "reviews", "on_loop"),
    [
        ("onnx", ["fine"], True),
        ("onnx", [""] * 65, False),
        ("onnx", ["fine " * 201], False),
        # A forward pass of another request could hold PyTorch's lock.
        ("torch", ["fine"], False),
    ],
)
def test_where_requests_are_scored(model_dir, tmp_path, backend, reviews, on_loop):
    exported = tmp_path / "exported"
    shutil.copytree(model_dir, exported)
    export_model(exported)
    model = SentimentModel.load(exported, backend=backend)
    threads = []
    score = model.predict

    def recording_predict(texts, batch_size=256, **options):
        try:
            asyncio.get_running_loop()
            threads.append("event loop")
        except RuntimeError:
            threads.append("thread pool")
        return score(texts, batch_size, **options)

    model.predict = recording_predict
    with TestClient(create_app(model)) as local:
        response = local.post("/predict", json={"reviews": reviews})

    assert response.status_code == 200
    assert len(response.json()["predictions"]) == len(reviews)
    assert threads == ["event loop" if on_loop else "thread pool"]


def send_then_close(port: int, body: bytes, started: threading.Event) -> None:
    """Send a /predict request, wait until its scoring starts, then disconnect."""
    with socket.create_connection(("127.0.0.1", port)) as connection:
        connection.sendall(
            b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n" % len(body) + body
        )
        assert started.wait(timeout=30)


def metrics_once_predict_counted(port: int) -> str:
    """Return /metrics once it counts a /predict request, within 30 s."""
    deadline = time.monotonic() + 30
    while True:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
        if 'endpoint="/predict",method="POST"' in text:
            return text
        assert time.monotonic() < deadline, "the request did not finish"
        time.sleep(0.05)


def test_departed_client_counted_unanswered(model_dir):
    model = SentimentModel.load(model_dir, backend="torch")
    scoring = threading.Event()
    release = threading.Event()
    score = model.predict

    def predict_when_released(texts, batch_size=256, **options):
        scoring.set()
        release.wait(timeout=30)
        return score(texts, batch_size, **options)

    model.predict = predict_when_released
    port = free_port()
    uvicorn_server, thread = run_protocol_server(
        create_app(model), port, max_header_bytes=MAX_HEADER_BYTES, header_timeout=5
    )
    # Over 1,000 characters, so scored in the thread pool.
    body = json.dumps({"reviews": ["a dull mess " * 100]}).encode()
    try:
        send_then_close(port, body, scoring)
        # The server detects the closed connection while the review is scored.
        time.sleep(0.5)
        release.set()
        text = metrics_once_predict_counted(port)
    finally:
        release.set()
        uvicorn_server.should_exit = True
        thread.join(timeout=10)

    counted = [
        line
        for line in text.splitlines()
        if line.startswith("sentiment_lstm_http_requests_total{")
        and 'endpoint="/predict"' in line
    ]
    assert counted == [
        'sentiment_lstm_http_requests_total{endpoint="/predict",method="POST",'
        'status="none"} 1.0'
    ]


def test_client_gone_while_sending_logged_at_debug(model_dir, caplog):
    model = SentimentModel.load(model_dir, backend="torch")
    port = free_port()
    uvicorn_server, thread = run_protocol_server(
        create_app(model), port, max_header_bytes=MAX_HEADER_BYTES, header_timeout=5
    )
    caplog.set_level(logging.DEBUG, logger="sentiment_lstm.server")
    try:
        with socket.create_connection(("127.0.0.1", port)) as connection:
            connection.sendall(
                b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                b"Content-Type: application/json\r\n"
                b'Content-Length: 1000\r\n\r\n{"reviews": ["half'
            )
        text = metrics_once_predict_counted(port)
    finally:
        uvicorn_server.should_exit = True
        thread.join(timeout=10)
    lines = [
        record
        for record in caplog.records
        if "disconnected while sending" in record.message
    ]

    assert 'endpoint="/predict",method="POST",status="none"} 1.0' in text
    assert len(lines) == 1
    assert lines[0].levelno == logging.DEBUG


def test_departed_client_scoring_stops(model_dir, caplog):
    model = SentimentModel.load(model_dir, backend="torch")
    passes = []
    first_pass = threading.Event()
    probabilities = model.backend.probabilities

    def slow_pass(ids, lengths):
        passes.append(len(ids))
        first_pass.set()
        time.sleep(0.3)
        return probabilities(ids, lengths)

    model.backend.probabilities = slow_pass
    # Scored one review a pass below, so 48 passes of 0.3 s in full.
    reviews = ["a dull mess " * 100] * 48
    port = free_port()
    uvicorn_server, thread = run_protocol_server(
        create_app(model), port, max_header_bytes=MAX_HEADER_BYTES, header_timeout=5
    )
    body = json.dumps({"reviews": reviews}).encode()
    score = model.predict
    model.predict = lambda texts, batch_size=256, **options: score(texts, 1, **options)
    caplog.set_level(logging.DEBUG, logger="sentiment_lstm.server")
    try:
        send_then_close(port, body, first_pass)
        text = metrics_once_predict_counted(port)
    finally:
        uvicorn_server.should_exit = True
        thread.join(timeout=10)

    # The pass under way when the client left ends; no other pass starts
    # unless the server saw the closed connection only after it.
    assert 1 <= len(passes) <= 2
    assert 'status="none"} 1.0' in text
    assert "sentiment_lstm_reviews_scored_total 0.0" in text
    assert any(
        "disconnected, so the scoring of its 48 reviews stopped" in record.message
        for record in caplog.records
    )


def test_model_failure_returns_500(model_dir):
    model = SentimentModel.load(model_dir, backend="torch")

    def fail(texts, batch_size=256, **options):
        raise RuntimeError("scoring failed")

    model.predict = fail
    app = create_app(model)
    with TestClient(app, raise_server_exceptions=False) as local:
        response = local.post("/predict", json={"reviews": ["fine"]})
        metrics = local.get("/metrics").text

    assert response.status_code == 500
    assert response.json() == {"detail": "internal server error: RuntimeError"}
    assert 'endpoint="/predict",method="POST",status="500"' in metrics


def test_logs_startup_and_errors(client, server, model_dir):
    _, log = server
    post_reviews(client, ["fine"] * (MAX_REVIEWS + 1))

    text = log.read_text()

    assert f"starting to serve {model_dir} with the torch backend" in text
    assert "http://127.0.0.1:" in text
    assert "rejected with 422: too many reviews" in text


def test_serve_defaults():
    args = build_parser().parse_args(["serve", "--model", "m"])

    assert args.host == "127.0.0.1"
    assert args.port == 8000
    assert args.backend == "auto"
    assert args.max_review_chars == 10_000
    assert args.max_reviews == 256
    assert args.max_body_bytes == 1024 * 1024
    assert args.body_timeout == 60
    assert args.max_connections is None
    assert args.max_header_bytes == 16 * 1024
    assert args.header_timeout == 10
    assert args.shutdown_timeout == 5
    assert args.access_log is False
    assert args.threads == 1


def run_serve(model_dir: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        serve_command(model_dir, free_port(), *extra),
        capture_output=True,
        text=True,
        timeout=STARTUP_SECONDS,
    )


def test_missing_model_exits(tmp_path):
    missing = tmp_path / "no-model"

    result = run_serve(missing)
    last_line = message_of(result.stderr.strip().splitlines()[-1])

    assert result.returncode == 1
    assert last_line.startswith("sentiment-lstm serve: error:")
    assert str(missing) in last_line
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("model.safetensors", b"not safetensors"),
        ("config.json", b"{truncated"),
        ("tokenizer.json", b"[]"),
        ("training.json", b'{"history": 5}'),
        ("training.json", b'{"data": ["fingerprint"]}'),
    ],
)
def test_broken_model_exits(tmp_path, model_dir, name, content):
    broken = tmp_path / "broken"
    shutil.copytree(model_dir, broken)
    (broken / name).write_bytes(content)

    result = run_serve(broken)
    last_line = message_of(result.stderr.strip().splitlines()[-1])

    assert result.returncode == 1
    assert last_line.startswith("sentiment-lstm serve: error:")
    assert str(broken / name) in last_line
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("dropout", "0.5"),
        ("pad_index", "0"),
        ("bidirectional", "yes"),
        ("hidden_dim", True),
        ("vocab_size", None),
    ],
)
def test_edited_config_exits(tmp_path, model_dir, key, value):
    edited = tmp_path / "edited"
    shutil.copytree(model_dir, edited)
    config = json.loads((edited / "config.json").read_text())
    if value is None:
        del config["model"][key]
    else:
        config["model"][key] = value
    (edited / "config.json").write_text(json.dumps(config))

    result = run_serve(edited)
    lines = result.stderr.strip().splitlines()

    assert result.returncode == 1
    assert len(lines) == 1
    assert message_of(lines[0]).startswith("sentiment-lstm serve: error:")
    assert str(edited / "config.json") in lines[0]
    assert key in lines[0]


def test_info_with_odd_epoch_history(tmp_path, model_dir):
    from sentiment_lstm.server import describe_model

    copy = tmp_path / "copy"
    shutil.copytree(model_dir, copy)
    metadata = json.loads((copy / "training.json").read_text())
    metadata["history"]["epochs"] = 3
    (copy / "training.json").write_text(json.dumps(metadata))

    info = describe_model(SentimentModel.load(copy))

    assert info["training"]["epochs_trained"] == 0


def test_missing_file_exits(tmp_path, model_dir):
    broken = tmp_path / "broken"
    shutil.copytree(model_dir, broken)
    os.remove(broken / "text_encoder.json")

    result = run_serve(broken)

    assert result.returncode == 1
    assert str(broken / "text_encoder.json") in result.stderr


def test_onnx_without_export_exits(model_dir):
    result = run_serve(model_dir, "--backend", "onnx")

    assert result.returncode == 1
    assert str(model_dir / "model.onnx") in result.stderr.strip().splitlines()[-1]


def test_port_in_use_exits(model_dir):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        result = subprocess.run(
            serve_command(model_dir, port),
            capture_output=True,
            text=True,
            timeout=STARTUP_SECONDS,
        )

    assert result.returncode == 1
    # The one line of the error, before uvicorn starts.
    assert len(result.stderr.splitlines()) == 1
    assert message_of(result.stderr.rstrip("\n")) == (
        f"sentiment-lstm serve: error: cannot listen on 127.0.0.1:{port}: the "
        "address is already in use; choose another port with --port, or stop the "
        "program that listens on it"
    )


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        # A documentation address (RFC 5737) that no interface here has.
        (
            "192.0.2.7",
            "cannot listen on 192.0.2.7:{port}: 192.0.2.7 is not an address of "
            "this machine; choose another --host, such as 127.0.0.1",
        ),
        # A name that fails before any lookup: its first label is too long.
        (
            "a" * 64 + ".example",
            "cannot find the address of --host '" + "a" * 64 + ".example' (",
        ),
    ],
)
def test_unusable_host_exits(model_dir, host, expected):
    port = free_port()
    result = subprocess.run(
        serve_command(model_dir, port, "--host", host),
        capture_output=True,
        text=True,
        timeout=STARTUP_SECONDS,
    )

    assert result.returncode == 1
    assert message_of(result.stderr.rstrip("\n")).startswith(
        "sentiment-lstm serve: error: " + expected.format(port=port)
    )
    assert len(result.stderr.splitlines()) == 1


@pytest.mark.parametrize(
    ("extra", "error"),
    [
        (["--port", "99999"], "argument --port: expected a port number"),
        (["--host", ""], "argument --host:"),
    ],
)
def test_serve_option_error_has_time_and_level(capsys, extra, error):
    with pytest.raises(SystemExit) as exit_info:
        main(["serve", "--model", "m", *extra])
    lines = capsys.readouterr().err.strip().splitlines()

    assert exit_info.value.code == 2
    assert lines[0].startswith("usage: sentiment-lstm serve")
    assert message_of(lines[-1]).startswith(f"sentiment-lstm serve: error: {error}")


def test_privileged_port_error_names_the_fix():
    error = OSError(errno.EACCES, "Permission denied")

    message = _bind_error(("0.0.0.0", 80), 80, error)

    assert message == (
        "cannot listen on 0.0.0.0:80: permission denied, because ports below 1024 "
        "need administrator rights; choose a --port of 1024 or above"
    )


@pytest.mark.parametrize("value", ["100", "0", "-5"])
@pytest.mark.parametrize(
    ("flag", "reason"),
    [
        ("--max-body-bytes", "so that a request with a review of a few sentences fits"),
        (
            "--max-header-bytes",
            "because a smaller limit would reject ordinary requests, /health included",
        ),
    ],
)
def test_tiny_byte_limit_rejected(capsys, flag, reason, value):
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(["serve", "--model", "m", flag, value])
    error = capsys.readouterr().err

    assert exit_info.value.code == 2
    assert (
        f"argument {flag}: expected at least 1024 bytes, got {value}, {reason}\n"
    ) in error


def test_review_limit_above_scorable_rejected(capsys):
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(
            ["serve", "--model", "m", "--max-review-chars", "16777217"]
        )
    error = capsys.readouterr().err

    assert exit_info.value.code == 2
    assert (
        "argument --max-review-chars: expected at most 16,777,216, the longest "
        "review that a model scores, got 16,777,217\n"
    ) in error
    with pytest.raises(ValueError, match="max_review_chars must be at most 16777216"):
        ServerLimits(max_review_chars=16_777_217)


def test_bad_port_rejected(model_dir):
    result = subprocess.run(
        [sys.executable, "-m", "sentiment_lstm", "serve", "--model", str(model_dir)]
        + ["--port", "70000"],
        capture_output=True,
        text=True,
        timeout=STARTUP_SECONDS,
    )

    assert result.returncode == 2
    assert "70000" in result.stderr


@pytest.mark.parametrize("host", ["", "  ", "[]", "[ ]"])
def test_empty_host_rejected(host, capsys):
    # uvicorn listens on every interface for an empty host, so an unset
    # variable in --host "$HOST" would expose the service.
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(["serve", "--model", "m", "--host", host])

    assert exit_info.value.code == 2
    assert "argument --host" in capsys.readouterr().err


@pytest.mark.parametrize(
    "host",
    ["127.0.0.1:8000", "localhost:8000", "http://127.0.0.1", "0.0.0.0/0", "[::1]:8000"],
)
def test_url_or_port_in_host_rejected(host, capsys):
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(["serve", "--model", "m", "--host", host])
    error = capsys.readouterr().err

    assert exit_info.value.code == 2
    assert "argument --host" in error
    assert "the port with --port" in error


@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "::", "localhost"])
def test_plain_host_accepted(host):
    args = build_parser().parse_args(["serve", "--model", "m", "--host", host])

    assert args.host == host


@pytest.mark.parametrize("host", ["[[::1]]", "::1]", "[::1"])
def test_stray_brackets_in_host_rejected(host, capsys):
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(["serve", "--model", "m", "--host", host])

    assert exit_info.value.code == 2
    assert "one pair of brackets or none" in capsys.readouterr().err


@pytest.mark.parametrize(("host", "address"), [("[::1]", "::1"), ("[::]", "::")])
def test_bracketed_ipv6_host_unwrapped(host, address):
    args = build_parser().parse_args(["serve", "--model", "m", "--host", host])

    assert args.host == address


def test_serve_without_torch_names_fix_once(model_dir, capsys, monkeypatch):
    # None in sys.modules makes the import raise ImportError, as in a serving
    # install. The model has no model.onnx, so only PyTorch can score it.
    monkeypatch.setitem(sys.modules, "torch", None)

    status = main(["serve", "--model", str(model_dir), "--port", str(free_port())])
    lines = capsys.readouterr().err.strip().splitlines()

    assert status == 1
    assert len(lines) == 1
    assert message_of(lines[0]).startswith("sentiment-lstm serve: error: cannot load")
    assert lines[0].count("sentiment-lstm export") == 1
