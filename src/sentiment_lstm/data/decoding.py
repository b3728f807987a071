"""Decoding of data files: UTF-8 with or without BOM, else cp1252.

``EncodingScan`` chooses the encoding of a file without a BOM. A valid UTF-8
file is UTF-8. So is a file with fewer invalid bytes than valid multi-byte
UTF-8 characters, because then one stray byte makes only its own row bad. Any
other file is cp1252.
"""

import codecs
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from sentiment_lstm.data.records import DataError

logger = logging.getLogger(__name__)

# With errors="surrogateescape", a byte that the codec cannot decode becomes the
# lone surrogate U+DC00 + byte, so the reader can name the line that contains it.
_ESCAPED_BYTE = re.compile("[\udc80-\udcff]")
# An escaped byte or a NUL character, the first of which invalid_byte_reason
# reports.
_INVALID_CHARACTER = re.compile("[\x00\udc80-\udcff]")

_UTF16_BOMS = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)
# The UTF-32 little-endian BOM starts with the UTF-16 one, so it is checked first.
_UTF32_BOMS = (codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)

# The first bytes of compressed files and archives, as a pattern, and the
# tool that unpacks each. Each pattern contains control bytes that text does
# not start with. gzip: its magic and its one compression method, 8. bzip2:
# "BZh", the block size and the magic number of a block or of the stream's
# end. xz: the NUL of its magic. zip: the bytes 3 and 4.
_COMPRESSED_MAGIC = (
    (re.compile(rb"\x1f\x8b\x08"), "gzip-compressed", "gunzip"),
    (
        re.compile(rb"BZh[1-9](?:1AY&SY|\x17rE8P\x90)"),
        "bzip2-compressed",
        "bunzip2",
    ),
    (re.compile(rb"\xfd7zXZ\x00"), "xz-compressed", "unxz"),
    (re.compile(rb"PK\x03\x04"), "a zip archive", "unzip"),
    # zstd's magic is printable in cp1252 ("(µ/ý"), so a control byte in
    # the sample must confirm it.
    (
        re.compile(rb"\x28\xb5\x2f\xfd.*[\x00-\x08\x0e-\x1f]", re.DOTALL),
        "zstd-compressed",
        "unzstd",
    ),
)

# Bytes at the start of a file that are checked for the NUL bytes of UTF-16.
NUL_SAMPLE_BYTES = 4096

SAVE_AS_UTF8_FIX = "save it as UTF-8 and try again"

NUL_REASON = "byte 0x00 (NUL) is invalid in text"


class EncodingError(DataError):
    """A file that is not text in a supported encoding, such as UTF-16.

    Attributes:
        source: The file or stream.
        reason: What is wrong with the whole file, without the file name.
        fix: What to do about it.
    """

    def __init__(self, source: str, reason: str, fix: str = SAVE_AS_UTF8_FIX) -> None:
        super().__init__(f"{source}: {reason}; {fix}")
        self.source = source
        self.reason = reason
        self.fix = fix


def check_file_start(start: bytes, source: str) -> None:
    """Raise if a file starts as UTF-32 or UTF-16 text or as compressed data.

    Args:
        start: The first bytes of the file, at least 6 where it has them.
        source: The file or stream, for messages.

    Raises:
        EncodingError: Naming the encoding or the compression, with the fix.
    """
    if start.startswith(_UTF32_BOMS):
        raise EncodingError(source, "the text is UTF-32")
    if start.startswith(_UTF16_BOMS):
        raise EncodingError(source, "the text is UTF-16")
    for magic, kind, tool in _COMPRESSED_MAGIC:
        if magic.match(start, 0, NUL_SAMPLE_BYTES):
            raise EncodingError(
                source,
                f"the file is {kind}, not text",
                f"unpack it first (for example with {tool}) and pass the text file",
            )


@dataclass(frozen=True)
class Encoding:
    """Codec and error handler for decoding a file, as ``open`` takes them.

    Attributes:
        name: "utf-8-sig", "utf-8" or "cp1252".
        errors: "strict" when every byte of the file is valid in ``name``, else
            "surrogateescape".
    """

    name: str
    errors: str = "strict"


@dataclass(frozen=True)
class DecodedText:
    """Text of a whole file and the encoding it was decoded with.

    Attributes:
        text: Decoded text. Bytes invalid in ``encoding`` are lone surrogates
            U+DC80 to U+DCFF (see ``invalid_byte_reason``).
        encoding: "utf-8-sig", "utf-8" or "cp1252".
        errors: "strict" if no byte was invalid in ``encoding``, else
            "surrogateescape".
    """

    text: str
    encoding: str
    errors: str = "strict"

    @property
    def may_contain_invalid_bytes(self) -> bool:
        """Whether the decoder escaped invalid bytes instead of failing."""
        return self.errors != "strict"


