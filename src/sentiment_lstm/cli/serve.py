"""``sentiment-lstm serve``: score reviews over HTTP with a saved model."""

from __future__ import annotations

import argparse
import contextlib
import errno
import logging
import signal
import socket
import threading
from collections.abc import Iterator
from typing import Any

from sentiment_lstm.cli.common import (
    CommandError,
    ascii_int,
    non_negative_int,
    path_argument,
    positive_int,
    thread_count,
)
from sentiment_lstm.extras import install_hint
from sentiment_lstm.text import MAX_REVIEW_CHARS

logger = logging.getLogger(__name__)

BACKEND_CHOICES = ("auto", "torch", "onnx")
# Repeated here rather than imported from sentiment_lstm.server, so that the
# parser can be built without FastAPI installed.
DEFAULT_MAX_REVIEW_CHARS = 10_000
DEFAULT_MAX_REVIEWS = 256
DEFAULT_MAX_BODY_BYTES = 1024 * 1024
DEFAULT_BODY_TIMEOUT = 60
DEFAULT_MAX_HEADER_BYTES = 16 * 1024
DEFAULT_HEADER_TIMEOUT = 10
# Seconds that requests in progress get to finish after SIGTERM or Ctrl-C,
# within the 10 s that docker stop waits before it kills the process.
DEFAULT_SHUTDOWN_TIMEOUT = 5
# Rejected requests logged per minute by default.
DEFAULT_LOG_REJECTIONS = 60


