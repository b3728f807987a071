"""uvicorn's HTTP protocol with bounds on request headers and open connections.

uvicorn's httptools protocol reads a request's headers for as long as the
client sends them, however large they grow and however slowly they come. On
uvicorn 0.55 one header of 400 MB took the server from 133 to 846 MB of
memory, and a client that sends a byte every few seconds keeps its
connection open for ever. The application cannot help, because it receives
a request only once the headers are complete, so the protocol class made by
:func:`limited_protocol` responds to these cases itself, with the JSON error
body of the application's other limits:

* headers larger than ``max_header_bytes`` get 431, and the connection
  closes. Trailer fields after a chunked body have the same limit. The
  application already has the request then, so it reads a disconnect, and
  the 431 goes out unless it has started its own response;
* headers still incomplete ``header_timeout`` seconds after the connection
  opened, or after the previous response on it, get 408; a connection that
  sent nothing in that time is closed without a response. Between requests,
  uvicorn's own keep-alive timeout closes a quiet connection first;
* a request that arrives while more than ``max_connections`` connections are
  open, or ``max_connections`` requests are in progress, is marked in its
  ASGI scope, and :class:`sentiment_lstm.server.CapacityMiddleware` responds
  with 503. uvicorn's own ``limit_concurrency`` responds in plain text, and
  before the application's metrics can count it.

Bytes that do not parse as HTTP/1.1 (an HTTP/2 preface, a TLS handshake, two
Content-Length headers) get a JSON 400 instead of uvicorn's plain-text one.

The protocol also keeps a connection open for a moment when the application
responds before the request body has arrived in full, as with a 413 for a
body over ``--max-body-bytes``, and closes it after the response. A client
that sends its whole body before it reads the response would otherwise get a
connection reset instead of the response, because a socket closed with
unread input resets the connection.

Memory stays bounded while headers arrive: bytes are counted as they are
received, so an incomplete head is cut off after at most ``max_header_bytes``
plus one read from the socket. A head that arrives complete in one read is
measured from its parsed request line and header lines, which leaves out any
spaces and tabs around header values.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from http import HTTPStatus
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from sentiment_lstm.server import (
    OVER_CAPACITY,
    PROTOCOL_ERROR,
    REJECTION_LOG,
    REQUEST_CONTROL,
)

logger = logging.getLogger(__name__)

# Bytes of a header line beyond its name and value: ": " and "\r\n".
_HEADER_LINE_OVERHEAD = 4
# Bytes of a head beyond the method, target and version: the two spaces and
# "HTTP/" of the request line, its "\r\n" and the empty line that ends the head.
_HEAD_OVERHEAD = len(b"  HTTP/\r\n\r\n")
INVALID_REQUEST_DETAIL = (
    "invalid HTTP request: the bytes received do not parse as an HTTP/1.1 "
    "request; send HTTP/1.1 without TLS, with one Content-Length or "
    "Transfer-Encoding: chunked"
)
# Seconds that a connection closing with input still arriving stays open
# after the response, its input read and dropped, and waits for more of it.
# A client still sending its headers or body would otherwise get a
# connection reset instead of the response.
LINGER_SECONDS = 2.0
# Seconds after the response that such a connection closes at the latest,
# while its input keeps arriving.
MAX_LINGER_SECONDS = 10.0
# Connections that may linger at once. Lingering connections do not count
# against max_connections, so past this many the next one closes at once,
# and its client may get a connection reset instead of the response.
MAX_LINGERING_CONNECTIONS = 100


def _fields_size(fields: list[tuple[bytes, bytes]]) -> int:
    """Return the bytes of header lines, from their names and values."""
    return sum(len(name) + len(value) + _HEADER_LINE_OVERHEAD for name, value in fields)


class _UvicornInvalidRequestFilter(logging.Filter):
    """Drops uvicorn's warning about a request that does not parse as HTTP.

    The protocol logs such a request itself, with the client's address, so
    uvicorn's line without it would log each one twice.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != "Invalid HTTP request received."


_UVICORN_INVALID_REQUEST = _UvicornInvalidRequestFilter()