def check_nul_bytes(sample: bytes, source: str) -> None:
    """Raise if the start of a file has the NUL bytes of UTF-16 or of binary data.

    UTF-16 text of Latin letters has a NUL byte at every other position. Without
    a BOM it is valid UTF-8, so it would be read as letters and NULs. Text in
    scripts such as Chinese has few NUL bytes in UTF-16, but each of its line
    breaks is a NUL and a line feed side by side, which 8-bit text never has.

    Args:
        sample: The first bytes of the file, ``NUL_SAMPLE_BYTES`` or fewer.
        source: The file or stream, for the message.

    Raises:
        EncodingError: If a quarter or more of the even or of the odd positions
            of sample hold NUL bytes, and at least two do; or if the sample
            decodes as UTF-16 and has two or more UTF-16 line feeds.
    """
    even = sample[0::2].count(0)
    odd = sample[1::2].count(0)
    positions = len(sample) // 2
    if max(even, odd) < 2 or max(even, odd) * 4 < positions:
        _check_utf16_line_feeds(sample, source)
        return
    counted = f"{even + odd} of the first {len(sample)} bytes are NUL"
    if min(even, odd) * 4 >= positions:
        raise EncodingError(
            source, f"{counted}, so it looks like a binary file, not text"
        )
    order = "little-endian" if odd > even else "big-endian"
    raise EncodingError(
        source,
        f"the text looks like UTF-16 ({order}) without a byte order mark: "
        f"{counted}, at alternating positions",
    )


