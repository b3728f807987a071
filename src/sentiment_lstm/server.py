"""HTTP service that scores reviews with a loaded model: FastAPI on uvicorn.

``create_app(model)`` builds the application. ``sentiment-lstm serve`` loads
the model, builds the app and runs it on uvicorn. Endpoints:

- ``POST /predict``: ``{"reviews": [...]}`` in, one prediction per review out,
  in request order;
- ``GET /health``: liveness and the loaded backend;
- ``GET /info``: model configuration, labels, training metrics and versions;
- ``GET /metrics``: Prometheus text format;
- ``GET /docs``, ``GET /redoc`` and ``GET /openapi.json``: the OpenAPI
  description.

A request over a limit (body size, reviews per request, characters per
review) gets a JSON error that names the limit, its maximum and the value
received. The body size is checked from ``Content-Length`` and again while the
body is read, before any JSON parsing. A body that does not arrive in full
within the body timeout gets 408. The limits on request headers and open
connections need the HTTP protocol's help; ``sentiment-lstm serve`` runs
uvicorn with the protocol of :mod:`sentiment_lstm.http_protocol`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.encoders import jsonable_encoder
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from fastapi.routing import APIRoute
from fastapi_offline import FastAPIOffline
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_core import PydanticCustomError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from sentiment_lstm import __version__
from sentiment_lstm.predictor import Prediction, ScoringCancelled, SentimentModel
from sentiment_lstm.text import MAX_REVIEW_CHARS

logger = logging.getLogger(__name__)

DEFAULT_MAX_REVIEW_CHARS = 10_000
DEFAULT_MAX_REVIEWS = 256
DEFAULT_MAX_BODY_BYTES = 1024 * 1024
# Seconds from the end of the request headers until the whole body must have
# arrived. At 256 kbit/s a body of the default maximum size takes about 33 s.
DEFAULT_BODY_TIMEOUT = 60
# Bytes of a request line and its headers, as uvicorn allows with its h11
# protocol; a typical /predict request has a few hundred.
DEFAULT_MAX_HEADER_BYTES = 16 * 1024
# Seconds for a request line and its headers to arrive.
DEFAULT_HEADER_TIMEOUT = 10

# Key in a request scope's "extensions" by which the HTTP protocol marks a
# request over the connection limit; the value has "maximum" and "value".
OVER_CAPACITY = "sentiment_lstm.over_capacity"
# Key in a request scope's "extensions" by which the HTTP protocol marks a
# request that it sent an error response to itself, after the application
# received it, because the body did not parse as HTTP. The value is the
# status, and the application then reads a disconnect.
PROTOCOL_ERROR = "sentiment_lstm.protocol_error"
# Key in a request scope's "extensions" under which the HTTP protocol puts a
# RequestControl of the request's connection.
REQUEST_CONTROL = "sentiment_lstm.request_control"
# Paths served even over the connection limit: they take no body and little
# work, and health checks and metric scrapes matter most under load.
CAPACITY_EXEMPT_PATHS = frozenset(("/health", "/metrics"))

# Paths that get their own metrics label. Any other path is counted as
# "other", so that scans of random URLs cannot create unbounded label values.
KNOWN_PATHS = frozenset(
    ("/predict", "/health", "/info", "/metrics", "/docs", "/openapi.json", "/redoc")
)


class RejectionLog:
    """Logs rejected requests as warnings, at most ``per_minute`` each minute.

    A client that sends many bad requests, or opens many connections and
    then stalls, would otherwise fill the log with one line each. /metrics
    counts every rejection either way. ``per_minute`` None logs them all.
    """

    def __init__(
        self,
        per_minute: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.per_minute = per_minute
        self._clock = clock
        self._minute_start = -math.inf
        self._minute_began = 0.0
        self._logged = 0
        self._left_out = 0

    def warning(self, log: logging.Logger, message: str, *args: Any) -> None:
        """Log one rejection on ``log``, unless this minute's lines are used up."""
        now = self._clock()
        if now - self._minute_start >= 60:
            self.log_left_out(log)
            self._minute_start = now
            self._minute_began = time.time()
            self._logged = 0
        if self.per_minute is None or self._logged < self.per_minute:
            self._logged += 1
            log.warning(message, *args)
            return
        if not self._left_out:
            log.warning(
                "%s logged in this minute, the most that --log-rejections "
                "allows; the rest of the minute's are counted in /metrics but "
                "not logged",
                _rejected_requests(self.per_minute),
            )
            self._report_at_minute_end(log, now)
        self._left_out += 1

    def log_left_out(self, log: logging.Logger) -> None:
        """Log how many rejections of the current minute were left out, if any."""
        if not self._left_out:
            return
        single = self._left_out == 1
        log.warning(
            "%d more rejected %s in the minute from %s %s not logged "
            "(--log-rejections %d)",
            self._left_out,
            "request" if single else "requests",
            time.strftime("%H:%M:%S", time.localtime(self._minute_began)),
            "was" if single else "were",
            self.per_minute,
        )
        self._left_out = 0

    def _report_at_minute_end(self, log: logging.Logger, now: float) -> None:
        """Log the count left out when the minute ends, on the running event loop.

        Without a loop, as outside the server, the count waits for the next
        rejection or :meth:`log_left_out`.
        """
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return

        def end_minute() -> None:
            self.log_left_out(log)
            self._minute_start = -math.inf

        loop.call_later(max(0.0, 60 - (now - self._minute_start)), end_minute)


def _rejected_requests(count: int | None) -> str:
    return f"{count} rejected request{'' if count == 1 else 's'}"


# The log of rejected requests of this process; ``serve`` sets its limit.
REJECTION_LOG = RejectionLog()

