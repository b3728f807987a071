"""Decoding of data files: UTF-8 with or without BOM, else cp1252."""

import codecs
import logging
import re
from dataclasses import dataclass
from pathlib import Path

from sentiment_lstm.data.records import DataError

logger = logging.getLogger(__name__)

# With errors="surrogateescape", a byte that the codec cannot decode becomes the
# lone surrogate U+DC00 + byte, so the reader can name the line that contains it.
_ESCAPED_BYTE = re.compile("[\udc80-\udcff]")

_UTF16_BOMS = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)


@dataclass(frozen=True)
class DecodedText:
    """Text of a whole file and the encoding it was decoded with.

    Attributes:
        text: Decoded text. Bytes invalid in ``encoding`` are lone surrogates
            U+DC80 to U+DCFF (see ``invalid_byte_reason``).
        encoding: "utf-8-sig", "utf-8" or "cp1252".
    """

    text: str
    encoding: str

    @property
    def may_contain_invalid_bytes(self) -> bool:
        """Whether the decoder escaped invalid bytes instead of failing."""
        return self.encoding != "utf-8"


def decode_file(path: Path, *, log_fallback: bool = True) -> DecodedText:
    """Read a file and decode it as a whole.

    A file that starts with a UTF-8 BOM is UTF-8 and the BOM is removed. Otherwise
    a file that is valid UTF-8 throughout is UTF-8, and any other file is cp1252.
    Bytes that are invalid in the chosen encoding (in cp1252: 0x81, 0x8D, 0x8F,
    0x90 and 0x9D) are kept as escapes, so that only their rows are bad.

    Args:
        path: File to read.
        log_fallback: Whether to log at INFO that a file is decoded as cp1252.
            Readers of many small files pass False and log a count instead.

    Returns:
        The decoded text and its encoding.

    Raises:
        DataError: If the file is UTF-16 or cannot be read.
    """
    try:
        data = path.read_bytes()
    except OSError as err:
        raise DataError(f"{path}: cannot read the file: {err}") from err
    return decode_bytes(data, str(path), log_fallback=log_fallback)


def decode_bytes(data: bytes, source: str, *, log_fallback: bool = True) -> DecodedText:
    """Decode the bytes of a whole file or stream by the rules of ``decode_file``.

    Args:
        data: The bytes.
        source: Name of the file or stream, for messages.
        log_fallback: Whether to log at INFO that the bytes are decoded as cp1252.

    Raises:
        DataError: If the bytes start with a UTF-16 BOM.
    """
    if data.startswith(_UTF16_BOMS):
        raise DataError(f"{source}: the text is UTF-16; save it as UTF-8 and try again")
    if data.startswith(codecs.BOM_UTF8):
        body = data[len(codecs.BOM_UTF8) :]
        return DecodedText(body.decode("utf-8", "surrogateescape"), "utf-8-sig")
    try:
        return DecodedText(data.decode("utf-8"), "utf-8")
    except UnicodeDecodeError:
        if log_fallback:
            logger.info("%s is not valid UTF-8, so it is decoded as cp1252", source)
    return DecodedText(data.decode("cp1252", "surrogateescape"), "cp1252")


def invalid_byte_reason(text: str, decoded: DecodedText) -> str | None:
    """Describe the first invalid byte in text, a part of decoded.

    Returns:
        A reason such as "byte 0x81 is invalid in cp1252", or None if text has no
        invalid byte.
    """
    if not decoded.may_contain_invalid_bytes:
        return None
    match = _ESCAPED_BYTE.search(text)
    if match is None:
        return None
    byte = ord(match.group()) - 0xDC00
    encoding = "cp1252" if decoded.encoding == "cp1252" else "UTF-8"
    return f"byte 0x{byte:02x} is invalid in {encoding}"


def split_lines(text: str) -> list[str]:
    """Split text on "\\n" only and remove the "\\r" of CRLF line ends.

    ``str.splitlines`` is not used because it also splits on U+0085, U+2028 and
    other characters that can occur inside a review. The empty string after a
    final newline is not a line, so an empty text has no lines.
    """
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    return [line[:-1] if line.endswith("\r") else line for line in lines]
