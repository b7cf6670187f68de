"""Names and references: `entity/project/name:alias` or `:vN`, and the past: `name:alias@TIME` (what the
alias pointed at then), `name:alias~N` (N moves ago), `name@TIME` (the newest version then).

One rule for entity, project, artifact name and alias: letters, digits, `_`, `-`, `.`; 1 to 128
characters; not `.` or `..`. An alias may not look like a version (`v3`), so `name:v3` is never ambiguous.
"""

import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from .errors import InvalidName

NAME_RE = re.compile(r"^[A-Za-z0-9_.\-]{1,128}$")
VERSION_RE = re.compile(r"^v(0|[1-9][0-9]{0,17})$")
LATEST = "latest"
# a time this many seconds ago names one position for good (a mover's clock may lag a little behind)
SETTLED = 60.0
# ALIAS@TIME, ALIAS~N, @TIME (the alias may be empty: the newest version, or latest for ~N)
TRAVEL_RE = re.compile(r"^(?P<alias>[A-Za-z0-9_.\-]{0,128})"
                       r"(?:@(?P<at>[0-9][0-9T:.+\-Z]{3,40})|~(?P<back>[1-9][0-9]{0,8}))$")


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
    at: datetime | None = None  # the alias (or, without one, the newest version) at this time
    back: int = 0  # the alias this many moves ago

    @property
    def selector(self) -> str:
        if self.version is not None:
            return f"v{self.version}"
        if self.at is not None:
            return f"{self.alias or ''}@{format_time(self.at)}"
        if self.back:
            return f"{self.alias or LATEST}~{self.back}"
        return self.alias or LATEST

    @property
    def travels(self) -> bool:
        """Names a past position: an alias's history or the versions' times."""
        return self.at is not None or self.back > 0

    @property
    def fixed(self) -> bool:
        """Names one version for good: `vN`, or a time settled in the past (cached like `vN`)."""
        return self.version is not None or (self.at is not None and settled(self.at))

    def __str__(self) -> str:
        if self.at is not None and not self.alias:
            return f"{self.artifact}{self.selector}"
        return f"{self.artifact}:{self.selector}"


def parse_time(text: str) -> datetime:
    """An ISO 8601 time (`2026-12-01T10:00:00Z`, `2026-12-01` for its start, `20261201T100000Z`
    without colons); UTC unless it says otherwise."""
    try:
        t = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith("Z") else text)
    except ValueError:
        raise InvalidName(f"invalid time {text!r}: use ISO 8601, e.g. 2026-12-01T10:00:00Z or 2026-12-01") from None
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def time_or_none(text: str) -> datetime | None:
    """parse_time, or None for what is not a time (a record's field, not an argument)."""
    try:
        return parse_time(text)
    except InvalidName:
        return None


def settled(at: datetime) -> bool:
    """A time far enough past (SETTLED) to name one position for good."""
    return at.timestamp() < time.time() - SETTLED


def split_name(text: str) -> tuple[str, str | None]:
    """`name:SELECTOR` -> (name, SELECTOR); `name@TIME` -> (name, "@TIME"); a bare name -> (name, None)."""
    at, colon = text.find("@"), text.find(":")
    if at != -1 and (colon == -1 or at < colon):
        return text[:at], text[at:]
    name, sep, selector = text.partition(":")
    return name, selector if sep else None


def format_time(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ" if t.microsecond else "%Y-%m-%dT%H:%M:%SZ")


def selector_ref(artifact: ArtifactName, selector: str) -> Ref:
    """The Ref of `artifact:selector`, for every selector: vN, an alias, ALIAS@TIME, ALIAS~N, @TIME."""
    m = TRAVEL_RE.match(selector)
    if m is None:
        version, alias = parse_selector(selector)
        return Ref(artifact, version=version, alias=alias)
    alias = check_alias(m["alias"]) if m["alias"] else None
    if m["at"] is not None:
        return Ref(artifact, alias=alias, at=parse_time(m["at"]))
    return Ref(artifact, alias=alias or LATEST, back=int(m["back"]))


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
    """Parse `[[entity/]project/]name[:alias|:vN|:alias@TIME|:alias~N]` or `...name@TIME`; a missing
    selector means `latest`."""
    base, selector = split_name(text)
    if require_selector and selector is None:
        raise InvalidName(f"invalid reference {text!r}: expected name:alias or name:vN")
    artifact = parse_artifact_name(base, entity, project)
    if selector is None:
        return Ref(artifact, alias=LATEST)
    try:
        return selector_ref(artifact, selector)
    except InvalidName as exc:
        raise InvalidName(f"{exc} (in {text!r})") from None
