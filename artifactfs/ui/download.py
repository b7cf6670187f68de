"""A file's verified bytes over HTTP, with single-range requests (`Range: bytes=a-b`, `a-`, `-n`):
streamed from the piece cache or the store a block at a time, each block checked before it is sent.
A block that fails its check ends the response early, so a client never receives wrong bytes as a
complete file (its length is short of Content-Length)."""

import logging
import os
import re
import urllib.parse
from collections.abc import Iterator

from starlette.responses import Response, StreamingResponse

from ..entry_file import EntryReader
from ..errors import ArtifactfsError
from ..fetch import Fetcher
from ..hashing import READ_BLOCK
from ..manifest import Entry
from .preview import IMAGE_TYPES

log = logging.getLogger(__name__)

RANGE_RE = re.compile(r"^bytes=([0-9]*)-([0-9]*)$")
BEYOND = 2**63  # a position past any file: what a longer number than this means


def byte_range(header: str | None, size: int) -> tuple[int, int] | None | str:
    """[start, end) a Range header asks for; None to send the whole file (no header, or one this
    server ignores: several ranges); "unsatisfiable" when it lies past the end."""
    if not header:
        return None
    m = RANGE_RE.match(header.strip())
    if not m or (not m.group(1) and not m.group(2)):
        return None  # several ranges or a malformed one: RFC 9110 lets a server send it all
    first, last = _position(m.group(1)), _position(m.group(2))
    if first is None:  # the last N bytes
        n = last or 0
        return (max(0, size - n), size) if n and size else "unsatisfiable"
    start = first
    end = size if last is None else min(size, last + 1)
    if start >= size or start >= end:
        return "unsatisfiable"
    return start, end


def _position(digits: str) -> int | None:
    """A byte position of a Range header; a number of more digits than any size has (thousands are
    past Python's int() limit) is BEYOND."""
    if not digits:
        return None
    return int(digits) if len(digits) <= 18 else BEYOND


def _blocks(reader: EntryReader, start: int, end: int, name: str) -> Iterator[bytes]:
    at = start
    try:
        while at < end:
            data = reader.read(at, min(end, at + READ_BLOCK))
            if not data:
                return
            yield data
            at += len(data)
    except ArtifactfsError as exc:  # headers are sent: stop short rather than send a wrong byte
        log.warning("download of %s stopped at byte %d: %s", name, at, exc)


def download(fetcher: Fetcher, entry: Entry, chunk_size: int, range_header: str | None) -> Response:
    reader = EntryReader(fetcher, entry, chunk_size)
    size = reader.size
    name = os.path.basename(entry.path)
    mime = IMAGE_TYPES.get(os.path.splitext(name)[1].lower())
    headers = {
        "accept-ranges": "bytes",
        # only images are shown in place (previews); anything else is saved, never run as a page here
        "content-disposition": ("inline" if mime else "attachment") + f"; filename*=UTF-8''{urllib.parse.quote(name)}",
        "content-security-policy": "default-src 'none'; sandbox",
        "cache-control": "private, max-age=31536000, immutable" if entry.digest else "no-store",
    }
    if entry.digest:
        headers["etag"] = f'"{entry.digest}"'
    wanted = byte_range(range_header, size)
    if wanted == "unsatisfiable":
        return Response(status_code=416, headers={**headers, "content-range": f"bytes */{size}"})
    start, end = wanted if isinstance(wanted, tuple) else (0, size)
    headers["content-length"] = str(end - start)
    status = 200
    if isinstance(wanted, tuple):
        status = 206
        headers["content-range"] = f"bytes {start}-{end - 1}/{size}"
    return StreamingResponse(_blocks(reader, start, end, entry.path), status_code=status, headers=headers,
                             media_type=mime or "application/octet-stream")
