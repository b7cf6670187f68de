"""Names and references: `entity/project/name:alias` or `:vN`.

One rule for entity, project, artifact name and alias: letters, digits, `_`, `-`, `.`; 1 to 128
characters; not `.` or `..`. An alias may not look like a version (`v3`), so `name:v3` is never ambiguous.
"""

import re
from dataclasses import dataclass

from .errors import InvalidName

NAME_RE = re.compile(r"^[A-Za-z0-9_.\-]{1,128}$")
VERSION_RE = re.compile(r"^v(0|[1-9][0-9]{0,17})$")
LATEST = "latest"


def valid_name(value: str) -> bool:
    return bool(NAME_RE.match(value or "")) and value not in (".", "..")


def check_name(value: str, what: str = "name") -> str:
    if not valid_name(value):
        raise InvalidName(
            f"invalid {what} {value!r}: use 1-128 letters, digits, '_', '-' or '.'"
        )
    return value


def check_alias(alias: str) -> str:
    check_name(alias, "alias")
    if VERSION_RE.match(alias):
        raise InvalidName(f"invalid alias {alias!r}: v<N> is reserved for version numbers")
    return alias


@dataclass(frozen=True)
class ArtifactName:
    entity: str
    project: str
    name: str

    def __str__(self) -> str:
        return f"{self.entity}/{self.project}/{self.name}"

    @property
    def prefix(self) -> str:
        return f"artifacts/{self.entity}/{self.project}/{self.name}/"


@dataclass(frozen=True)
class Ref:
    """An artifact plus a selector: `version` (int) or `alias` (str); neither means `latest`."""

    artifact: ArtifactName
    version: int | None = None
    alias: str | None = None

    @property
    def selector(self) -> str:
        if self.version is not None:
            return f"v{self.version}"
        return self.alias or LATEST

    def __str__(self) -> str:
        return f"{self.artifact}:{self.selector}"


def parse_selector(selector: str) -> tuple[int | None, str | None]:
    m = VERSION_RE.match(selector)
    if m:
        return int(m.group(1)), None
    return None, check_alias(selector)


def parse_artifact_name(text: str, entity: str | None = None, project: str | None = None) -> ArtifactName:
    """`e/p/n`, `p/n` or `n`, with the missing parts from the defaults."""
    parts = text.split("/")
    if len(parts) == 3:
        entity, project, name = parts
    elif len(parts) == 2:
        project, name = parts
    elif len(parts) == 1:
        (name,) = parts
    else:
        raise InvalidName(f"invalid artifact name {text!r}: expected entity/project/name")
    if entity is None or project is None:
        missing = "entity" if entity is None else "project"
        raise InvalidName(
            f"{text!r} names no {missing}: write entity/project/name or set "
            f"ARTIFACTFS_{missing.upper()} (or '{missing}' in the config file)"
        )
    try:
        return ArtifactName(check_name(entity, "entity"), check_name(project, "project"),
                            check_name(name, "artifact name"))
    except InvalidName as exc:
        raise InvalidName(f"{exc} (in {text!r})" if "/" in text else str(exc)) from None


def parse_ref(text: str, entity: str | None = None, project: str | None = None, require_selector: bool = False) -> Ref:
    """Parse `[[entity/]project/]name[:alias|:vN]`; a missing selector means `latest`."""
    base, sep, selector = text.partition(":")
    if require_selector and not sep:
        raise InvalidName(f"invalid reference {text!r}: expected name:alias or name:vN")
    artifact = parse_artifact_name(base, entity, project)
    if not sep:
        return Ref(artifact, alias=LATEST)
    try:
        version, alias = parse_selector(selector)
    except InvalidName as exc:
        raise InvalidName(f"{exc} (in {text!r})") from None
    return Ref(artifact, version=version, alias=alias)
