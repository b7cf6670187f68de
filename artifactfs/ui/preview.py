"""A file's preview for the web view, from its verified bytes (only the head it needs): an image is
shown inline, CSV/TSV and Parquet (with pyarrow) as a table of the first rows, JSON and text as text,
anything else as hex of the first KiB."""

import csv
import io
import json
import os

from ..entry_file import open_entry
from ..fetch import Fetcher
from ..manifest import LINK, Entry
from ..references import is_unchecked

TEXT_BYTES = 64 * 1024
HEX_BYTES = 1024
TABLE_ROWS = 50
TABLE_COLUMNS = 50
CELL_CHARS = 200
PARQUET_PREVIEW_BYTES = 16 * 1024 * 1024  # of the first row group's (compressed) columns a table preview reads
# Formats a browser shows in an <img> without running anything (SVG can hold scripts: hex it).
IMAGE_MAGIC = {".png": b"\x89PNG\r\n\x1a\n", ".jpg": b"\xff\xd8\xff", ".jpeg": b"\xff\xd8\xff",
               ".gif": b"GIF8", ".webp": b"RIFF"}
IMAGE_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".gif": "image/gif",
               ".webp": "image/webp"}


def image_type(path: str, head: bytes) -> str | None:
    """The image MIME type when the name says an image format and the bytes agree."""
    ext = os.path.splitext(path)[1].lower()
    magic = IMAGE_MAGIC.get(ext)
    return IMAGE_TYPES[ext] if magic and head.startswith(magic) else None


def preview(fetcher: Fetcher, entry: Entry, chunk_size: int) -> dict:
    """{"kind": "image"|"table"|"json"|"text"|"hex"|"none", ...} for a file entry."""
    if entry.kind == LINK:
        return {"kind": "none", "reason": f"a symbolic link to {entry.target}"}
    if is_unchecked(entry):
        return {"kind": "none", "reason": "an unchecked reference: its URI's content is not previewed"}
    if entry.size == 0:
        return {"kind": "none", "reason": "an empty file"}
    with open_entry(fetcher, entry, chunk_size, entry.path) as f:
        head = f.read(TEXT_BYTES)
        ext = os.path.splitext(entry.path)[1].lower()
        mime = image_type(entry.path, head)
        if mime:
            return {"kind": "image", "mime": mime}
        if ext == ".parquet":
            table = _parquet(f)
            if table:
                return table
        text = _text(head)
        if text is not None and ext in (".csv", ".tsv"):
            return _table_of_text(text, "\t" if ext == ".tsv" else ",", len(head) < entry.size)
        if text is not None and ext in (".json", ".jsonl", ".ipynb") and len(head) == entry.size:
            try:
                return {"kind": "json", "text": json.dumps(json.loads(text), indent=2, ensure_ascii=False)}
            except (ValueError, RecursionError):  # not JSON, or nested past what the parser recurses into
                pass
        if text is not None:
            return {"kind": "text", "text": text, "truncated": len(head) < entry.size}
        return {"kind": "hex", "rows": hex_rows(head[:HEX_BYTES]), "truncated": entry.size > HEX_BYTES}


def _text(head: bytes) -> str | None:
    """The head as text when it is UTF-8 without NULs (a character cut at the end is dropped)."""
    if b"\x00" in head:
        return None
    for cut in range(4):
        try:
            return head[:len(head) - cut].decode("utf-8")
        except UnicodeDecodeError:
            continue
    return None


def _cell(value) -> str:
    text = "" if value is None else str(value)
    return text if len(text) <= CELL_CHARS else text[:CELL_CHARS] + "…"


def _table_of_text(text: str, delimiter: str, cut: bool) -> dict:
    lines = text.splitlines()
    if cut and len(lines) > 1:
        lines = lines[:-1]  # the last line may be cut in the middle
    rows = list(csv.reader(io.StringIO("\n".join(lines[:TABLE_ROWS + 1])), delimiter=delimiter))
    if not rows:
        return {"kind": "text", "text": text, "truncated": cut}
    columns = [_cell(c) for c in rows[0][:TABLE_COLUMNS]]
    body = [[_cell(c) for c in r[:TABLE_COLUMNS]] for r in rows[1:TABLE_ROWS + 1]]
    return {"kind": "table", "columns": columns, "rows": body, "more": cut or len(lines) > TABLE_ROWS + 1}


def _parquet(f) -> dict | None:
    """The first rows of a Parquet file (reading its footer and first row group), None without
    pyarrow or when the file is not Parquet."""
    try:
        import pyarrow.parquet as pq
    except ImportError:
        return None
    try:
        f.seek(0)
        pf = pq.ParquetFile(f)
        names = [str(n) for n in pf.schema_arrow.names][:TABLE_COLUMNS]
        if pf.metadata.num_row_groups == 0:
            return {"kind": "table", "columns": names, "rows": [], "more": False}
        group = pf.metadata.row_group(0)
        shown = set(names)
        size = sum(group.column(i).total_compressed_size for i in range(group.num_columns)
                   if group.column(i).path_in_schema.split(".")[0] in shown)
        if size > PARQUET_PREVIEW_BYTES:  # reading the rows would fetch (and hold) all of that
            return {"kind": "table", "columns": [_cell(c) for c in names], "rows": [], "more": True,
                    "total_rows": pf.metadata.num_rows,
                    "note": f"its first row group holds {size / 2**20:.0f} MiB of these columns, more than a "
                            f"preview reads ({PARQUET_PREVIEW_BYTES >> 20} MiB): download the file to see its rows"}
        batch = next(pf.iter_batches(batch_size=TABLE_ROWS, columns=names), None)
    except Exception:  # noqa: BLE001 - any parse failure of a damaged or non-Parquet file: show it as bytes
        return None
    if batch is None:
        return None
    columns = batch.schema.names[:TABLE_COLUMNS]
    data = [batch.column(i).to_pylist() for i in range(len(columns))]
    rows = [[_cell(col[r]) for col in data] for r in range(batch.num_rows)]
    return {"kind": "table", "columns": [_cell(c) for c in columns], "rows": rows,
            "more": pf.metadata.num_rows > batch.num_rows, "total_rows": pf.metadata.num_rows}


def hex_rows(data: bytes) -> list[dict]:
    out = []
    for at in range(0, len(data), 16):
        line = data[at:at + 16]
        out.append({"offset": f"{at:08x}", "hex": " ".join(f"{b:02x}" for b in line),
                    "ascii": "".join(chr(b) if 32 <= b < 127 else "." for b in line)})
    return out
