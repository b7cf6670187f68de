"""Entry paths inside an artifact: relative, `/`-separated, normalized, UTF-8."""

from .errors import InvalidPath

MAX_PATH_BYTES = 4096
MAX_SEGMENT_BYTES = 255


def normalize_entry_path(path: str) -> str:
    """Return the canonical form of an entry path or raise InvalidPath.

    Accepts `./a//b` style redundancy only as far as `.` segments go; rejects absolute paths, `..`,
    empty segments inside the path, NUL, backslashes-as-separators are kept literally (POSIX names).
    """
    if not isinstance(path, str):
        raise InvalidPath(f"invalid entry path {path!r}: not text")
    if "\x00" in path:
        raise InvalidPath(f"invalid entry path {path!r}: contains NUL")
    if path.startswith("/"):
        raise InvalidPath(f"invalid entry path {path!r}: absolute paths are not allowed")
    try:
        encoded = path.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidPath(f"invalid entry path {path!r}: not valid UTF-8") from None
    segments = [s for s in path.split("/") if s != "."]
    if segments and segments[-1] == "":
        segments.pop()  # a trailing slash
    if not segments:
        raise InvalidPath(f"invalid entry path {path!r}: empty")
    for seg in segments:
        if seg == "":
            raise InvalidPath(f"invalid entry path {path!r}: empty segment")
        if seg == "..":
            raise InvalidPath(f"invalid entry path {path!r}: '..' is not allowed")
        if len(seg.encode("utf-8")) > MAX_SEGMENT_BYTES:
            raise InvalidPath(f"invalid entry path {path[:80]!r}...: a segment is over {MAX_SEGMENT_BYTES} bytes")
    if len(encoded) > MAX_PATH_BYTES:
        raise InvalidPath(f"invalid entry path {path[:80]!r}...: over {MAX_PATH_BYTES} bytes")
    return "/".join(segments)


def join_entry_path(prefix: str | None, name: str) -> str:
    return normalize_entry_path(f"{prefix}/{name}" if prefix else name)