# Requests with at most this many characters in all are scored on the event
# loop's thread, and longer ones in the thread pool so that they do not hold up
# other connections. The hand-over to a worker thread costs more than scoring
# one short review. With the ONNX backend and the default unidirectional model
# on a 2-core AMD EPYC, one rt-polarity review scored in about 0.3 ms and 2,000
# characters in about 3 ms. Scoring inline cut the server's CPU time per
# one-review request by about a fifth (benchmarks/http_load.py).
INLINE_MAX_CHARS = 1_000
# Also at most this many reviews, because each result costs time to render
# however short its review is.
INLINE_MAX_REVIEWS = 64
# Predictions turned into JSON in one call of the encoder. A slice of
# 1,024 took 3.5 ms on a 2-core AMD EPYC, with reviews of 20 characters.
RENDER_SLICE = 1024

# Latency buckets in seconds, from 1 ms to 10 s.
LATENCY_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


@dataclass(frozen=True)
class ServerLimits:
    """Per-request limits; a request over any of them gets a 4xx JSON error.

    Attributes:
        max_review_chars: Characters (Unicode code points) allowed in one
            review. A longer review gets 422 naming its index.
        max_reviews: Reviews allowed in one request (422 above it).
        max_body_bytes: Bytes allowed in a request body (413 above it).
        body_timeout: Seconds allowed to receive a request body, counted from
            the end of its headers (408 after it).
        max_connections: Connections served at once, or None for no limit.
            The HTTP protocol marks a request over it, and the application
            sends 503.
        max_header_bytes: Bytes allowed in a request line and its headers.
        header_timeout: Seconds allowed for a request line and its headers
            to arrive.

    The HTTP protocol of :mod:`sentiment_lstm.http_protocol` enforces the
    last three; the application reports them in ``GET /info``.
    """

    max_review_chars: int = DEFAULT_MAX_REVIEW_CHARS
    max_reviews: int = DEFAULT_MAX_REVIEWS
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    body_timeout: int = DEFAULT_BODY_TIMEOUT
    max_connections: int | None = None
    max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES
    header_timeout: int = DEFAULT_HEADER_TIMEOUT

    def __post_init__(self) -> None:
        for name in (
            "max_review_chars",
            "max_reviews",
            "max_body_bytes",
            "body_timeout",
            "max_connections",
            "max_header_bytes",
            "header_timeout",
        ):
            value = getattr(self, name)
            if name == "max_connections" and value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        if self.max_review_chars > MAX_REVIEW_CHARS:
            raise ValueError(
                f"max_review_chars must be at most {MAX_REVIEW_CHARS}, the longest "
                f"review that a model scores, got {self.max_review_chars}"
            )


# Above this many unknown fields, a request body gets one validation error for
# all of them instead of one each.
MAX_UNKNOWN_FIELDS = 10


def predict_request_model(
    max_reviews: int, max_review_chars: int = DEFAULT_MAX_REVIEW_CHARS
) -> type[BaseModel]:
    """Build the body model of ``POST /predict`` for one server's limits.

    The limits appear in the OpenAPI schema as ``maxItems`` and the items'
    ``maxLength``; the length of each review is checked after validation.

    The reviews are counted before pydantic validates each one. Otherwise a
    1 MiB body such as ``{"reviews": [1, 1, ...]}`` would get one validation
    error per item, half a million of them, and block the event loop for
    seconds.

    Raises:
        RequestLimitExceeded: From validation, with status 422, when the body
            has more than ``max_reviews`` reviews.
    """

    class PredictRequest(BaseModel):
        """Body of ``POST /predict``."""

        model_config = ConfigDict(extra="forbid")

        reviews: list[str] = Field(
            description="Review texts to score; the response keeps their order.",
            examples=[["a gorgeous, witty film", "dull and far too long"]],
            json_schema_extra={
                "maxItems": max_reviews,
                "items": {"type": "string", "maxLength": max_review_chars},
            },
        )

        @field_validator("reviews", mode="before")
        @classmethod
        def count_reviews(cls, value: Any) -> Any:
            # pydantic re-raises exceptions other than ValueError and
            # AssertionError unchanged, so the app's handler of this one runs.
            if isinstance(value, list) and len(value) > max_reviews:
                raise too_many_reviews(len(value), max_reviews)
            return value

        @model_validator(mode="before")
        @classmethod
        def reject_many_unknown_fields(cls, value: Any) -> Any:
            # One error per unknown field would make a body of 87,000 keys
            # block the event loop for about 2 s and return 9 MB of errors.
            if not isinstance(value, dict):
                return value
            _check_field_names(value)
            unknown = [key for key in value if key != "reviews"]
            if len(unknown) > MAX_UNKNOWN_FIELDS:
                raise PydanticCustomError(
                    "extra_forbidden",
                    "{count} unknown fields, first {names}; send only 'reviews'",
                    {"count": len(unknown), "names": ", ".join(unknown[:3])[:200]},
                )
            return value

    return PredictRequest


def _check_field_names(body: dict[str, Any]) -> None:
    """Raise a validation error for a field name with an unpaired surrogate.

    JSON can escape one in a key as ``"\\udc80"``, but pydantic cannot
    validate or name such a key, and UTF-8 cannot encode it.
    """
    for name in body:
        if name.isascii():
            continue
        try:
            name.encode("utf-8")
        except UnicodeEncodeError:
            escaped = name.encode("utf-8", "backslashreplace").decode("utf-8")
            raise PydanticCustomError(
                "unicode_surrogate",
                "field name '{name}' has an unpaired UTF-16 surrogate; send "
                "only 'reviews'",
                {"name": escaped[:100]},
            ) from None


class PredictionItem(BaseModel):
    """The score of one review. An empty review has ``error`` set instead."""

    text: str
    positive: float | None = Field(description="Probability that it is positive.")
    negative: float | None = Field(description="1 - positive.")
    label: str | None = Field(description="'positive' or 'negative'.")
    error: str | None = Field(
        default=None, description="Why the review was not scored; absent otherwise."
    )


class PredictResponse(BaseModel):
    """Body of a successful ``POST /predict`` response."""

    predictions: list[PredictionItem]


