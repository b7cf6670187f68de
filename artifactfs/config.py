"""Settings, each from (first wins): an explicit argument, an environment variable, the config file
(`~/.config/artifactfs/config.toml`, or $ARTIFACTFS_CONFIG), a default."""

import os
import re
import tomllib
from dataclasses import dataclass

from .errors import UsageError

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


def format_size(n: int) -> str:
    """Bytes for people: `512 B`, `3.1 MiB`, `1.0 GiB` (the inverse of parse_size, to a tenth)."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def load_settings(**overrides) -> Settings:
    """Resolve every setting; `overrides` are explicit arguments (None means not given)."""
    file = _read_file()
    values = {}
    for key, env in _ENV.items():
        value = overrides.get(key)
        if value is None:
            value = os.environ.get(env) or None
        if value is None:
            value = file.get(key)
        values[key] = value
    return Settings(
        store=(values["store"] if str(values["store"] or "").startswith("s3://")
               else os.path.expanduser(values["store"] or DEFAULT_STORE)),
        endpoint_url=values["endpoint_url"],
        entity=values["entity"],
        project=values["project"],
        cache_dir=os.path.expanduser(values["cache_dir"] or DEFAULT_CACHE_DIR),
        cache_size=parse_size(values["cache_size"]) if values["cache_size"] is not None else DEFAULT_CACHE_SIZE,
        timeout=float(values["timeout"]) if values["timeout"] is not None else DEFAULT_TIMEOUT,
    )