def _integer(text: str) -> int:
    """Parse an integer for argparse, naming the text that is not one."""
    try:
        return ascii_int(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from err


def port_number(text: str) -> int:
    """Parse a TCP port number in [1, 65535] for argparse."""
    value = _integer(text)
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(
            f"expected a port number from 1 to 65535, got {value}"
        )
    return value


# The smallest body and header limits that serve accepts. A request line
# with curl's headers takes about 100 bytes, and browsers send several
# hundred, so a lower limit would reject most requests.
MIN_BYTE_LIMIT = 1024


def body_limit(text: str) -> int:
    """Parse a limit on body bytes, at least ``MIN_BYTE_LIMIT``, for argparse."""
    return _byte_limit(text, "so that a request with a review of a few sentences fits")


def header_limit(text: str) -> int:
    """Parse a limit on header bytes, at least ``MIN_BYTE_LIMIT``, for argparse."""
    return _byte_limit(
        text, "because a smaller limit would reject ordinary requests, /health included"
    )


def _byte_limit(text: str, reason: str) -> int:
    value = _integer(text)
    if value < MIN_BYTE_LIMIT:
        raise argparse.ArgumentTypeError(
            f"expected at least {MIN_BYTE_LIMIT} bytes, got {value}, {reason}"
        )
    return value


def host_address(text: str) -> str:
    """Parse the address to listen on for argparse, rejecting unusable ones.

    An empty address, a URL and a host:port pair are rejected.

    uvicorn passes an empty host to asyncio, which then listens on every
    interface, so an unset shell variable would expose the service.
    """
    # URLs write an IPv6 address in brackets, which the socket does not take.
    # They come off before the checks, so that "[]" counts as empty.
    address = text
    if text.startswith("[") and text.endswith("]"):
        address = text[1:-1]
    if not address.strip():
        raise argparse.ArgumentTypeError(
            f"expected a host name or IP address, got {text!r}; check the "
            "variable or quoting that gave it, or leave --host out for 127.0.0.1"
        )
    # One colon is a host:port pair, because an IPv6 address has at least two,
    # and so is an IPv6 address in brackets followed by a port.
    if "/" in address or address.count(":") == 1 or "]:" in text:
        raise argparse.ArgumentTypeError(
            f"expected a host name or IP address, got {text!r}, which looks like "
            "a URL or host:port; pass the address alone, such as 127.0.0.1, and "
            "the port with --port"
        )
    if "[" in address or "]" in address:
        raise argparse.ArgumentTypeError(
            f"expected a host name or IP address, got {text!r}; write an IPv6 "
            "address with one pair of brackets or none, such as ::1"
        )
    return address


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``serve`` subcommand."""
    parser = subparsers.add_parser(
        "serve",
        help="serve a trained model over HTTP",
        description="Run an HTTP service with POST /predict, GET /health, "
        "GET /info, GET /metrics (Prometheus) and the OpenAPI page at /docs. "
        "The model is loaded before the server starts, so a missing or broken "
        "model stops the command with exit status 1.",
    )

    parser.add_argument(
        "--model", required=True, type=path_argument, help="model directory from train"
    )
    parser.add_argument(
        "--host",
        type=host_address,
        default="127.0.0.1",
        help="address to listen on; 0.0.0.0 listens on every interface "
        "(default: 127.0.0.1, this machine only)",
    )
    parser.add_argument(
        "--port", type=port_number, default=8000, help="TCP port (default: 8000)"
    )
    parser.add_argument(
        "--backend",
        choices=BACKEND_CHOICES,
        default="auto",
        help="scoring backend; auto uses ONNX Runtime when the model directory "
        "has model.onnx and PyTorch otherwise (default: auto)",
    )
    parser.add_argument(
        "--threads",
        type=thread_count,
        default=1,
        help="ONNX Runtime forward passes of more than 1,024 padded tokens "
        "that run at once, each on one thread, whatever the number of "
        "requests; 1 leaves the other cores to the web server and other "
        "processes (default: 1; the torch backend keeps PyTorch's own setting)",
    )
    parser.add_argument(
        "--log-rejections",
        type=non_negative_int,
        default=DEFAULT_LOG_REJECTIONS,
        metavar="N",
        help="rejected requests logged per minute; the rest are counted in "
        f"/metrics only, so that a flood of bad requests cannot fill the log "
        f"(default: {DEFAULT_LOG_REJECTIONS}; 0 logs them all)",
    )
    parser.add_argument(
        "--access-log",
        action="store_true",
        help="log one line per request (default: off, for throughput)",
    )
    parser.add_argument(
        "--shutdown-timeout",
        type=positive_int,
        default=DEFAULT_SHUTDOWN_TIMEOUT,
        metavar="SECONDS",
        help="seconds that requests in progress get to finish after SIGTERM, "
        "Ctrl-C or SIGHUP; the rest are cancelled (default: "
        f"{DEFAULT_SHUTDOWN_TIMEOUT}, within docker stop's 10)",
    )
    _add_limit_options(parser.add_argument_group("request limits"))
    parser.set_defaults(handler=run, command_parser=parser)


def review_char_limit(text: str) -> int:
    """Parse ``--max-review-chars``: at most the longest review a model scores."""
    value = positive_int(text)
    if value > MAX_REVIEW_CHARS:
        raise argparse.ArgumentTypeError(
            f"expected at most {MAX_REVIEW_CHARS:,}, the longest review that a "
            f"model scores, got {value:,}"
        )
    return value


def _add_limit_options(limits: argparse._ArgumentGroup) -> None:
    """Add the options that bound requests: sizes, timeouts and connections."""
    limits.add_argument(
        "--max-review-chars",
        type=review_char_limit,
        default=DEFAULT_MAX_REVIEW_CHARS,
        metavar="N",
        help="characters allowed in one review, at most "
        f"{MAX_REVIEW_CHARS:,}; longer ones get HTTP 422 "
        f"(default: {DEFAULT_MAX_REVIEW_CHARS})",
    )
    limits.add_argument(
        "--max-reviews",
        type=positive_int,
        default=DEFAULT_MAX_REVIEWS,
        metavar="N",
        help="reviews allowed in one request; more get HTTP 422 "
        f"(default: {DEFAULT_MAX_REVIEWS})",
    )
    limits.add_argument(
        "--max-body-bytes",
        type=body_limit,
        default=DEFAULT_MAX_BODY_BYTES,
        metavar="BYTES",
        help="bytes allowed in a request body, at least 1024; larger ones get "
        f"HTTP 413 (default: {DEFAULT_MAX_BODY_BYTES}, 1 MiB)",
    )
    limits.add_argument(
        "--body-timeout",
        type=positive_int,
        default=DEFAULT_BODY_TIMEOUT,
        metavar="SECONDS",
        help="seconds allowed to receive a request body after its headers; "
        f"a slower body gets HTTP 408 (default: {DEFAULT_BODY_TIMEOUT})",
    )
    limits.add_argument(
        "--max-header-bytes",
        type=header_limit,
        default=DEFAULT_MAX_HEADER_BYTES,
        metavar="BYTES",
        help="bytes allowed in a request line and its headers, at least 1024; "
        f"larger ones get HTTP 431 (default: {DEFAULT_MAX_HEADER_BYTES}, 16 KiB)",
    )
    limits.add_argument(
        "--header-timeout",
        type=positive_int,
        default=DEFAULT_HEADER_TIMEOUT,
        metavar="SECONDS",
        help="seconds allowed to receive a request line and its headers, from "
        "the moment the connection opens or the previous response was sent; "
        f"slower ones get HTTP 408 (default: {DEFAULT_HEADER_TIMEOUT})",
    )
    limits.add_argument(
        "--max-connections",
        type=positive_int,
        default=None,
        metavar="N",
        help="connections open at once; while more are open, or N requests are "
        "in progress, every request but /health and /metrics gets HTTP 503 "
        "(default: no limit)",
    )


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """Load the model, then serve it until interrupted."""
    from sentiment_lstm.artifact import ArtifactError
    from sentiment_lstm.predictor import SentimentModel

    # The model is loaded before the web stack is imported, so a missing or
    # broken model is reported quickly.
    try:
        model = SentimentModel.load(
            args.model, backend=args.backend, threads=args.threads
        )
    except ArtifactError as err:
        raise CommandError(str(err)) from err
    except ImportError as err:
        # The backends' import errors already name the package and the fix.
        raise CommandError(
            f"cannot load {args.model} with the {args.backend} backend: {err}"
        ) from err

    try:
        import uvicorn

        from sentiment_lstm.http_protocol import limited_protocol
        from sentiment_lstm.server import REJECTION_LOG, ServerLimits, create_app
    except ImportError as err:
        raise CommandError(
            f"serving needs FastAPI, uvicorn with httptools and prometheus-client "
            f"({err}); install them with: {install_hint('serve')}"
        ) from err

    limits = ServerLimits(
        max_review_chars=args.max_review_chars,
        max_reviews=args.max_reviews,
        max_body_bytes=args.max_body_bytes,
        body_timeout=args.body_timeout,
        max_connections=args.max_connections,
        max_header_bytes=args.max_header_bytes,
        header_timeout=args.header_timeout,
    )
    REJECTION_LOG.per_minute = args.log_rejections or None
    app = create_app(model, limits)
    metrics = app.state.metrics
    protocol = limited_protocol(
        max_header_bytes=limits.max_header_bytes,
        header_timeout=limits.header_timeout,
        max_connections=limits.max_connections,
        on_rejected=lambda limit: metrics.header_rejections.labels(limit).inc(),
        on_invalid=metrics.invalid_requests.inc,
    )
    host = f"[{args.host}]" if ":" in args.host else args.host
    # Bound before the server starts, so that a port in use stops the command
    # with one error instead of after uvicorn's start-up lines.
    sockets = listening_sockets(args.host, args.port)
    logger.info(
        "starting to serve %s with the %s backend on http://%s:%d (API docs at "
        "/docs); "
        "limits: %d reviews per request, %d characters per review, %d body bytes, "
        "%d s body timeout, %d header bytes, %d s header timeout, %s; "
        "%d s shutdown timeout",
        args.model,
        model.backend.name,
        host,
        args.port,
        limits.max_reviews,
        limits.max_review_chars,
        limits.max_body_bytes,
        limits.body_timeout,
        limits.max_header_bytes,
        limits.header_timeout,
        (
            "no connection limit"
            if limits.max_connections is None
            else f"{limits.max_connections} connections"
        ),
        args.shutdown_timeout,
    )
    config = uvicorn.Config(
        app,
        host=args.host,
        port=args.port,
        # One process: the model is loaded once, and uvicorn picks uvloop
        # when it is installed.
        workers=None,
        # httptools' protocol with limits on headers and connections; the
        # service has no WebSocket endpoints.
        http=protocol,
        ws="none",
        access_log=args.access_log,
        timeout_graceful_shutdown=args.shutdown_timeout,
        # None keeps the logging set up by the command line, so uvicorn's
        # lines share its format and stream.
        log_config=None,
    )
    uvicorn_errors = logging.getLogger("uvicorn.error")
    if not any(
        isinstance(item, _ShutdownCancelLevel) for item in uvicorn_errors.filters
    ):
        uvicorn_errors.addFilter(_ShutdownCancelLevel())
    server = _hangup_server_class(uvicorn.Server)(config)
    try:
        server.run(sockets=sockets)
    except SystemExit as exit_:
        # uvicorn logs why it could not start, then exits with a status.
        if exit_.code in (None, 0):
            raise
        raise CommandError(
            f"the server could not start on {host}:{args.port}; see the error above"
        ) from None
    finally:
        for sock in sockets:
            sock.close()
        # Requests cancelled at the shutdown timeout leave their threads
        # scoring, and the process would end only once those finish.
        model.close()
    REJECTION_LOG.log_left_out(logger)
    logger.info("server on port %d stopped", args.port)
    _send_deferred_signals(server)
    return 0


def listening_sockets(host: str, port: int) -> list[socket.socket]:
    """Bind a TCP socket to ``port`` on every address ``host`` resolves to.

    The addresses are those that asyncio's ``create_server`` would listen on,
    such as both 127.0.0.1 and ::1 for localhost.

    Raises:
        CommandError: If the host does not resolve or an address cannot be
            bound; the message names the address and the fix.
    """
    try:
        addresses = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except (socket.gaierror, UnicodeError) as err:
        reason = getattr(err, "strerror", None) or err
        raise CommandError(
            f"cannot find the address of --host {host!r} ({reason}); pass an IP "
            "address of this machine, such as 127.0.0.1"
        ) from err
    sockets: list[socket.socket] = []
    try:
        for family, kind, protocol, _, address in dict.fromkeys(addresses):
            sock = socket.socket(family, kind, protocol)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                # As asyncio does: an IPv6 socket takes IPv6 connections
                # only, beside the IPv4 socket of the same host, if any.
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                sock.bind(address)
            except OSError as err:
                raise CommandError(_bind_error(address, port, err)) from err
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    return sockets


def _bind_error(address: tuple, port: int, err: OSError) -> str:
    """Return why ``address`` could not be bound, with the fix."""
    ip = address[0]
    place = f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"
    if err.errno == errno.EADDRINUSE:
        return (
            f"cannot listen on {place}: the address is already in use; choose "
            "another port with --port, or stop the program that listens on it"
        )
    if err.errno == errno.EADDRNOTAVAIL:
        return (
            f"cannot listen on {place}: {ip} is not an address of this machine; "
            "choose another --host, such as 127.0.0.1"
        )
    if err.errno == errno.EACCES and port < 1024:
        return (
            f"cannot listen on {place}: permission denied, because ports below "
            "1024 need administrator rights; choose a --port of 1024 or above"
        )
    return f"cannot listen on {place}: {err.strerror or err}"


class _ShutdownCancelLevel(logging.Filter):
    """Log uvicorn's line on the requests cancelled at shutdown as a warning.

    uvicorn logs it as an error, but cancelling requests after
    ``--shutdown-timeout`` is how the server is meant to stop, and each of
    them gets its own warning with its 503. An alert on error lines would
    otherwise fire at every deployment under load.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno == logging.ERROR and str(record.msg).startswith(
            "Cancel %s running task(s)"
        ):
            record.levelno = logging.WARNING
            record.levelname = logging.getLevelName(logging.WARNING)
        return True


def _hangup_server_class(server_class: type) -> type:
    """Return a subclass of uvicorn's Server that also shuts down on SIGHUP.

    uvicorn shuts down gracefully on SIGINT and SIGTERM only, and SIGHUP
    arrives when the terminal that started the server closes. A SIGHUP that
    the parent set to be ignored, as nohup does, stays ignored.

    uvicorn sends itself the signals it caught once it has shut down, while
    its event loop still runs, where the KeyboardInterrupt that this raises
    cancels the tasks left and logs their tracebacks. The subclass keeps
    those signals in ``deferred_signals`` instead, for the caller to send
    with :func:`_send_deferred_signals` once the loop has ended.
    """

    class HangupServer(server_class):
        deferred_signals: tuple[int, ...] = ()

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            with super().capture_signals():
                try:
                    with self._capture_hangup():
                        yield
                finally:
                    captured = getattr(self, "_captured_signals", None)
                    if isinstance(captured, list):
                        self.deferred_signals = tuple(captured)
                        captured.clear()

        async def shutdown(self, sockets: Any = None) -> None:
            await super().shutdown(sockets=sockets)
            if self.force_exit:
                # The application's shutdown does no work, but without it the
                # end of the event loop cancels the application's lifespan
                # task, and its traceback is logged.
                await self.lifespan.shutdown()

        @contextlib.contextmanager
        def _capture_hangup(self) -> Iterator[None]:
            hangup = getattr(signal, "SIGHUP", None)
            if (
                hangup is None
                or threading.current_thread() is not threading.main_thread()
                or signal.getsignal(hangup) in (signal.SIG_IGN, None)
            ):
                yield
                return
            previous = signal.signal(hangup, self.handle_exit)
            try:
                yield
            finally:
                signal.signal(hangup, previous)

    return HangupServer


def _send_deferred_signals(server: Any) -> None:
    """Send the process the signals that stopped ``server``, latest first."""
    for captured in reversed(server.deferred_signals):
        signal.raise_signal(captured)
