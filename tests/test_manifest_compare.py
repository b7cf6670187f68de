"""The streamed comparison of two manifests (manifest/compare.py, behind `diff` and the web view's diff
page): the same answer as comparing every entry by path, whatever the shape of the changes."""

import random

import pytest

from artifactfs.manifest import DIR, LINK, Entry, Manifest, compare

D = "0123456789abcdef" * 2


def digest(n: int) -> str:
    return f"{n:032x}"


def reference(old: Manifest, new: Manifest) -> list[tuple[str, str]]:
    """The plain answer: every entry by path, compared by what it holds (not where it is stored)."""
    def content(e: Entry):
        return e.kind, e.target, e.digest, e.size, e.executable, e.ref, e.etag, e.version_id

    a, b = {e.path: e for e in old}, {e.path: e for e in new}
    out = [(p, compare.REMOVED) for p in a if p not in b] + [(p, compare.ADDED) for p in b if p not in a]
    out += [(p, compare.CHANGED) for p in a if p in b and content(a[p]) != content(b[p])]
    return sorted(out)


def streamed(old: Manifest, new: Manifest) -> list[tuple[str, str]]:
    got = []
    for change, i, j in compare.changes(old, new):
        got.append(((new if i < 0 else old)[j if i < 0 else i].path, change))
    assert got == sorted(got)  # in path order
    return got


def base(n: int, seed: int = 0) -> list[Entry]:
    rnd = random.Random(seed)
    return [Entry(f"d{i // 97:04d}/f{i:06d}.bin", rnd.randrange(1000), digest(i)) for i in range(n)]


def mutate(entries: list[Entry], rnd: random.Random, changes: int) -> list[Entry]:
    out = {e.path: e for e in entries}
    paths = sorted(out)
    for _ in range(changes):
        what = rnd.randrange(6)
        p = rnd.choice(paths)
        e = out.get(p)
        if what == 0 and e is not None:
            del out[p]
        elif what == 1:
            q = f"{p}.new{rnd.randrange(10**6)}"
            out[q] = Entry(q, 1, digest(rnd.randrange(10**9)))
        elif what == 2 and e is not None:
            out[p] = Entry(p, e.size, digest(rnd.randrange(10**9)))
        elif what == 3 and e is not None:
            out[p] = Entry(p, e.size, e.digest, executable=not e.executable)
        elif what == 4 and e is not None:  # stored elsewhere (a pack): not a change
            out[p] = Entry(p, e.size, e.digest, executable=e.executable, pack=D, offset=rnd.randrange(10**6))
        elif what == 5 and e is not None:
            out[p] = Entry(p, e.size + 1, e.digest)
    return list(out.values())


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("changes", [0, 1, 30, 3000])
def test_the_stream_finds_exactly_what_changed(seed, changes):
    rnd = random.Random(seed)
    old = base(5000, seed)
    new = mutate(old, rnd, changes)
    a, b = Manifest.from_entries(old), Manifest.from_entries(new)
    assert streamed(a, b) == reference(a, b)
    assert streamed(b, a) == reference(b, a)


def test_runs_of_additions_removals_and_whole_directories():
    old = base(3000)
    new = [e for e in old if not e.path.startswith("d0003/")]  # a whole directory removed
    new += [Entry(f"zz/{i:05d}", i, digest(10**6 + i)) for i in range(2000)]  # a new one after everything
    new += [Entry(f"a/{i:05d}", i, digest(10**7 + i)) for i in range(500)]  # and one before
    a, b = Manifest.from_entries(old), Manifest.from_entries(new)
    assert streamed(a, b) == reference(a, b)
    assert streamed(Manifest.from_entries([]), b) == reference(Manifest.from_entries([]), b)
    assert streamed(a, Manifest.from_entries([])) == reference(a, Manifest.from_entries([]))


def test_links_directories_and_references_compare_by_what_they_hold():
    common = [*base(200), Entry("e/empty", 0, None, kind=DIR), Entry("r/same", 5, None, ref="s3://b/s", etag="e")]
    old = common + [Entry("l/link", 0, None, kind=LINK, target="x"), Entry("r/ref", 5, None, ref="s3://b/k", etag="1")]
    new = common + [Entry("l/link", 0, None, kind=LINK, target="y"), Entry("r/ref", 5, None, ref="s3://b/k", etag="2")]
    a, b = Manifest.from_entries(old), Manifest.from_entries(new)
    assert streamed(a, b) == reference(a, b) == [("l/link", compare.CHANGED), ("r/ref", compare.CHANGED)]
