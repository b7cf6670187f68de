"""A small store that shows every page of the web view: CSV, JSON, text, an image and binary files,
three versions with added, removed and changed files, aliases, metadata, a TTL, runs that produce and
use versions, and an artifact whose texts and file names are hostile."""

import base64
import json
import zlib

HOSTILE = "<script>alert('x')</script>\"'"
HOSTILE_FILE = "<b onmouseover=alert(1)> \"q\" 'a'.txt"


def png(width: int = 4, height: int = 3) -> bytes:
    """A real PNG (RGB, one colour): what a browser shows in an <img>."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return len(data).to_bytes(4, "big") + body + zlib.crc32(body).to_bytes(4, "big")

    rows = b"".join(b"\x00" + b"\x30\x90\xe0" * width for _ in range(height))
    header = width.to_bytes(4, "big") + height.to_bytes(4, "big") + b"\x08\x02\x00\x00\x00"
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def commit(cli, src, ref, *args):
    res = cli("commit", ref, "--dir", src, *args)
    assert res.exit_code == 0, res.output
    return res


def make_sample(cli, tmp_path) -> dict:
    """Commit the sample; returns the source bytes of acme/ml/raw:v1 by path."""
    src = tmp_path / "raw"
    (src / "tables").mkdir(parents=True)
    (src / "tables" / "flowers.csv").write_text("name,petals,colour\nrose,5,red\ntulip,6,yellow\n")
    (src / "config.json").write_text(json.dumps({"lr": 0.1, "layers": [64, 32]}))
    (src / "README.txt").write_text("Flowers, counted by hand.\n")
    (src / "img.png").write_bytes(png())
    (src / "old.txt").write_text("removed in v1")
    (src / "blob.bin").write_bytes(bytes(range(256)) * 40)
    commit(cli, src, "acme/ml/raw", "-m", "first count", "--run", "ingest-1")
    (src / "old.txt").unlink()
    (src / "tables" / "flowers.csv").write_text("name,petals,colour\nrose,5,red\ntulip,6,yellow\nlily,6,white\n")
    (src / "tables" / "trees.tsv").write_text("name\theight\noak\t30\n")
    commit(cli, src, "acme/ml/raw", "-m", "lilies and trees", "--run", "ingest-2", "--alias", "clean",
           "--metadata", "rows=3", "--metadata", 'source="field notes"')
    files = {p.relative_to(src).as_posix(): p.read_bytes() for p in src.rglob("*") if p.is_file()}
    model = tmp_path / "model"
    model.mkdir()
    (model / "weights.bin").write_bytes(b"\x01\x02" * 500)
    commit(cli, model, "acme/ml/classifier", "--type", "model", "--run", "train-7", "--input", "acme/ml/raw:clean",
           "--alias", "best", "-m", "trained on the clean count")
    assert cli("use", "acme/ml/classifier:best", "--run", "eval-3").exit_code == 0
    report = tmp_path / "report"
    report.mkdir()
    (report / "scores.json").write_text('{"accuracy": 0.93}')
    commit(cli, report, "acme/ml/report", "--type", "result", "--run", "eval-3", "--input", "acme/ml/classifier:v0")
    assert cli("ttl", "acme/ml/report:v0", "30d").exit_code == 0
    evil = tmp_path / "evil"
    (evil / "..dots").mkdir(parents=True)
    (evil / HOSTILE_FILE).write_text(HOSTILE)
    (evil / "..dots" / "%2e%2e.txt").write_text("dots")
    commit(cli, evil, "acme/xss/evil", "-m", HOSTILE, "--metadata", f"{HOSTILE}={json.dumps(HOSTILE)}",
           "--alias", "best")
    return files


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()
