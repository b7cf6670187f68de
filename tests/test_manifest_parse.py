"""Manifest.parse: the fast path for plain lines must accept and reject exactly what the per-entry path does."""

import json

import pytest

from artifactfs.errors import CorruptData, InvalidPath
from artifactfs.manifest import Entry, Manifest

D = "0123456789abcdef" * 2


def line(path, size=1, **extra) -> str:
    return json.dumps({"digest": D, "path": path, "size": size, **extra}, sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False)


def parse(*lines) -> Manifest:
    header = json.dumps({"chunk_size": 8388608, "format": 1, "type": "artifactfs-manifest"}, sort_keys=True,
                        separators=(",", ":"))
    return Manifest.parse(("\n".join([header, *lines]) + "\n").encode())


def test_round_trip_plain_and_special_entries():
    entries = [Entry(f"d{i // 100}/f{i:05d}", i, D) for i in range(3000)]
    entries += [Entry('q/a"b', 2, D, executable=True), Entry("r/big", 3, D, chunks=(D, D)),
                Entry("s/\u00e9t\u00e9", 4, D), Entry("t/ref", 5, None, ref="s3://b/k", etag="e")]
    m = Manifest.from_entries(entries)
    p = Manifest.parse(m.to_bytes())
    assert list(p) == list(m) and p.digest == m.digest and p.to_bytes() == m.to_bytes()
    assert [c.name for c in p.children("")][:3] == ["d0", "d1", "d10"]


@pytest.mark.parametrize("lines, error", [
    ([line("a"), line("a/b")], InvalidPath),
    ([line("a"), line("a-b"), line("a/c")], InvalidPath),
    ([line("b"), line("a")], CorruptData),
    ([line("a"), line("a")], InvalidPath),
    ([line("/a")], InvalidPath),
    ([line("a/")], InvalidPath),
    ([line("a//b")], InvalidPath),
    ([line("a/./b")], InvalidPath),
    ([line("../a")], InvalidPath),
    ([line("a/..")], InvalidPath),
    ([line("x" * 256)], InvalidPath),
    ([line("a", -1)], CorruptData),
    (['{"digest":"zz","path":"a","size":1}'], CorruptData),
    (["not json"], CorruptData),
])
def test_invalid_lines_are_rejected(lines, error):
    with pytest.raises(error):
        parse(*lines)


def test_dotted_names_are_fine():
    assert [e.path for e in parse(line(".hidden"), line("x/..y"), line("x/y.."))] == [".hidden", "x/..y", "x/y.."]