def limited_protocol(
    *,
    max_header_bytes: int,
    header_timeout: float,
    max_connections: int | None = None,
    on_rejected: Callable[[str], None] | None = None,
    on_invalid: Callable[[], None] | None = None,
) -> type[asyncio.Protocol]:
    """Return a uvicorn protocol class that enforces the given limits.

    Pass the class to ``uvicorn.Config(http=...)``.

    Args:
        max_header_bytes: Bytes allowed in a request's line and headers.
        header_timeout: Seconds allowed for a request's line and headers to
            arrive.
        max_connections: Connections open at once, or None for no limit.
        on_rejected: Called with the name of the limit (``max_header_bytes``
            or ``header_timeout``) each time the protocol rejects a request
            itself.
        on_invalid: Called each time bytes that do not parse as an HTTP/1.1
            request get a 400.
    """

    def rejected(limit: str) -> None:
        if on_rejected is not None:
            on_rejected(limit)

    uvicorn_log = logging.getLogger("uvicorn.error")
    if _UVICORN_INVALID_REQUEST not in uvicorn_log.filters:
        uvicorn_log.addFilter(_UVICORN_INVALID_REQUEST)
    lingering: set[asyncio.Protocol] = set()

    class LimitedHttpToolsProtocol(HttpToolsProtocol):
        """uvicorn's httptools protocol with the limits of ``limited_protocol``."""

        def connection_made(self, transport: asyncio.Transport) -> None:
            super().connection_made(transport)
            self._head_timer: asyncio.TimerHandle | None = None
            self._rejected = False
            # Whether data_received is feeding the parser, so that a head that
            # starts in the same read as the previous request's end is known.
            self._reading = False
            # An error response that waits for the responses to the requests
            # before it, as (status, content).
            self._deferred_error: tuple[int, dict[str, Any]] | None = None
            self._linger_deadline: float | None = None
            self._request_complete = True
            # The cycles of the requests without a response yet: the running one
            # and those pipelined behind it.
            self._open_cycles: list[Any] = []
            self._await_head()
            self._arm_head_timer()

        def shutdown(self) -> None:
            # uvicorn ends keep-alive on the newest request's cycle only, so
            # the running one of a pipelined connection would start the next
            # after its response, after the shutdown's single cancel sweep,
            # and the event loop's end would destroy that task. The
            # connection now closes after the running request's response.
            for cycle in self._open_cycles:
                if not cycle.response_complete:
                    cycle.keep_alive = False
            super().shutdown()

        def connection_lost(self, exc: Exception | None) -> None:
            self._cancel_head_timer()
            lingering.discard(self)
            # uvicorn marks only the newest request's cycle as disconnected.
            # A pipelined request before it would still write its response
            # to the closed transport, which uvloop raises for.
            for cycle in self._open_cycles:
                if not cycle.response_complete:
                    cycle.disconnected = True
                    cycle.message_event.set()
            self._open_cycles.clear()
            super().connection_lost(exc)

        def data_received(self, data: bytes) -> None:
            if self._rejected:
                self._extend_linger()
                return
            if self._awaiting_head:
                self._head_bytes += len(data)
            trailer_before = self._chunk_header_last
            self._reading = True
            try:
                super().data_received(data)
            finally:
                self._reading = False
            if trailer_before and self._chunk_header_last and not self._rejected:
                # Nothing of a chunk's data arrived in this read, so it held
                # only the trailer fields after the last chunk, which the parser
                # buffers like headers.
                self._trailer_bytes += len(data)
                if self._trailer_bytes > max_header_bytes:
                    self._reject_trailers(self._trailer_bytes, "arrived")
                    return
            # Bytes that are not HTTP have already got a 400, so no 431
            # follows.
            if (
                self._awaiting_head
                and not self._rejected
                and not self.transport.is_closing()
                and self._head_bytes > max_header_bytes
            ):
                self._reject(
                    431,
                    f"request headers too large: {self._counted_head()} arrived "
                    f"without the end of the headers, above the limit of "
                    f"{max_header_bytes} bytes (--max-header-bytes) for the "
                    "request line and headers together; send a shorter URL or "
                    "fewer or shorter headers",
                    limit="max_header_bytes",
                    maximum=max_header_bytes,
                    value=self._head_bytes,
                )

        def on_headers_complete(self) -> None:
            if self._rejected:
                # A request pipelined behind a rejected one in the same read
                # must not reach the application.
                return
            self._awaiting_head = False
            self._cancel_head_timer()
            request_line = (
                len(self.parser.get_method())
                + len(self.url)
                + len(self.parser.get_http_version())
            )
            size = request_line + _HEAD_OVERHEAD + _fields_size(self.headers)
            self._head_fields = len(self.headers)
            if size > max_header_bytes:
                self._reject(
                    431,
                    f"request headers too large: {size} bytes, above the limit of "
                    f"{max_header_bytes} bytes (--max-header-bytes) for the "
                    "request line and headers together, of which the request "
                    f"line takes {request_line + len(b'  HTTP/')}; send a shorter "
                    "URL or fewer or shorter headers",
                    limit="max_header_bytes",
                    maximum=max_header_bytes,
                    value=size,
                )
                return
            hosts = sum(1 for name, _ in self.headers if name == b"host")
            if self.parser.get_http_version() == "1.1" and hosts != 1:
                # RFC 9112, section 3.2: an HTTP/1.1 request has exactly one.
                self._reject_invalid(
                    "an HTTP/1.1 request needs exactly one Host header, and this "
                    f"one has {hosts}; send one, such as Host: 127.0.0.1"
                )
                return
            if max_connections is not None:
                # This connection is among the open ones, and this request's
                # task does not exist yet.
                load = max(len(self.connections), len(self.tasks) + 1)
                if load > max_connections:
                    extensions = self.scope.setdefault("extensions", {})
                    extensions[OVER_CAPACITY] = {
                        "maximum": max_connections,
                        "value": load,
                    }
            super().on_headers_complete()
            extensions = self.scope.setdefault("extensions", {})
            extensions[REQUEST_CONTROL] = RequestControl(self, self.cycle)
            self._open_cycles = [
                cycle for cycle in self._open_cycles if not cycle.response_complete
            ]
            self._open_cycles.append(self.cycle)
            # The request's cycle closes the connection after a response
            # with "Connection: close"; through this wrapper it lingers while
            # the body still arrives.
            self.cycle.transport = _LingeringClose(self.transport, self)

        def on_chunk_header(self) -> None:
            self._chunk_header_last = True

        def on_body(self, body: bytes) -> None:
            self._chunk_header_last = False
            if not self._rejected:
                super().on_body(body)

        def on_message_complete(self) -> None:
            if self._rejected:
                return
            # uvicorn adds the trailer fields of a chunked body to the header
            # list. Trailers that end in the read that brought them are
            # parsed whole before data_received can count them, so their
            # parsed size is checked here.
            trailer = _fields_size(self.headers[self._head_fields :])
            if trailer > max_header_bytes:
                self._reject_trailers(trailer, "parsed")
                return
            self._request_complete = True
            super().on_message_complete()
            # Bytes from here on belong to the next request's head. Its clock
            # starts once the response to this one is sent.
            self._await_head()

        def on_response_complete(self) -> None:
            starts_next = bool(self.pipeline)
            super().on_response_complete()
            # uvicorn may have just started a pipelined request, and the
            # clock for the next head, or a deferred error, waits for its
            # response.
            request_in_progress = starts_next or (
                self.cycle is not None and not self.cycle.response_complete
            )
            if self._deferred_error is not None and not request_in_progress:
                if self.timeout_keep_alive_task is not None:
                    self.timeout_keep_alive_task.cancel()
                    self.timeout_keep_alive_task = None
                status, content = self._deferred_error
                self._deferred_error = None
                if not self.transport.is_closing():
                    body = json.dumps(content).encode("utf-8")
                    self.transport.write(self._response_bytes(status, body))
                    self._linger()
                return
            if self._linger_deadline is not None:
                # uvicorn has armed its keep-alive timeout, which would cut
                # the linger short.
                self._unset_keepalive_if_required()
                return
            if (
                self._awaiting_head
                and not request_in_progress
                and not self.transport.is_closing()
            ):
                self._arm_head_timer()
                if self._head_started:
                    # The next request began in a read before this response,
                    # so no new read cancels uvicorn's keep-alive timeout,
                    # which would close the connection without the 408.
                    self._unset_keepalive_if_required()

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._head_started = True
            self._request_complete = False

        def close_after_response(self) -> None:
            """Close the connection, lingering if the request body is incomplete."""
            response_sent = self.cycle is not None and self.cycle.response_complete
            if (
                self._request_complete
                or not response_sent
                or self.transport.is_closing()
            ):
                self.transport.close()
                return
            self._rejected = True
            self._awaiting_head = False
            self._cancel_head_timer()
            self._linger()

        def _counted_head(self) -> str:
            """Return the bytes of the head counted so far, such as "at least 5 bytes"."""
            # The bytes after the end of the previous request, in the read
            # that brought that end, are parsed but not counted.
            prefix = "at least " if self._head_undercounted else ""
            unit = "byte" if self._head_bytes == 1 else "bytes"
            return f"{prefix}{self._head_bytes} {unit}"

        def _await_head(self) -> None:
            self._awaiting_head = True
            self._head_undercounted = self._reading
            self._head_bytes = 0
            # True from a chunk's header until its first data byte, so for
            # ever after the last chunk, whose size is 0.
            self._chunk_header_last = False
            self._trailer_bytes = 0
            self._head_fields = 0
            self._head_started = False

        def _arm_head_timer(self) -> None:
            self._cancel_head_timer()
            self._head_timer = self.loop.call_later(
                header_timeout, self._head_timed_out
            )

        def _cancel_head_timer(self) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None

        def _head_timed_out(self) -> None:
            self._head_timer = None
            if not self._awaiting_head or self._rejected or self.transport.is_closing():
                return
            if self._head_bytes == 0 and not self._head_started:
                # Nothing of a request arrived: close without a response, as
                # uvicorn does with a quiet connection between requests.
                self.transport.close()
                return
            # Bytes that came in the same read as the end of the previous
            # request are parsed but not counted.
            if self._head_bytes:
                received = self._counted_head()
            else:
                received = "the start of a request"
            self._reject(
                408,
                f"request headers timed out: {received} arrived in "
                f"{header_timeout:g} seconds (--header-timeout), without the end "
                "of the headers; send the whole request without pauses",
                limit="header_timeout",
                maximum=header_timeout,
                value=header_timeout,
            )

        def _reject_trailers(self, size: int, measured_as: str) -> None:
            self._reject(
                431,
                f"request trailers too large: {size} bytes {measured_as} after "
                f"the last chunk, above the limit of {max_header_bytes} bytes "
                "(--max-header-bytes); send fewer or shorter trailer fields",
                limit="max_header_bytes",
                maximum=max_header_bytes,
                value=size,
            )

        def send_400_response(self, msg: str) -> None:
            # uvicorn calls this, after logging a warning without the client,
            # when the bytes received do not parse as HTTP/1.1, such as a
            # chunked body with an invalid chunk size. Its own 400 is plain
            # text.
            self._reject_invalid(INVALID_REQUEST_DETAIL)

        def _reject_invalid(self, detail: str) -> None:
            """Count and log a request that breaks HTTP/1.1, and respond with 400."""
            if on_invalid is not None:
                on_invalid()
            REJECTION_LOG.warning(
                logger,
                "request from %s rejected with 400: %s",
                self._client_name(),
                detail,
            )
            self._send_error(400, {"detail": detail})

        def _reject(self, status: int, detail: str, **fields: Any) -> None:
            """Count and log a broken limit, then send its error and close."""
            rejected(fields["limit"])
            REJECTION_LOG.warning(
                logger,
                "request from %s rejected with %d: %s",
                self._client_name(),
                status,
                detail,
            )
            self._send_error(status, {"detail": detail, **fields})

        def _client_name(self) -> str:
            return f"{self.client[0]}:{self.client[1]}" if self.client else "unknown"

        def _send_error(self, status: int, content: dict[str, Any]) -> None:
            """Send a JSON error response, stop parsing and close the connection."""
            self._rejected = True
            self._awaiting_head = False
            self._cancel_head_timer()
            cycle = self.cycle
            queued = [entry for entry in self.pipeline if entry[0] is cycle]
            if cycle is not None and queued and cycle.more_body:
                # A pipelined request whose body failed before it could start:
                # it never runs, and the error follows the responses to the
                # requests before it.
                self.pipeline.remove(queued[0])
                cycle.response_complete = True
                self._deferred_error = (status, content)
                return
            if cycle is not None and not cycle.response_complete:
                if not cycle.more_body:
                    # The request in progress arrived whole, so the error is
                    # about the bytes after it, and goes out after the
                    # responses to it and to any request pipelined with it.
                    self._deferred_error = (status, content)
                    return
                if cycle.response_started or self.pipeline:
                    # The application is writing a response, or will once an
                    # earlier pipelined request is done, and another one
                    # cannot go out in between.
                    self.transport.close()
                    return
                # The application has the request but has not responded, as
                # when the body fails to parse. It now reads a disconnect,
                # and uvicorn drops anything it sends.
                cycle.scope.setdefault("extensions", {})[PROTOCOL_ERROR] = status
                cycle.disconnected = True
                cycle.message_event.set()
            body = json.dumps(content).encode("utf-8")
            self.transport.write(self._response_bytes(status, body))
            self._linger()

        def _linger(self) -> None:
            """End the response, then read and drop input until the client is done.

            The connection closes when the client closes its side, when no
            input has come for ``LINGER_SECONDS``, or ``MAX_LINGER_SECONDS``
            after the response, whichever is first. A connection that only
            waits to close does not count against max_connections, and when
            ``MAX_LINGERING_CONNECTIONS`` already wait, it closes at once.
            """
            if (
                not self.transport.can_write_eof()
                or len(lingering) >= MAX_LINGERING_CONNECTIONS
            ):
                self.transport.close()
                return
            self.transport.write_eof()
            self.connections.discard(self)
            lingering.add(self)
            self._linger_deadline = self.loop.time() + MAX_LINGER_SECONDS
            self._head_timer = self.loop.call_later(
                LINGER_SECONDS, self.transport.close
            )

        def _extend_linger(self) -> None:
            if self._linger_deadline is None or self.transport.is_closing():
                return
            self._cancel_head_timer()
            close_at = min(self.loop.time() + LINGER_SECONDS, self._linger_deadline)
            self._head_timer = self.loop.call_at(close_at, self.transport.close)

        def _response_bytes(self, status: int, body: bytes) -> bytes:
            """Return a whole HTTP response that closes the connection.

            The response to a HEAD request states the body's length but
            leaves the body out.
            """
            # The parser has read the method once it reports the target.
            if getattr(self, "url", b"") and self.parser.get_method() == b"HEAD":
                content = b""
            else:
                content = body
            phrase = HTTPStatus(status).phrase
            lines = [f"HTTP/1.1 {status} {phrase}\r\n".encode("ascii")]
            for name, value in self.server_state.default_headers:
                lines.append(name + b": " + value + b"\r\n")
            lines += [
                b"content-type: application/json\r\n",
                b"content-length: %d\r\n" % len(body),
                b"connection: close\r\n",
                b"\r\n",
                content,
            ]
            return b"".join(lines)

    return LimitedHttpToolsProtocol