class LimitError(BaseModel):
    """Body of a response to a request over one of the server's limits."""

    detail: str
    limit: str
    maximum: int
    value: int
    index: int | None = None


class ShutdownError(BaseModel):
    """Body of a 503 response to a request cancelled as the server shut down."""

    detail: str


class MediaTypeError(BaseModel):
    """Body of a 400, 415 or 501 response: a request that cannot be read as JSON."""

    detail: str


class ValidationErrorItem(BaseModel):
    """One way in which a request body does not match the schema."""

    loc: list[str | int]
    msg: str
    type: str
    ctx: dict[str, Any] | None = None


class ValidationFailure(BaseModel):
    """Body of a 422 response to a request body that does not match the schema."""

    detail: list[ValidationErrorItem]


class RequestLimitExceeded(Exception):
    """A request broke one of the :class:`ServerLimits`.

    Attributes:
        status_code: HTTP status of the error response.
        limit: Name of the limit, as in :class:`ServerLimits`.
        maximum: The configured limit.
        value: The value the request had.
        index: Index of the offending review, where one review broke it.
    """

    def __init__(
        self,
        message: str,
        *,
        status_code: int,
        limit: str,
        maximum: int,
        value: int,
        index: int | None = None,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.limit = limit
        self.maximum = maximum
        self.value = value
        self.index = index

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON body of the error response."""
        body: dict[str, Any] = {
            "detail": str(self),
            "limit": self.limit,
            "maximum": self.maximum,
            "value": self.value,
        }
        if self.index is not None:
            body["index"] = self.index
        return body


class ServerMetrics:
    """Prometheus counters and histograms of one application.

    Each application gets its own registry, so that several apps in one
    process (as in tests) do not share or clash over metric names.
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "sentiment_lstm_http_requests",
            "HTTP requests answered, by endpoint, method and status code.",
            ("endpoint", "method", "status"),
            registry=self.registry,
        )
        self.latency = Histogram(
            "sentiment_lstm_http_request_duration_seconds",
            "Time from receiving a request to sending the last response byte.",
            ("endpoint",),
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.in_progress = Gauge(
            "sentiment_lstm_http_requests_in_progress",
            "Requests being handled now.",
            registry=self.registry,
        )
        self.reviews_scored = Counter(
            "sentiment_lstm_reviews_scored",
            "Reviews that received a score.",
            registry=self.registry,
        )
        self.reviews_unscored = Counter(
            "sentiment_lstm_reviews_unscored",
            "Reviews returned with an error instead of a score (no tokens).",
            registry=self.registry,
        )
        self.header_rejections = Counter(
            "sentiment_lstm_http_header_rejections",
            "Requests that the HTTP protocol rejected for their headers or trailer "
            "fields, by the limit they broke (max_header_bytes or header_timeout).",
            ("limit",),
            registry=self.registry,
        )

        self.invalid_requests = Counter(
            "sentiment_lstm_http_invalid_requests",
            "Requests that did not parse as HTTP/1.1 and got 400 from the HTTP "
            "protocol; those whose head parsed count in "
            "sentiment_lstm_http_requests_total too.",
            registry=self.registry,
        )

    def render(self) -> bytes:
        """Return every metric in the Prometheus text exposition format."""
        return generate_latest(self.registry)


class MetricsMiddleware:
    """Counts every response and times it, including those of inner middleware."""

    def __init__(self, app: ASGIApp, metrics: ServerMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        endpoint = path if path in KNOWN_PATHS else "other"
        status: int | None = None
        started = time.perf_counter()

        control = scope.get("extensions", {}).get(REQUEST_CONTROL)

        async def send_with_status(message: Message) -> None:
            nonlocal status
            # uvicorn drops a response to a client that has disconnected.
            if message["type"] == "http.response.start" and not (
                control is not None and control.disconnected()
            ):
                status = message["status"]
            await send(message)

        self.metrics.in_progress.inc()
        try:
            await self.app(scope, receive, send_with_status)
        except asyncio.CancelledError:
            # uvicorn cancels the requests still in progress when its shutdown
            # timeout ends, and the end of the event loop cancels them after a
            # second Ctrl-C; nothing else cancels a request's task.
            if control is not None and (status is not None or control.client_stalled()):
                # The response had begun, or the client reads nothing, so a
                # 503 cannot reach it either. uvicorn would log the
                # cancellation as an error with a traceback, and respond to a
                # request without a response with a 500.
                control.abort()
                logger.warning(
                    "%s %s from %s cancelled at shutdown; its connection was "
                    "closed without a complete response",
                    scope["method"],
                    scope["path"],
                    _client(scope),
                )
                status = None
                return
            if status is not None:
                raise
            status = 503
            await _send_shutdown_error(scope, send)
        except Exception:
            # Starlette's outermost middleware turns the error into a 500.
            if status is None:
                status = 500
            raise
        finally:
            self.metrics.in_progress.dec()
            self.metrics.latency.labels(endpoint).observe(time.perf_counter() - started)
            # A request that ended without a response, because the client
            # disconnected, is counted with status "none".
            if status is None:
                status = scope.get("extensions", {}).get(PROTOCOL_ERROR)
            label = "none" if status is None else str(status)
            self.metrics.requests.labels(endpoint, scope["method"], label).inc()


async def _send_shutdown_error(scope: Scope, send: Send) -> None:
    """Send 503 for a request that the server cancelled as it shut down."""
    detail = (
        "server shutting down: the request was cancelled before it finished, "
        "after the shutdown timeout (--shutdown-timeout) or at once on a "
        "second Ctrl-C; send it again once the server is back"
    )
    logger.warning(
        "%s %s from %s cancelled with 503: %s",
        scope["method"],
        scope["path"],
        _client(scope),
        detail,
    )
    response = JSONResponse(
        {"detail": detail}, status_code=503, headers={"Connection": "close"}
    )
    await response(scope, _no_receive, send)


class CapacityMiddleware:
    """Sends 503 to a request that arrived over the connection limit.

    The HTTP protocol counts the open connections and marks such a request
    in its scope. This middleware then responds in JSON before the body is
    read, and closes the connection. ``/health`` and ``/metrics`` are served
    even then.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        mark = scope.get("extensions", {}).get(OVER_CAPACITY)
        if (
            scope["type"] != "http"
            or mark is None
            or scope["path"] in CAPACITY_EXEMPT_PATHS
        ):
            await self.app(scope, receive, send)
            return
        error = RequestLimitExceeded(
            f"server busy: {mark['value']} connections or requests at once, "
            f"above the limit of {mark['maximum']} (--max-connections); retry "
            "in a moment",
            status_code=503,
            limit="max_connections",
            maximum=mark["maximum"],
            value=mark["value"],
        )
        _log_rejection(scope, error)
        response = JSONResponse(
            error.to_dict(),
            status_code=503,
            headers={"Connection": "close", "Retry-After": "1"},
        )
        await response(scope, _no_receive, send)


class BodySizeLimitMiddleware:
    """Rejects request bodies over ``max_body_bytes`` with 413 before parsing.

    A declared ``Content-Length`` over the limit is rejected without reading
    the body. Otherwise the body is read in full, counting bytes as they
    arrive (which also catches chunked bodies without a length), and then
    handed on to the application. A body that is still incomplete
    ``body_timeout`` seconds after the headers gets 408, so that a client
    that stops sending does not hold its connection and buffer for ever.
    """

    def __init__(self, app: ASGIApp, max_body_bytes: int, body_timeout: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.body_timeout = body_timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        declared = _content_length(scope)
        if declared is not None and declared > self.max_body_bytes:
            await self._reject(scope, send, declared, "Content-Length is")
            return

        chunks = []
        received = 0
        deadline = time.monotonic() + self.body_timeout
        while True:
            try:
                message = await asyncio.wait_for(
                    receive(), timeout=deadline - time.monotonic()
                )
            except asyncio.TimeoutError:
                await self._reject_slow(scope, send, received)
                return
            if message["type"] == "http.disconnect":
                # At debug level, as when scoring stops for a departed client,
                # because a client could fill the log with these lines.
                if PROTOCOL_ERROR not in scope.get("extensions", {}):
                    logger.debug("client %s disconnected while sending", _client(scope))
                return
            chunk = message.get("body", b"")
            received += len(chunk)
            if received > self.max_body_bytes:
                await self._reject(scope, send, received, "body reached")
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break

        body = b"".join(chunks)
        body_sent = False

        async def replay() -> Message:
            nonlocal body_sent
            if body_sent:
                return await receive()
            body_sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)

    async def _reject_slow(self, scope: Scope, send: Send, received: int) -> None:
        error = RequestLimitExceeded(
            f"request body timed out: {received} bytes arrived in "
            f"{self.body_timeout} seconds (--body-timeout), fewer than the "
            "whole body; send the body without pauses",
            status_code=408,
            limit="body_timeout",
            maximum=self.body_timeout,
            # The seconds waited, in the unit of the maximum.
            value=self.body_timeout,
        )
        _log_rejection(scope, error)
        # The rest of the body may still arrive, so the connection is closed.
        response = JSONResponse(
            error.to_dict(), status_code=408, headers={"Connection": "close"}
        )
        await response(scope, _no_receive, send)

    async def _reject(self, scope: Scope, send: Send, size: int, what: str) -> None:
        error = RequestLimitExceeded(
            f"request body too large: {what} {size} bytes, above the limit of "
            f"{self.max_body_bytes} bytes (--max-body-bytes); send fewer or "
            "shorter reviews per request",
            status_code=413,
            limit="max_body_bytes",
            maximum=self.max_body_bytes,
            value=size,
        )
        _log_rejection(scope, error)
        response = JSONResponse(
            error.to_dict(), status_code=413, headers={"Connection": "close"}
        )
        await response(scope, _no_receive, send)


async def _no_receive() -> Message:
    return {"type": "http.disconnect"}


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                # The HTTP parser rejects such headers before the app gets them.
                return None
    return None


def _client(scope: Scope) -> str:
    client = scope.get("client")
    if not client:
        return "unknown"
    return f"{client[0]}:{client[1]}"


def _log_rejection(scope: Scope, error: RequestLimitExceeded) -> None:
    REJECTION_LOG.warning(
        logger,
        "%s %s from %s rejected with %d: %s",
        scope["method"],
        scope["path"],
        _client(scope),
        error.status_code,
        error,
    )


class UnsupportedContentEncoding(Exception):
    """A request body sent with a Content-Encoding other than identity."""

    def __init__(self, encoding: str) -> None:
        super().__init__(encoding)
        self.encoding = encoding


class UnsupportedTransferCoding(Exception):
    """A request body sent with a transfer coding other than chunked alone."""

    def __init__(self, codings: str) -> None:
        super().__init__(codings)
        self.codings = codings


def unsupported_coding(
    request: Request,
) -> UnsupportedContentEncoding | UnsupportedTransferCoding | None:
    """Return the error for a body coding that the server does not decode, if any.

    The server does not decompress bodies. A compressed body fails to parse
    as JSON anyway, but a plain body sent with such a header would otherwise
    be scored as sent. The HTTP parser decodes chunked bodies and passes any
    other transfer coding before it, such as gzip in "gzip, chunked",
    through undecoded.
    """
    # Header lines of one name form one list (RFC 9110, section 5.3).
    encoding = ", ".join(
        value.strip() for value in request.headers.getlist("content-encoding")
    )
    codings = [coding.strip().lower() for coding in encoding.split(",")]
    if any(coding not in ("", "identity") for coding in codings):
        return UnsupportedContentEncoding(encoding)
    transfer = request.headers.getlist("transfer-encoding")
    codings = ", ".join(value.strip() for value in transfer)
    if transfer and codings.lower() != "chunked":
        return UnsupportedTransferCoding(codings)
    return None


async def require_identity_encoding(request: Request) -> None:
    """Reject a request body whose coding the server does not decode.

    The check is a coroutine because FastAPI runs a plain function
    dependency in its thread pool, and that hand-over more than doubled the
    p99 latency of /predict under 16 concurrent clients.

    Raises:
        UnsupportedContentEncoding: For any Content-Encoding but identity.
        UnsupportedTransferCoding: For a Transfer-Encoding other than chunked.
    """
    error = unsupported_coding(request)
    if error is not None:
        raise error


async def check_predict_request(request: Request) -> None:
    """Run the checks of a /predict request that its schema cannot express.

    One dependency rather than one per check, because FastAPI's work per
    dependency shows in the latency of short requests.

    Raises:
        UnsupportedContentEncoding: See :func:`require_identity_encoding`.
        UnsupportedTransferCoding: See :func:`require_identity_encoding`.
        RequestValidationError: See :func:`reject_repeated_reviews_field`.
    """
    await require_identity_encoding(request)
    await reject_repeated_reviews_field(request)


async def reject_repeated_reviews_field(request: Request) -> None:
    """Reject a body that gives the ``reviews`` field more than once.

    Python's JSON reader keeps the last value of a repeated key, so the
    reviews of the earlier ones would be dropped without a word. The keys of
    the top-level object are read again only when the body could repeat the
    field: when ``"reviews"`` occurs in it more than once, or when it
    contains a ``\\u`` escape, which can spell the key (``"review\\u0073"``).
    Inside a JSON string the quotes would be escaped, so a review that
    mentions the word does not trigger it.

    Raises:
        RequestValidationError: If the top-level object repeats ``reviews``.
    """
    body = await request.body()
    encoding = json.detect_encoding(body)
    if encoding == "utf-8":
        # Nearly every body, searched without decoding it.
        if body.count(b'"reviews"') < 2 and b"\\u" not in body:
            return
    try:
        text = body.decode(encoding)
    except UnicodeDecodeError:
        # The JSON parser has rejected such a body already.
        return
    if encoding != "utf-8" and text.count('"reviews"') < 2 and "\\u" not in text:
        return
    try:
        count = top_level_keys(text).count("reviews")
    except RecursionError as err:
        # FastAPI's parse ran higher in the stack and just fit in Python's
        # recursion limit, so this one cannot tell whether the field repeats.
        raise StarletteHTTPException(400) from err
    if count > 1:
        raise RequestValidationError(
            [
                {
                    "loc": ("body", "reviews"),
                    "msg": f"the field 'reviews' appears {count} times, and "
                    "only the last would be scored; send one 'reviews' list "
                    "with all the reviews",
                    "type": "repeated_field",
                }
            ]
        )


def top_level_keys(text: str) -> list[str]:
    """Return the keys of a JSON object in order, repeated keys included.

    Only the top-level keys are returned. Every object is parsed into a
    list of its (key, value) pairs by the ``list`` builtin, so the parse
    runs at the speed of ``json.loads`` with no Python call per key or per
    object. Returns an empty list when ``text`` is not a JSON object or does
    not parse.

    Raises:
        RecursionError: If the text nests too deep for Python's JSON reader
            at this depth of the stack.
    """
    if not text.lstrip(" \t\n\r\ufeff").startswith("{"):
        return []
    try:
        pairs = json.loads(text.lstrip("\ufeff"), object_pairs_hook=list)
    except ValueError:
        # FastAPI has parsed the body already, so this does not happen.
        return []
    return [key for key, _ in pairs]


def too_many_reviews(count: int, max_reviews: int) -> RequestLimitExceeded:
    """Return the error for a request with ``count`` reviews, above the limit."""
    return RequestLimitExceeded(
        f"too many reviews: the request has {count}, above the limit "
        f"of {max_reviews} per request (--max-reviews); split them "
        "over several requests",
        status_code=422,
        limit="max_reviews",
        maximum=max_reviews,
        value=count,
    )


def check_limits(reviews: list[str], limits: ServerLimits) -> None:
    """Raise if a request has too many reviews or a review is too long.

    Args:
        reviews: The reviews of one request.
        limits: The server's limits.

    Raises:
        RequestLimitExceeded: With status 422, naming the limit, its maximum,
            the value received and, for a long review, its index.
    """
    if len(reviews) > limits.max_reviews:
        raise too_many_reviews(len(reviews), limits.max_reviews)
    # This runs on the event loop, so each check is one call over all the
    # reviews rather than one Python step per review.
    lengths = list(map(len, reviews))
    too_long = None
    if lengths and max(lengths) > limits.max_review_chars:
        too_long = next(
            index
            for index, length in enumerate(lengths)
            if length > limits.max_review_chars
        )
    # A review before the first long one, or that one, may still have an
    # unpaired surrogate, which is reported first.
    checked = reviews if too_long is None else reviews[: too_long + 1]
    _check_unicode_all(checked)
    if too_long is not None:
        length = lengths[too_long]
        raise RequestLimitExceeded(
            f"review at index {too_long} is too long: {length} characters, "
            f"above the limit of {limits.max_review_chars} "
            "(--max-review-chars); shorten it",
            status_code=422,
            limit="max_review_chars",
            maximum=limits.max_review_chars,
            value=length,
            index=too_long,
        )


def _check_unicode_all(reviews: list[str]) -> None:
    """Raise for the first review with an unpaired surrogate, as _check_unicode."""
    joined = "".join(reviews)
    if joined.isascii():
        return
    try:
        joined.encode("utf-8")
    except UnicodeEncodeError:
        for index, review in enumerate(reviews):
            if not review.isascii():
                _check_unicode(review, index)


def _check_unicode(review: str, index: int) -> None:
    """Raise a validation error for a review with an unpaired surrogate.

    JSON can encode one as ``"\\udc80"``, but UTF-8 cannot, so the response
    could not repeat the review.
    """
    try:
        review.encode("utf-8")
    except UnicodeEncodeError as err:
        raise RequestValidationError(
            [
                {
                    "loc": ("body", "reviews", index),
                    "msg": f"review at index {index} has an unpaired UTF-16 "
                    f"surrogate at character {err.start}; send valid Unicode text",
                    "type": "unicode_surrogate",
                }
            ]
        ) from err


def _json_safe(value: Any) -> Any:
    """Return error details with non-finite numbers as strings.

    JSON has no literal for infinity or NaN.
    """
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {key: _json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(item) for item in value]
    return value


def render_predictions(predictions: list[Prediction]) -> bytes:
    """Return the JSON body of a /predict response, as JSONResponse would.

    Python's JSON encoder holds the GIL until it returns, so one call on the
    260,000 predictions of a request under a raised ``--max-reviews`` kept
    the event loop from serving other requests for 0.6-0.75 s. Encoding
    ``RENDER_SLICE`` predictions at a time lets it run in between.
    """
    parts = []
    for start in range(0, len(predictions), RENDER_SLICE):
        items = [item.to_dict() for item in predictions[start : start + RENDER_SLICE]]
        text = json.dumps(
            items, ensure_ascii=False, allow_nan=False, separators=(",", ":")
        )
        # Each slice without its brackets, so that the slices join into one list.
        parts.append(text[1:-1].encode("utf-8"))
    return b'{"predictions":[' + b",".join(parts) + b"]}"


def describe_model(model: SentimentModel) -> dict[str, Any]:
    """Collect what ``GET /info`` reports about a loaded model.

    Training file paths are left out, because they describe the machine the
    model was trained on, not the model.

    Args:
        model: The loaded model.

    Returns:
        JSON-serialisable model, training and version details.
    """
    metadata = model.metadata
    history = metadata.get("history") or {}
    data = metadata.get("data") or {}
    epochs = history.get("epochs")
    return {
        "version": __version__,
        "backend": model.backend.name,
        "labels": list(model.labels),
        "model": model.model_config,
        "text_encoder": metadata.get("text_encoder"),
        "vocab_size": metadata.get("vocab_size"),
        "training": {
            "created_at": metadata.get("created_at"),
            "best_epoch": metadata.get("best_epoch"),
            "epochs_trained": len(epochs) if isinstance(epochs, list) else 0,
            "stopped_early": history.get("stopped_early"),
            "split_sizes": data.get("split_sizes"),
            "data_fingerprint": data.get("fingerprint"),
            "hyperparameters": metadata.get("training"),
            "versions": metadata.get("versions"),
        },
    }


def create_app(model: SentimentModel, limits: ServerLimits | None = None) -> FastAPI:
    """Build the FastAPI application that serves one loaded model.

    Args:
        model: The model to score reviews with, shared by all requests.
            ``/predict`` scores short requests on the event loop's thread
            with ONNX Runtime (up to ``INLINE_MAX_REVIEWS`` reviews and
            ``INLINE_MAX_CHARS`` characters), and others in a thread pool.
        limits: Request limits; the defaults when None.

    Returns:
        The application, ready for uvicorn or any other ASGI server.
    """
    limits = limits or ServerLimits()
    request_model = predict_request_model(limits.max_reviews, limits.max_review_chars)
    metrics = ServerMetrics()
    info = describe_model(model)

    # The documentation pages load Swagger UI and ReDoc from files installed
    # with the package, not from a CDN, so that they work offline.
    app = FastAPIOffline(
        title="sentiment-lstm",
        version=__version__,
        description=(
            "Scores how positive and negative reviews are with an LSTM model. "
            f"Limits: {limits.max_reviews} reviews per request, "
            f"{limits.max_review_chars} characters per review, "
            f"{limits.max_body_bytes} bytes per request body, received within "
            f"{limits.body_timeout} seconds, and {limits.max_header_bytes} bytes "
            f"of request headers, received within {limits.header_timeout} "
            "seconds."
        ),
        # A path with a trailing slash gets a JSON 404 like any unknown
        # path, not a redirect to a URL built from the client's Host header.
        redirect_slashes=False,
    )
    # The documentation pages accept HEAD, as /openapi.json does. Their routes
    # are not in the OpenAPI schema, so no operation id repeats.
    for route in app.routes:
        if isinstance(route, APIRoute) and "GET" in route.methods:
            route.methods.add("HEAD")
    app.state.model = model
    app.state.limits = limits
    app.state.metrics = metrics
    # Starlette runs the middleware added last first, so metrics also count
    # the 503 responses over the connection limit and the 413 responses of
    # the body size check.
    app.add_middleware(
        BodySizeLimitMiddleware,
        max_body_bytes=limits.max_body_bytes,
        body_timeout=limits.body_timeout,
    )
    app.add_middleware(CapacityMiddleware)
    app.add_middleware(MetricsMiddleware, metrics=metrics)

    @app.exception_handler(RequestLimitExceeded)
    async def limit_exceeded(request: Request, error: RequestLimitExceeded):
        _log_rejection(request.scope, error)
        return JSONResponse(error.to_dict(), status_code=error.status_code)

    @app.exception_handler(UnsupportedContentEncoding)
    async def encoding_unsupported(request: Request, error: UnsupportedContentEncoding):
        return _unsupported_encoding(request, error.encoding)

    @app.exception_handler(UnsupportedTransferCoding)
    async def transfer_coding_unsupported(
        request: Request, error: UnsupportedTransferCoding
    ):
        return _unsupported_transfer_coding(request, error.codings)

    @app.exception_handler(RequestValidationError)
    async def validation_failed(request: Request, error: RequestValidationError):
        if isinstance(getattr(error, "body", None), bytes):
            # FastAPI parses a body as JSON only under a JSON Content-Type and
            # otherwise validates the raw bytes, and its error would only state
            # that the body is not an object.
            content_type = request.headers.get("content-type")
            return _unsupported_media_type(request, content_type)
        body = await request.body()
        try:
            body.decode(json.detect_encoding(body))
        except UnicodeDecodeError as decode_error:
            # Python's JSON reader decodes with "surrogatepass", so surrogates
            # encoded in UTF-8 bytes or lone ones in UTF-16 reach the schema,
            # where they would get a misleading 422.
            return _unreadable_body(request, decode_error, body)
        if any(item.get("type") == "json_invalid" for item in error.errors()):
            if _is_blank(await request.body()):
                # FastAPI parses a body of spaces or a byte order mark alone
                # as JSON, and its error message is only "Expecting value".
                error = RequestValidationError(
                    [{"loc": ("body",), "msg": EMPTY_BODY_MESSAGE, "type": "missing"}]
                )
        items = [_error_item(item) for item in error.errors()]
        REJECTION_LOG.warning(
            logger,
            "%s %s from %s rejected with 422: %s",
            request.method,
            request.url.path,
            _client(request.scope),
            _validation_summary(items),
        )
        return JSONResponse({"detail": items}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException):
        # FastAPI returns a bare "There was an error parsing the body" for any
        # failure to parse a JSON body other than a syntax error.
        if error.status_code == 400 and error.__cause__ is not None:
            return _unreadable_body(request, error.__cause__, await request.body())
        if error.status_code == 405:
            # The read endpoints are a GET route and a HEAD route of one path,
            # and Starlette's Allow header names the methods of one of them.
            methods = sorted(
                {
                    method
                    for route in app.routes
                    if isinstance(route, APIRoute)
                    and route.matches(request.scope)[0] != Match.NONE
                    for method in route.methods
                }
            )
            if methods:
                headers = dict(error.headers or {}, Allow=", ".join(methods))
                error = StarletteHTTPException(405, error.detail, headers)
        return await http_exception_handler(request, error)

    @app.exception_handler(Exception)
    async def unexpected_error(request: Request, error: Exception):
        # Starlette re-raises the error after this response is sent, and the
        # ASGI server then logs its traceback, so this line has no traceback.
        logger.error(
            "%s %s from %s failed with 500: %s: %s",
            request.method,
            request.url.path,
            _client(request.scope),
            type(error).__name__,
            error,
        )
        return JSONResponse(
            {"detail": f"internal server error: {type(error).__name__}"},
            status_code=500,
        )

    def score(reviews: list[str], control: Any, scope: Scope) -> Response:
        """Score reviews and render the response, unless the client has gone.

        Scoring stops between forward passes once the client has closed its
        connection, and uvicorn drops the response to a closed connection.
        """
        cancelled = None if control is None else control.disconnected
        try:
            predictions = model.predict(reviews, cancelled=cancelled)
        except ScoringCancelled:
            # At debug level, because a client could fill the log with these
            # lines. /metrics counts such requests with the status "none".
            logger.debug(
                "client %s disconnected, so the scoring of its %d reviews stopped",
                _client(scope),
                len(reviews),
            )
            return Response(status_code=204)
        scored = sum(1 for prediction in predictions if prediction.error is None)
        metrics.reviews_scored.inc(scored)
        metrics.reviews_unscored.inc(len(predictions) - scored)
        return Response(render_predictions(predictions), media_type="application/json")

    # The PyTorch backend runs one forward pass at a time, so a request scored
    # on the event loop could wait there for another request's forward pass.
    inline = model.backend.name == "onnx"

    async def predict(body: Any, request: Request) -> Response:
        """Score each review; an empty review gets ``error`` instead of a score."""
        check_limits(body.reviews, limits)
        control = request.scope.get("extensions", {}).get(REQUEST_CONTROL)
        if (
            inline
            and len(body.reviews) <= INLINE_MAX_REVIEWS
            and sum(map(len, body.reviews)) <= INLINE_MAX_CHARS
        ):
            return score(body.reviews, control, request.scope)
        return await run_in_threadpool(score, body.reviews, control, request.scope)

    # FastAPI reads the body model from the annotation when the route is
    # added. The model is built for this app's limits, so it is set here.
    predict.__annotations__["body"] = request_model
    app.post(
        "/predict",
        response_model=PredictResponse,
        responses={
            400: {
                "model": MediaTypeError,
                "description": "Bytes that are not HTTP/1.1, a body not valid "
                "UTF-8 (or not the UTF-16 or UTF-32 it starts as), or valid JSON "
                "that Python's reader rejects: nested too deep, or an integer of "
                "more than 4,300 digits",
            },
            408: {
                "model": LimitError,
                "description": "Request headers or body not received within "
                "their timeout",
            },
            413: {"model": LimitError, "description": "Request body too large"},
            415: {
                "model": MediaTypeError,
                "description": "Body not sent as Content-Type: application/json, "
                "or sent with a Content-Encoding other than identity",
            },
            422: {
                "model": LimitError | ValidationFailure,
                "description": "Over a limit, invalid JSON, or a body that does "
                "not match the schema",
            },
            431: {"model": LimitError, "description": "Request headers too large"},
            501: {
                "model": MediaTypeError,
                "description": "Body sent with a Transfer-Encoding that names "
                "another coding before chunked",
            },
            503: {
                "model": LimitError | ShutdownError,
                "description": "More connections or requests at once than "
                "--max-connections allows (LimitError), or the server shut down "
                "before the request finished (ShutdownError)",
            },
        },
        summary="Score reviews",
        dependencies=[Depends(check_predict_request)],
    )(predict)

    def read_route(path: str, summary: str, **options: Any) -> Callable[[Any], Any]:
        """Register an endpoint for GET, and for HEAD outside the OpenAPI schema.

        Health checkers and monitors send HEAD, and uvicorn leaves the body
        out of its response. OpenAPI needs a unique operation id per
        operation, so the HEAD twin stays out of the schema. ``options`` go
        to the GET route, for its schema.
        """
        if path not in CAPACITY_EXEMPT_PATHS:
            options["responses"] = {
                503: {
                    "model": LimitError | ShutdownError,
                    "description": "More connections or requests at once than "
                    "--max-connections allows (LimitError), or the server shut "
                    "down before the request finished (ShutdownError)",
                }
            }

        def register(endpoint: Any) -> Any:
            app.get(path, summary=summary, **options)(endpoint)
            app.head(path, include_in_schema=False)(endpoint)
            return endpoint

        return register

    @read_route("/health", summary="Liveness")
    async def health() -> dict[str, Any]:
        """Report that the server runs and its model is loaded."""
        return {"status": "ok", "model_loaded": True, "backend": model.backend.name}

    @read_route("/info", summary="Model details")
    async def model_info() -> dict[str, Any]:
        """Describe the model, its training and the limits of this server."""
        return dict(
            info,
            limits={
                "max_review_chars": limits.max_review_chars,
                "max_reviews": limits.max_reviews,
                "max_body_bytes": limits.max_body_bytes,
                "body_timeout": limits.body_timeout,
                "max_connections": limits.max_connections,
                "max_header_bytes": limits.max_header_bytes,
                "header_timeout": limits.header_timeout,
            },
        )

    @read_route(
        "/metrics",
        summary="Prometheus metrics",
        response_class=PlainTextResponse,
        response_description="Metrics in the Prometheus text format",
    )
    async def prometheus_metrics() -> Response:
        """Return request, review and latency metrics in Prometheus text format."""
        return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)

    return app


def _detail_response(request: Request, status: int, detail: str) -> Response:
    """Log a rejected request and return its ``{"detail": ...}`` JSON error."""
    REJECTION_LOG.warning(
        logger,
        "%s %s from %s rejected with %d: %s",
        request.method,
        request.url.path,
        _client(request.scope),
        status,
        detail,
    )
    return JSONResponse({"detail": detail}, status_code=status)


def _unsupported_media_type(request: Request, content_type: str | None) -> Response:
    received = "no Content-Type" if not content_type else repr(content_type[:100])
    detail = (
        f"the request body must be JSON sent with Content-Type: application/json, "
        f"got {received}; add that header, with curl for example "
        "-H 'Content-Type: application/json'"
    )
    return _detail_response(request, 415, detail)


EMPTY_BODY_MESSAGE = (
    'the request body is empty; send a JSON object such as {"reviews": ' '["a review"]}'
)


def _is_blank(body: bytes) -> bool:
    """Return whether a body contains nothing but whitespace and byte order marks."""
    try:
        text = body.decode(json.detect_encoding(body))
    except UnicodeDecodeError:
        return False
    return not text.strip(" \t\n\r\ufeff")


def _error_item(error: dict[str, Any]) -> dict[str, Any]:
    """Return one validation error as the response states it.

    The value that failed is left out: a review can be long, and the client
    has it already. Non-finite numbers in the context become strings, since
    JSON has no literal for them.
    """
    item = {key: error[key] for key in ("loc", "msg", "type") if key in error}
    if error.get("type") == "missing" and tuple(error.get("loc", ())) == ("body",):
        # FastAPI's message for a JSON request without a body.
        item["msg"] = EMPTY_BODY_MESSAGE
    if error.get("ctx"):
        item["ctx"] = _json_safe(jsonable_encoder(error["ctx"]))
    return item


def _unsupported_encoding(request: Request, encoding: str) -> Response:
    detail = (
        f"Content-Encoding {encoding[:50]!r} is not supported; send the "
        "request body uncompressed"
    )
    return _detail_response(request, 415, detail)


def _unsupported_transfer_coding(request: Request, codings: str) -> Response:
    # 501, which RFC 9112 (section 6.1) recommends for a transfer coding
    # that the server does not understand.
    detail = (
        f"Transfer-Encoding {codings[:50]!r} is not supported; send the "
        "request body as is or with Transfer-Encoding: chunked alone"
    )
    return _detail_response(request, 501, detail)


def _unreadable_body(request: Request, error: BaseException, body: bytes) -> Response:
    coding_error = unsupported_coding(request)
    if isinstance(coding_error, UnsupportedContentEncoding):
        return _unsupported_encoding(request, coding_error.encoding)
    if isinstance(coding_error, UnsupportedTransferCoding):
        return _unsupported_transfer_coding(request, coding_error.codings)
    if isinstance(error, UnicodeDecodeError):
        # The JSON parser reads a body that starts like UTF-16 or UTF-32 as
        # such, so the error names the encoding it tried.
        name = error.encoding.upper().replace("-SIG", "")
        if name == "UTF-8":
            found = f"byte 0x{error.object[error.start]:02x}"
        else:
            found = f"bytes {error.object[error.start:error.end].hex()}"
        # The parser decodes the body without its byte order mark, if any.
        offset = error.start + len(body) - len(error.object)
        detail = (
            f"the request body is not valid {name}: {found} at offset "
            f"{offset}; send the JSON encoded as UTF-8"
        )
    else:
        # Python's json module raises these for nesting deeper than its
        # recursion limit and for integers of more than 4,300 digits.
        # The text after a semicolon advises sys.set_int_max_str_digits(),
        # which only the server could call.
        reason = str(error).split(";")[0][:200]
        detail = (
            f"the request body could not be parsed as JSON: "
            f"{type(error).__name__}: {reason}; send a JSON object "
            'such as {"reviews": ["a review"]}'
        )
    return _detail_response(request, 400, detail)


def _validation_summary(items: list[dict[str, Any]]) -> str:
    """Describe validation errors for the log: their count and the first one."""
    if not items:
        return "no validation errors listed"
    first = items[0]
    location = ".".join(str(part) for part in first.get("loc", ()))
    described = f"{location}: {first.get('msg')}"
    if len(items) == 1:
        return f"1 validation error: {described}"
    return f"{len(items)} validation errors, first: {described}"
