"""What a reference may name. A manifest comes from the store, which anyone with write access to it
shapes, so a reference must not make `get` or the mount read what the user never meant to publish.

- `file://` references are read only below the directories the user allows (`reference_roots`, or
  ARTIFACTFS_REFERENCE_ROOTS, paths separated by `:`). The default is none: no local file is read
  for a manifest until its user says where reference data lives (a default such as $HOME would hand
  out ~/.ssh to whoever can write a manifest). The path is resolved (symlinks included) before the
  check, and the file actually opened is checked again, so a link swapped in between is caught.
- `http(s)://` references to loopback, link-local (cloud metadata at 169.254.169.254), private,
  shared, multicast and reserved addresses are refused unless the host is allowed (`reference_hosts`,
  or ARTIFACTFS_REFERENCE_HOSTS: names, addresses or networks such as 10.0.0.0/8, comma-separated).
  The name is resolved once and the connection goes to the address that was checked (no second
  lookup to rebind), and every redirect is checked the same way.

The policy is the user's (settings); nothing in a manifest widens it. `s3://` references go to the
store's endpoint with the store's credentials, which the user configured; they are not limited here.
"""

import ipaddress
import os
import socket
import urllib.parse
from dataclasses import dataclass

from .errors import CorruptData, PermissionDenied, StoreUnavailable, UsageError


@dataclass(frozen=True)
class ReferencePolicy:
    file_roots: tuple[str, ...] = ()  # real paths of directories
    hosts: tuple[str, ...] = ()  # lower-case names and addresses allowed even where private
    networks: tuple = ()  # ipaddress networks allowed even where private

    @classmethod
    def from_settings(cls, roots: str | list | None, hosts: str | list | None) -> "ReferencePolicy":
        root_list = roots.split(os.pathsep) if isinstance(roots, str) else list(roots or [])
        real = []
        for root in filter(None, root_list):
            if not os.path.isabs(os.path.expanduser(root)):
                raise UsageError(f"invalid reference root {root!r}: give an absolute directory")
            real.append(os.path.realpath(os.path.expanduser(root)))
        names, networks = [], []
        for host in filter(None, (h.strip() for h in (hosts.split(",") if isinstance(hosts, str)
                                                      else list(hosts or [])))):
            try:
                networks.append(ipaddress.ip_network(host, strict=False))
            except ValueError:
                if not all(part.isalnum() or part == "*" or set(part) <= set("abcdefghijklmnopqrstuvwxyz0123456789-")
                           for part in host.lower().split(".")):
                    raise UsageError(f"invalid reference host {host!r}: give a name, an address or a network") from None
                names.append(host.lower())
        return cls(tuple(real), tuple(names), tuple(networks))

    # ---- file:// ------------------------------------------------------------------------------
    def local_path(self, uri: str) -> str:
        """The real path a file:// reference names, if it lies below an allowed root."""
        parsed = urllib.parse.urlparse(uri)
        if parsed.netloc not in ("", "localhost"):
            raise CorruptData(f"reference {uri}: a file:// URL names no other host")
        path = urllib.parse.unquote(parsed.path)
        if not os.path.isabs(path) or "\0" in path:
            raise CorruptData(f"reference {uri}: not an absolute path")
        real = os.path.realpath(path)
        self._check_below_roots(uri, real)
        return real

    def _check_below_roots(self, uri: str, real: str) -> None:
        if not any(real == root or real.startswith(root.rstrip("/") + "/") for root in self.file_roots):
            where = ", ".join(self.file_roots) if self.file_roots else "none are allowed"
            raise PermissionDenied(f"reference {uri} is outside the reference roots ({where}; allow a directory "
                                   "with ARTIFACTFS_REFERENCE_ROOTS or reference_roots in the config file)")

    def open_local(self, uri: str) -> int:
        """An fd of the file a file:// reference names, opened below an allowed root."""
        real = self.local_path(uri)
        fd = os.open(real, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            opened = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            return fd  # no /proc: the resolved path was checked
        try:
            self._check_below_roots(uri, opened)  # a directory swapped for a link since realpath
        except PermissionDenied:
            os.close(fd)
            raise
        return fd

    # ---- http(s):// ---------------------------------------------------------------------------
    def http_address(self, uri: str) -> tuple[str, int, str]:
        """(host, port, address to connect to) of an http(s) reference, refused if the address is
        one a manifest must not reach (see the module doc) and the host is not allowed."""
        parsed = urllib.parse.urlsplit(uri)
        try:
            host, port = parsed.hostname, int(parsed.port or (443 if parsed.scheme == "https" else 80))
        except ValueError:
            raise CorruptData(f"reference {uri}: invalid port") from None
        if not host:
            raise CorruptData(f"reference {uri}: no host")
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError) as exc:
            raise StoreUnavailable(f"reference {uri} is unreachable: {exc}") from None
        addresses = [str(info[4][0]) for info in infos]
        allowed_name = host.lower() in self.hosts or any(
            name.startswith("*.") and host.lower().endswith(name[1:]) for name in self.hosts)
        for address in addresses:
            ip = ipaddress.ip_address(address.split("%")[0])
            if not allowed_name and not _public(ip) and not any(ip in net for net in self.networks):
                raise PermissionDenied(f"reference {uri} points at {ip}, a {_kind(ip)} address (allow the host "
                                       "with ARTIFACTFS_REFERENCE_HOSTS or reference_hosts in the config file)")
        return host, port, addresses[0]


def _public(ip) -> bool:
    if getattr(ip, "ipv4_mapped", None):
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def _kind(ip) -> str:
    for attr, kind in (("is_loopback", "loopback"), ("is_link_local", "link-local"), ("is_private", "private"),
                       ("is_multicast", "multicast"), ("is_unspecified", "unspecified")):
        if getattr(ip, attr):
            return kind
    return "non-public"
