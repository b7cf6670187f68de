"""Settings, each from (first wins): an explicit argument, an environment variable, the config file
(`~/.config/artifactfs/config.toml`, or $ARTIFACTFS_CONFIG), a default."""

import os
import re
import tomllib
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .errors import UsageError
from .reference_policy import ReferencePolicy

DEFAULT_STORE = "~/.local/share/artifactfs/store"
DEFAULT_CACHE_DIR = "~/.cache/artifactfs"
DEFAULT_CACHE_SIZE = 10 * 1024**3
DEFAULT_TIMEOUT = 10.0

_ENV = {
    "store": "ARTIFACTFS_STORE",
    "endpoint_url": "AWS_ENDPOINT_URL",
    "entity": "ARTIFACTFS_ENTITY",
    "project": "ARTIFACTFS_PROJECT",
    "cache_dir": "ARTIFACTFS_CACHE_DIR",
    "cache_size": "ARTIFACTFS_CACHE_SIZE",
    "timeout": "ARTIFACTFS_TIMEOUT",
    "reference_roots": "ARTIFACTFS_REFERENCE_ROOTS",  # reference_policy.py
    "reference_hosts": "ARTIFACTFS_REFERENCE_HOSTS",
}


@dataclass
class Settings:
    store: str
    endpoint_url: str | None
    entity: str | None
    project: str | None
    cache_dir: str
    cache_size: int
    timeout: float
    references: ReferencePolicy = ReferencePolicy()


def config_path() -> str:
    return os.path.expanduser(os.environ.get("ARTIFACTFS_CONFIG", "~/.config/artifactfs/config.toml"))


def _read_file() -> dict:
    path = config_path()
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        return {}
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise UsageError(f"cannot read config file {path}: {exc}") from None
    unknown = set(data) - set(_ENV)
    if unknown:
        raise UsageError(f"config file {path} has unknown keys: {', '.join(sorted(unknown))}")
    return data


def parse_size(text: str | int) -> int:
    """`10G`, `512MiB`, `1.5g`, `100000` -> bytes."""
    if isinstance(text, int):
        return text
    m = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([kmgt]?)(i?b)?\s*", str(text), re.IGNORECASE)
    if not m:
        raise UsageError(f"invalid size {text!r}: use a number with an optional K, M, G or T suffix")
    scale = 1024 ** " kmgt".index(m.group(2).lower() or " ")
    return int(float(m.group(1)) * scale)


def format_size(n: float) -> str:
    """Bytes for people: `512 B`, `3.1 MiB`, `1.0 GiB` (the inverse of parse_size, to a tenth)."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


MAX_TIMEOUT = 24 * 3600.0


def check_timeout(value, where: str = "timeout") -> float:
    """Seconds, finite and > 0: a timeout of 0, below 0 or nan would fail every request (or none)."""
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        seconds = float("nan")
    if type(value) is bool or not 0 < seconds <= MAX_TIMEOUT:  # nan fails every comparison
        raise UsageError(f"invalid {where} {value!r}: give seconds, more than 0 and at most {MAX_TIMEOUT:.0f}")
    return seconds


def _port_in_range(url: str) -> bool:
    try:
        return urllib.parse.urlsplit(url).port != -1  # .port raises ValueError outside 0..65535
    except ValueError:
        return False


def check_endpoint_url(value: str, where: str = "endpoint URL") -> str:
    if not re.fullmatch(r"https?://[^/\s?#]+(/[^\s]*)?", value) or not _port_in_range(value):
        raise UsageError(f"invalid {where} {value!r}: give http://HOST:PORT (a port from 0 to 65535) or "
                         "https://HOST")
    return value


def cli_option(key: str) -> str:
    return f"--{key.replace('_', '-')}"


def load_settings(option_name: Callable[[str], str] = cli_option, **overrides) -> Settings:
    """Resolve every setting; `overrides` are explicit arguments (None means not given), named in
    errors by `option_name(key)` (a CLI flag, or a storage option of artifactfs://)."""
    file = _read_file()
    values: dict[str, Any] = {}  # checked against _KINDS below
    where: dict[str, str] = {}
    for key, env in _ENV.items():
        value, where[key] = overrides.get(key), option_name(key)
        if value == "":
            raise UsageError(f"{where[key]} is empty: leave it out for the default")
        if value is None:
            value, where[key] = os.environ.get(env) or None, env
        if value is None:
            value, where[key] = file.get(key), f"{key} in {config_path()}"
        if value is not None and where[key] != env:  # the environment holds strings only
            _check_kind(key, value, where[key])
        values[key] = value
    cache_size = DEFAULT_CACHE_SIZE
    if values["cache_size"] is not None:
        try:
            cache_size = parse_size(values["cache_size"])
        except UsageError as exc:
            raise UsageError(f"{where['cache_size']}: {exc}") from None
        if cache_size < 0:
            raise UsageError(f"invalid {where['cache_size']} {values['cache_size']!r}: a size cannot be negative")
    return Settings(
        store=(values["store"] if str(values["store"] or "").startswith("s3://")
               else os.path.expanduser(values["store"] or DEFAULT_STORE)),
        endpoint_url=(check_endpoint_url(values["endpoint_url"], where["endpoint_url"])
                      if values["endpoint_url"] is not None else None),
        entity=values["entity"],
        project=values["project"],
        cache_dir=os.path.expanduser(values["cache_dir"] or DEFAULT_CACHE_DIR),
        cache_size=cache_size,
        timeout=(check_timeout(values["timeout"], where["timeout"]) if values["timeout"] is not None
                 else DEFAULT_TIMEOUT),
        references=ReferencePolicy.from_settings(values["reference_roots"], values["reference_hosts"]),
    )


def _check_kind(key: str, value, where: str) -> None:
    kinds, kind = _KINDS.get(key, ((str,), "a string"))
    if type(value) is bool or not isinstance(value, kinds) or (
            isinstance(value, list) and not all(isinstance(v, str) for v in value)):
        raise UsageError(f"{where} must be {kind}, not {value!r}")


_NUMBERS = ((str, int, float), "a number")
_LISTS = ((str, list), "a string or a list of strings")
_KINDS = {"cache_size": _NUMBERS, "timeout": _NUMBERS, "reference_roots": _LISTS, "reference_hosts": _LISTS}