class RequestControl:
    """Handle on one request's connection, for closing it at shutdown.

    uvicorn's ASGI interface has no way to give up on a response that a
    client does not read. The protocol puts one of these in each request's
    scope (see ``REQUEST_CONTROL``).
    """

    def __init__(self, protocol: Any, cycle: Any) -> None:
        self._protocol = protocol
        self._cycle = cycle

    def disconnected(self) -> bool:
        """Return whether the client has closed the connection."""
        return bool(self._cycle.disconnected)

    def client_stalled(self) -> bool:
        """Return whether writing is paused because the client reads nothing."""
        return bool(self._protocol.flow.write_paused)

    def abort(self) -> None:
        """Close the connection and end the request without a response.

        The request counts as disconnected, so uvicorn sends and logs
        nothing more for it.
        """
        self._cycle.disconnected = True
        self._cycle.message_event.set()
        self._protocol.transport.close()


class _LingeringClose:
    """A wrapper of a connection's transport, given to one request's cycle.

    Every attribute is the transport's, except that ``close`` calls the
    protocol's ``close_after_response``.
    """

    def __init__(self, transport: asyncio.Transport, protocol: Any) -> None:
        self._transport = transport
        self._protocol = protocol

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)

    def close(self) -> None:
        self._protocol.close_after_response()
