"""The in-memory columns a Manifest keeps: packed paths and pack locations."""

from array import array


class PathColumn:
    """Sequence view of the packed paths, so `bisect` can search them without unpacking."""

    def __init__(self, blob: bytes, offsets: array):
        self.blob, self.offsets = blob, offsets

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, i: int) -> bytes:
        return self.blob[self.offsets[i]:self.offsets[i + 1]]


class PackColumns:
    """Pack locations per entry: an index into a table of pack digests (0: not packed) and an offset.
    The two arrays exist only once some entry is packed: a manifest without packs costs nothing here."""

    def __init__(self):
        self.count = 0  # entries seen
        self.ids: array | None = None
        self.offsets: array | None = None
        self.table: list[str | None] = [None]
        self._index: dict[bytes, int] = {b"": 0}  # hex digest (as in the manifest line) -> table index

    @classmethod
    def none(cls, count: int) -> "PackColumns":
        cols = cls()
        cols.count = count
        return cols

    def _id(self, hexdigest: bytes) -> int:
        i = self._index.get(hexdigest)
        if i is None:
            i = self._index[hexdigest] = len(self.table)
            self.table.append(hexdigest.decode("ascii"))
        return i

    def _columns(self) -> tuple[array, array]:
        if self.ids is None or self.offsets is None:
            self.ids = array("I", bytes(4 * self.count))
            self.offsets = array("Q", bytes(8 * self.count))
        return self.ids, self.offsets

    def add(self, pack: str | None, offset: int) -> None:
        if pack is None and self.ids is None:
            self.count += 1
            return
        ids, offsets = self._columns()
        self.count += 1
        ids.append(self._id(pack.encode("ascii")) if pack else 0)
        offsets.append(offset)

    def add_rows(self, rows: list[tuple[bytes, ...]]) -> None:
        """Regex rows of plain lines (digest, offset, pack, path, size); offset and pack may be empty."""
        if self.ids is None and not any(r[2] for r in rows):
            self.count += len(rows)
            return
        id_column, offset_column = self._columns()
        self.count += len(rows)
        get = self._index.get
        if any(get(r[2]) is None for r in rows):  # new packs in this window: register each once
            for pack in {r[2] for r in rows if get(r[2]) is None}:
                self._id(pack)
        id_column.extend(self._index[r[2]] for r in rows)
        offset_column.extend(map(int, (r[1] or b"0" for r in rows)))

    def location(self, i: int) -> tuple[str | None, int]:
        if self.ids is None or self.offsets is None:
            return None, 0
        pid = self.ids[i]
        return (self.table[pid], self.offsets[i]) if pid else (None, 0)