def _check_utf16_line_feeds(sample: bytes, source: str) -> None:
    """Raise if sample is UTF-16 text with line feeds but few NUL bytes."""
    if sample.count(0) == 0:
        return
    units = sample[: len(sample) // 2 * 2]
    for codec, order, line_feed in (
        ("utf-16-le", "little-endian", b"\n\x00"),
        ("utf-16-be", "big-endian", b"\x00\n"),
    ):
        line_feeds = sum(
            1
            for start in range(0, len(units), 2)
            if units[start : start + 2] == line_feed
        )
        if line_feeds < 2:
            continue
        try:
            # the sample may end inside a surrogate pair
            codecs.getincrementaldecoder(codec)().decode(units)
        except UnicodeDecodeError:
            continue
        raise EncodingError(
            source,
            f"the text looks like UTF-16 ({order}) without a byte order mark: "
            f"{line_feeds} of its line breaks in the first {len(sample)} bytes "
            "are UTF-16 line feeds",
        )


class EncodingScan:
    """Choice of the encoding of a file from its bytes, fed block by block.

    A file that starts with a UTF-8 BOM is UTF-8. Otherwise a file that is valid
    UTF-8 is UTF-8. A file with bytes that are invalid in UTF-8 is still UTF-8
    if they are fewer than its valid multi-byte UTF-8 characters, and cp1252
    otherwise. Invalid bytes are then escaped (errors="surrogateescape"), so
    that only the rows that contain them are bad.

    Attributes:
        has_line_feed: Whether a "\\n" byte was seen.
        has_carriage_return: Whether a "\\r" byte was seen.
        lone_carriage_returns: "\\r" bytes not followed by "\\n".
    """

    def __init__(self, source: str) -> None:
        self.source = source
        self.has_line_feed = False
        self.has_carriage_return = False
        self.lone_carriage_returns = 0
        # Line ends for an estimate of the rows, and whether the last line
        # has one.
        self.line_feeds = 0
        self.ends_in_line_feed = False
        self.ends_in_carriage_return = False
        self._started = False
        self._utf8_bom = False
        # A strict decoder checks the blocks until the first invalid byte, and
        # an escaping one counts invalid bytes from that block on.
        self._strict = codecs.getincrementaldecoder("utf-8")()
        self._escaping: codecs.IncrementalDecoder | None = None
        self._invalid_bytes = 0
        self._multibyte_characters = 0

    def feed(self, block: bytes) -> None:
        """Scan the next block of the file.

        Raises:
            EncodingError: If the file starts with a UTF-16 BOM, or its first
                block looks like UTF-16 without a BOM or like binary data.
        """
        if not self._started:
            self._started = True
            check_file_start(block, self.source)
            check_nul_bytes(block[:NUL_SAMPLE_BYTES], self.source)
            if block.startswith(codecs.BOM_UTF8):
                self._utf8_bom = True
        self.has_line_feed = self.has_line_feed or b"\n" in block
        self.line_feeds += block.count(b"\n")
        if block:
            self.ends_in_line_feed = block.endswith(b"\n")
        self.has_carriage_return = self.has_carriage_return or b"\r" in block
        self.lone_carriage_returns += block.count(b"\r") - block.count(b"\r\n")
        if self.ends_in_carriage_return and block.startswith(b"\n"):
            # A CRLF split between two blocks.
            self.lone_carriage_returns -= 1
        self.ends_in_carriage_return = block.endswith(b"\r")
        if self._escaping is not None:
            self._count(self._escaping.decode(block))
            return
        pending = self._strict.getstate()[0]
        try:
            self._strict.decode(block)
        except UnicodeDecodeError:
            self._count_from_here(pending, block, final=False)
            return
        # In valid UTF-8 each multi-byte character has one lead byte.
        self._multibyte_characters += _count_lead_bytes(block)

    def result(self, *, log: bool = True) -> Encoding:
        """Return the encoding chosen for the bytes fed so far.

        Args:
            log: Whether to log at INFO why a file that is not valid UTF-8 is
                decoded as it is. Readers of many small files pass False and
                log a count instead.
        """
        if self._escaping is not None:
            self._count(self._escaping.decode(b"", final=True))
        else:
            pending = self._strict.getstate()[0]
            try:
                self._strict.decode(b"", final=True)
            except UnicodeDecodeError:
                # The file ends inside a multi-byte sequence.
                self._count_from_here(pending, b"", final=True)
        invalid = self._invalid_bytes
        multibyte = self._multibyte_characters
        if self._utf8_bom:
            # The byte order mark itself was counted as a character.
            multibyte -= 1
            if invalid and log:
                logger.warning(
                    "%s starts with a UTF-8 byte order mark, so it is decoded as "
                    "UTF-8, but %d of its bytes %s invalid in UTF-8 (valid "
                    "multi-byte UTF-8 characters: %d), so the %s bad; if the "
                    "file was saved as cp1252, save it as "
                    "UTF-8, or remove its first 3 bytes (the mark) so that it "
                    "is read as cp1252",
                    self.source,
                    invalid,
                    "is" if invalid == 1 else "are",
                    multibyte,
                    (
                        "row that contains it is"
                        if invalid == 1
                        else "rows that contain them are"
                    ),
                )
            return Encoding("utf-8-sig", "surrogateescape")
        if invalid == 0:
            logger.debug("%s is valid UTF-8", self.source)
            return Encoding("utf-8")
        if invalid < multibyte:
            if log:
                logger.info(
                    "%s is not valid UTF-8 (invalid bytes: %d, valid multi-byte "
                    "UTF-8 characters: %d), but its valid characters outnumber "
                    "its invalid bytes, so it is decoded as UTF-8 and only the "
                    "rows with invalid bytes are reported",
                    self.source,
                    invalid,
                    multibyte,
                )
            return Encoding("utf-8", "surrogateescape")
        if log:
            logger.info(
                "%s is not valid UTF-8 (invalid bytes: %d, valid multi-byte "
                "UTF-8 characters: %d), so it is decoded as cp1252",
                self.source,
                invalid,
                multibyte,
            )
        return Encoding("cp1252", "surrogateescape")

    def _count_from_here(self, pending: bytes, block: bytes, *, final: bool) -> None:
        """Switch to the escaping decoder at the block with the first invalid byte.

        Args:
            pending: Bytes of an unfinished character that the strict decoder
                held back from the block before. Its lead byte was counted
                there, so that count is taken back.
            block: The block with the invalid byte.
            final: Whether block is the end of the file.
        """
        self._multibyte_characters -= _count_lead_bytes(pending)
        self._escaping = codecs.getincrementaldecoder("utf-8")("surrogateescape")
        self._count(self._escaping.decode(pending + block, final=final))

    def _count(self, text: str) -> None:
        if text.isascii():
            return
        invalid = len(_ESCAPED_BYTE.findall(text))
        non_ascii = len(text) - len(text.encode("ascii", "ignore"))
        self._invalid_bytes += invalid
        self._multibyte_characters += non_ascii - invalid


# Bytes that start a multi-byte UTF-8 sequence (0xC0 and up; 0xC0, 0xC1 and
# 0xF5 and up never occur in valid UTF-8).
_LEAD_BYTES = bytes(range(0xC0, 0x100))


def _count_lead_bytes(data: bytes) -> int:
    return len(data) - len(data.translate(None, _LEAD_BYTES))


# Bytes read at a time by scan_file.
_SCAN_BLOCK_BYTES = 1 << 20


def scan_file(path: Path, source: str | None = None) -> EncodingScan:
    """Feed a whole file to an ``EncodingScan`` block by block, in bounded memory.

    Call ``result()`` on the scan for the encoding to open the file with.

    Raises:
        EncodingError: As ``EncodingScan.feed`` does.
        DataError: If the file cannot be read.
    """
    source = source or str(path)
    scan = EncodingScan(source)
    try:
        with open(path, "rb") as stream:
            for block in iter(lambda: stream.read(_SCAN_BLOCK_BYTES), b""):
                scan.feed(block)
    except OSError as err:
        raise DataError(f"{source}: cannot read the file: {err}") from err
    return scan


def open_text(path: Path, encoding: Encoding, newline: str, source: str) -> TextIO:
    """Open a file for reading in the encoding that its scan chose.

    Raises:
        DataError: If the file cannot be opened.
    """
    try:
        return open(
            path, encoding=encoding.name, errors=encoding.errors, newline=newline
        )
    except OSError as err:
        raise DataError(f"{source}: cannot read the file: {err}") from err


def log_carriage_return_line_ends(source: str) -> None:
    """Log that a file's lines are split at "\\r", since it has no "\\n"."""
    logger.info(
        "%s has no \\n line ends but has \\r, so its lines are split at \\r "
        "(old Mac OS line ends)",
        source,
    )


def decode_file(path: Path, *, log_fallback: bool = True) -> DecodedText:
    """Read a file and decode it as a whole.

    A file that starts with a UTF-8 BOM is UTF-8 and the BOM is removed. Any
    other file is decoded as ``EncodingScan`` chooses: UTF-8 if valid or mostly
    valid, else cp1252. Bytes that are invalid in the chosen encoding (in
    cp1252: 0x81, 0x8D, 0x8F, 0x90 and 0x9D) are kept as escapes, so that only
    their rows are bad.

    Args:
        path: File to read.
        log_fallback: Whether to log at INFO why a file that is not valid UTF-8
            is decoded as it is. Readers of many small files pass False and log
            a count instead.

    Returns:
        The decoded text and its encoding.

    Raises:
        EncodingError: If the file is UTF-16, with or without a BOM, or binary.
        DataError: If the file cannot be read.
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
        log_fallback: Whether to log at INFO why bytes that are not valid UTF-8
            are decoded as they are.

    Raises:
        EncodingError: If the bytes are UTF-16, with or without a BOM, or binary.
    """
    check_file_start(data, source)
    check_nul_bytes(data[:NUL_SAMPLE_BYTES], source)
    if data.startswith(codecs.BOM_UTF8):
        body = data[len(codecs.BOM_UTF8) :]
        try:
            return DecodedText(body.decode("utf-8"), "utf-8-sig", "surrogateescape")
        except UnicodeDecodeError:
            # The scan warns of the invalid bytes.
            scan = EncodingScan(source)
            scan.feed(data)
            scan.result(log=log_fallback)
        return DecodedText(
            body.decode("utf-8", "surrogateescape"), "utf-8-sig", "surrogateescape"
        )
    try:
        return DecodedText(data.decode("utf-8"), "utf-8")
    except UnicodeDecodeError:
        pass
    scan = EncodingScan(source)
    scan.feed(data)
    encoding = scan.result(log=log_fallback)
    return DecodedText(
        data.decode(encoding.name, encoding.errors), encoding.name, encoding.errors
    )


def invalid_byte_reason(text: str, decoded: DecodedText) -> str | None:
    """Describe the first invalid byte in text, a part of decoded.

    A NUL byte is invalid in every encoding, because text files do not contain
    it.

    Returns:
        A reason such as "byte 0x81 is invalid in cp1252", or None if text has no
        invalid byte.
    """
    if not decoded.may_contain_invalid_bytes:
        return NUL_REASON if "\x00" in text else None
    match = _INVALID_CHARACTER.search(text)
    if match is None:
        return None
    if match.group() == "\x00":
        return NUL_REASON
    byte = ord(match.group()) - 0xDC00
    encoding = "cp1252" if decoded.encoding == "cp1252" else "UTF-8"
    return f"byte 0x{byte:02x} is invalid in {encoding}"


def warn_about_carriage_returns(count: int, source: str) -> None:
    """Warn about ``count`` lines that keep a "\\r" inside, maybe line breaks."""
    if count:
        logger.warning(
            "%d %s of %s a carriage return (\\r) that does not end the line, "
            "which stays inside the review; if these are line breaks, convert "
            "them to \\n",
            count,
            "line" if count == 1 else "lines",
            f"{source} contains" if count == 1 else f"{source} contain",
        )
