"""The path grammar of `artifactfs://` (the mount's, docs/PYTHON_API.md):

    ENTITY / PROJECT / NAME                     an artifact: lists its versions and aliases
    ENTITY / PROJECT / NAME:SELECTOR / PATH     a file or directory of the version SELECTOR names
    ENTITY / PROJECT / NAME / SELECTOR / PATH   the same, without a colon (fio, PATH, PYTHONPATH
                                                and some tools split paths at ':')

SELECTOR is `vN`, an alias, or a past position: `alias@TIME`, `alias~N`, `@TIME` (also spelled
`NAME@TIME`). The spelling given is kept in the names a listing returns.
"""

from dataclasses import dataclass

from ..errors import InvalidName
from ..names import ArtifactName, Ref, check_name, selector_ref, split_name
from ..paths import normalize_entry_path


@dataclass(frozen=True)
class Location:
    """What a path names: `depth` 0-3 for the root, an entity, a project, an artifact; 4 for a
    version's root or a path in it (`inner`, '' for the root)."""

    parts: tuple[str, ...]  # entity, project, name: as many as given
    depth: int
    version: int | None = None  # depth 4: vN, or
    alias: str | None = None  # ...an alias, or
    travel: Ref | None = None  # ...a past position (alias@TIME, alias~N, @TIME)
    inner: str = ""
    root: str = ""  # the path of the version's root, as spelled (children are named under it)

    @property
    def artifact(self) -> ArtifactName:
        return ArtifactName(*self.parts)

    def child(self, name: str) -> str:
        """The path of a child of this location."""
        if self.depth < 4:
            return "/".join([*self.parts, name])
        return "/".join(p for p in (self.root, self.inner, name) if p)


def parse_path(path: str) -> Location:
    """The Location of a path (protocol stripped); InvalidName / InvalidPath for a malformed one."""
    segments = path.strip("/").split("/") if path.strip("/") else []
    if "" in segments:
        raise InvalidName(f"invalid path {path!r}: empty segment")
    head = segments[:3]
    name, spelled = split_name(head[2]) if len(head) == 3 else ("", None)
    if spelled is not None:  # NAME:SELECTOR or NAME@TIME
        head[2], selector = name, spelled
        root, rest = "/".join(segments[:3]), segments[3:]
    elif len(segments) >= 4:
        selector, root, rest = segments[3], "/".join(segments[:4]), segments[4:]
    else:
        for what, value in zip(("entity", "project", "artifact name"), head, strict=False):
            check_name(value, what)
        return Location(tuple(head), len(head))
    for what, value in zip(("entity", "project", "artifact name"), head, strict=True):
        check_name(value, what)
    ref = selector_ref(ArtifactName(*head), selector)
    inner = normalize_entry_path("/".join(rest)) if rest else ""
    return Location(tuple(head), 4, ref.version, ref.alias, ref if ref.travels else None, inner, root)
