"""External references: entries whose bytes stay at a URI (`s3://`, `http(s)://`, `file://`).

At commit a URI is resolved into entries that record what identifies the source's content:
- `s3://bucket/key`: size, ETag and VersionId (when the bucket is versioned). A key that is not an
  object is a prefix: it expands to every object under it, up to `max_objects` (more is an error).
  The same endpoint and credentials as the store are used (AWS_ENDPOINT_URL, AWS_* variables).
- `http(s)://...`: size (Content-Length) and ETag. A server that sends no ETag gives no cheap way to
  notice a change, so the content is downloaded once and its digest (and chunk digests) recorded.
- `file:///path`: size and digest (and chunk digests); a directory expands to its files.
- `checksum=False`: the URI alone (size 0, nothing to check); `get` downloads whatever is there now,
  and the mount shows the source's size now (`current_size`) and reads its bytes now (`read_current`).

Reads are ranged and validated: an S3 read sends If-Match with the recorded ETag (and the VersionId),
an HTTP read compares the response's ETag and total size, and a piece with a recorded digest is
hashed. A source that changed since the commit raises CorruptData after one clear log line, so the
mount answers EIO and `get` fails; it never returns other bytes than the ones committed.

(Over 400 lines: resolve and read for three schemes that must agree on one record format; what a
reference may reach is reference_policy.py.)
"""

import contextlib
import logging
import os
import threading
import urllib.parse
from collections.abc import Callable, Iterator

import urllib3

from .errors import (
    CorruptData,
    LocalIOError,
    NotFound,
    PermissionDenied,
    PreconditionFailed,
    StoreUnavailable,
    UsageError,
)
from .hashing import CHUNK_SIZE, READ_BLOCK, StreamHasher, digest_bytes, hash_file
from .manifest import Entry
from .paths import join_entry_path, normalize_entry_path
from .reference_policy import ReferencePolicy

log = logging.getLogger(__name__)

SCHEMES = ("s3://", "http://", "https://", "file://")
MAX_OBJECTS = 10000
MAX_REDIRECTS = 5


def is_unchecked(entry: Entry) -> bool:
    """A reference recorded with checksum=False: nothing but the URI is known."""
    return bool(entry.ref) and entry.digest is None and entry.etag is None and entry.size == 0


def _changed(uri: str, why: str) -> CorruptData:
    log.error("reference %s changed since it was committed (%s): refusing to serve its bytes", uri, why)
    return CorruptData(f"reference {uri} changed since it was committed ({why})")


@contextlib.contextmanager
def _os_errors(uri: str, missing: Callable[[], Exception] | None = None):
    """A missing or unreadable file:// source is one clear error (NotFound, LocalIOError), not an OSError."""
    try:
        yield
    except FileNotFoundError:
        raise (missing() if missing else NotFound(f"reference {uri}: the file does not exist")) from None
    except OSError as exc:
        raise LocalIOError(f"cannot read reference {uri}: {exc.strerror}") from None


def _base_name(path: str, uri: str) -> str:
    base = path.rstrip("/").rsplit("/", 1)[-1]
    if not base:
        raise UsageError(f"cannot derive an entry name from {uri}: pass name=")
    return base


def parse_spec(spec: str) -> tuple[str, str | None]:
    """`URI=NAME` -> (URI, NAME); `URI` -> (URI, None). The last `=` splits, so a URI holding `=`
    (a query string) is given as `URI=NAME`."""
    uri, sep, name = spec.rpartition("=")
    return (uri, name or None) if sep else (spec, None)


class References:
    """Resolves and reads references. Thread-safe; one S3 client per bucket, made on first use."""

    def __init__(self, endpoint_url: str | None = None, timeout: float = 10.0,
                 policy: ReferencePolicy | None = None):
        self.endpoint_url = endpoint_url or os.environ.get("AWS_ENDPOINT_URL") or None
        self.timeout = timeout
        self.policy = policy or ReferencePolicy()  # the default allows no local file, no private host
        self._s3: dict = {}
        self._http: dict = {}
        self._lock = threading.Lock()

    # ---- resolving ------------------------------------------------------------------------------
    def resolve_specs(self, specs) -> list[Entry]:
        """The entries of each `URI` or `URI=NAME` (as the CLI's --reference takes them)."""
        return [e for spec in specs for e in self.resolve(*parse_spec(spec))]

    def resolve(self, uri: str, name: str | None = None, checksum: bool = True,
                max_objects: int = MAX_OBJECTS, chunk_size: int = CHUNK_SIZE) -> list[Entry]:
        """The entries `uri` stands for, named `name` (a file) or under `name` (a prefix/directory)."""
        if not uri.startswith(SCHEMES):
            raise UsageError(f"unsupported reference {uri!r}: use s3://, http(s):// or file://")
        if not checksum:
            path = normalize_entry_path(name or _base_name(urllib.parse.urlparse(uri).path, uri))
            return [Entry(path, 0, None, ref=uri)]
        if uri.startswith("s3://"):
            return self._resolve_s3(uri, name, max_objects)
        if uri.startswith("file://"):
            return self._resolve_file(uri, name, max_objects, chunk_size)
        return [self._resolve_http(uri, name, chunk_size)]

    def _bucket(self, bucket: str):
        from .store.s3 import S3Store  # only reference users pay for boto3

        with self._lock:
            if bucket not in self._s3:
                self._s3[bucket] = S3Store(bucket, "", self.endpoint_url, self.timeout)
            return self._s3[bucket]

    def _s3_object(self, uri: str):
        """The client of the bucket an s3:// URI names, and the object's key in it."""
        bucket, _, key = uri[len("s3://"):].partition("/")
        return self._bucket(bucket), key

    def _resolve_s3(self, uri: str, name: str | None, max_objects: int) -> list[Entry]:
        bucket, _, key = uri[len("s3://"):].partition("/")
        if not bucket:
            raise UsageError(f"invalid reference {uri!r}: expected s3://bucket/key")
        s3 = self._bucket(bucket)
        if key and not key.endswith("/"):
            try:
                resp = s3._call(key, s3.client.head_object, Key=key)
                return [Entry(normalize_entry_path(name or _base_name(key, uri)), resp["ContentLength"], None,
                              ref=uri, etag=resp["ETag"], version_id=_version_id(resp))]
            except NotFound:
                key += "/"  # not an object: a prefix
        entries: list[Entry] = []
        token = None
        while True:
            kwargs = {"Prefix": key, "MaxKeys": 1000}
            if token:
                kwargs["ContinuationToken"] = token
            resp = s3._call(key, s3.client.list_objects_v2, **kwargs)
            for obj in resp.get("Contents", []):
                if obj["Key"].endswith("/"):
                    continue  # a "directory marker"
                if len(entries) >= max_objects:
                    raise UsageError(f"{uri} has more than {max_objects} objects; pass a larger max_objects "
                                     "or reference a narrower prefix")
                version_id = None
                if obj["Size"] and self._versioned(s3):
                    version_id = _version_id(s3._call(obj["Key"], s3.client.head_object, Key=obj["Key"]))
                entries.append(Entry(join_entry_path(name, obj["Key"][len(key):]), obj["Size"], None,
                                     ref=f"s3://{bucket}/{obj['Key']}", etag=obj["ETag"], version_id=version_id))
            if not resp.get("IsTruncated"):
                break
            token = resp.get("NextContinuationToken")
        if not entries:
            raise NotFound(f"reference {uri} matches no object")
        return entries

    def _versioned(self, s3) -> bool:
        if not hasattr(s3, "versioned"):
            try:
                s3.versioned = s3.client.get_bucket_versioning(Bucket=s3.bucket).get("Status") == "Enabled"
            except Exception:
                s3.versioned = False
        return s3.versioned

    def _resolve_http(self, uri: str, name: str | None, chunk_size: int) -> Entry:
        path = normalize_entry_path(name or _base_name(urllib.parse.urlparse(uri).path, uri))
        etag = length = None
        try:
            with self._open_http(uri, method="HEAD") as resp:
                etag = resp.headers.get("ETag")
                length = resp.headers.get("Content-Length")
        except StoreUnavailable as exc:
            if " 405 " not in str(exc) and " 501 " not in str(exc):
                raise  # a server that refuses HEAD is read with GET below; other failures are errors
        if etag and length is not None:
            return Entry(path, int(length), None, ref=uri, etag=etag)
        hasher = StreamHasher(chunk_size)  # no ETag: the content itself is what we can check later
        with self._open_http(uri) as resp:
            etag = resp.headers.get("ETag")
            while block := resp.read(1024 * 1024):
                hasher.update(block)
        size, digest, chunks = hasher.finish()
        return Entry(path, size, digest, tuple(chunks) if chunks else None, ref=uri, etag=etag)

    def _resolve_file(self, uri: str, name: str | None, max_objects: int, chunk_size: int) -> list[Entry]:
        local = self.policy.local_path(uri)
        if os.path.isdir(local):
            from .ingest import walk_directory

            files = walk_directory(local, name)
            if len(files) > max_objects:
                raise UsageError(f"{uri} has more than {max_objects} files; pass a larger max_objects")
            return [self._file_entry(f.path, f.source, chunk_size) for f in files]
        if not os.path.exists(local):
            raise NotFound(f"reference {uri}: no such file")
        return [self._file_entry(normalize_entry_path(name or os.path.basename(local)), local, chunk_size)]

    def _file_entry(self, path: str, local: str, chunk_size: int) -> Entry:
        uri = "file://" + urllib.parse.quote(os.path.abspath(local))
        self.policy.local_path(uri)  # each file of a directory too: a link in it may leave the roots
        try:
            size, digest, chunks = hash_file(local, chunk_size)
        except OSError as exc:
            raise LocalIOError(f"cannot read {local}: {exc.strerror}") from None
        return Entry(path, size, digest, tuple(chunks) if chunks else None, ref=uri)

    # ---- reading --------------------------------------------------------------------------------
    def read_range(self, uri: str, start: int, length: int, size: int, etag: str | None = None,
                   version_id: str | None = None) -> bytes:
        """Bytes [start, start+length) of the source, checked against what the commit recorded."""
        if uri.startswith("s3://"):
            data = self._read_s3(uri, start, length, size, etag, version_id)
        elif uri.startswith("file://"):
            data = self._read_file(uri, start, length, size)
        elif uri.startswith(("http://", "https://")):
            data = self._read_http(uri, start, length, size, etag)
        else:
            raise CorruptData(f"unsupported reference {uri!r} in manifest")
        if len(data) != length:
            raise _changed(uri, f"got {len(data)} bytes at offset {start}, expected {length}")
        return data

    def _read_s3(self, uri, start, length, size, etag, version_id) -> bytes:
        s3, key = self._s3_object(uri)
        kwargs = {"Key": key, "Range": f"bytes={start}-{start + length - 1}"}
        if etag:
            kwargs["IfMatch"] = etag
        if version_id:
            kwargs["VersionId"] = version_id
        try:
            resp = s3._call(key, s3.client.get_object, **kwargs)
        except NotFound:
            raise _changed(uri, "the object no longer exists") from None
        except PreconditionFailed:
            raise _changed(uri, f"its ETag is no longer {etag}") from None
        got_etag = resp.get("ETag")
        total = _total_size(resp.get("ContentRange"), resp.get("ContentLength"))
        if etag and got_etag and got_etag != etag:
            raise _changed(uri, f"ETag {got_etag} instead of {etag}")
        if total is not None and total != size:
            raise _changed(uri, f"size {total} instead of {size}")
        from .store.s3 import _read_body

        return _read_body(resp, f"s3://{s3.bucket}", key)

    def _read_file(self, uri, start, length, size) -> bytes:
        with _os_errors(uri, lambda: _changed(uri, "the file no longer exists")):
            fd = self.policy.open_local(uri)
        try:
            actual = os.fstat(fd).st_size
            if actual != size:
                raise _changed(uri, f"size {actual} instead of {size}")
            return os.pread(fd, length, start)
        finally:
            os.close(fd)

    def _read_http(self, uri, start, length, size, etag) -> bytes:
        headers = {"Range": f"bytes={start}-{start + length - 1}"}
        try:
            resp_cm = self._open_http(uri, headers=headers)
        except NotFound:
            raise _changed(uri, "the server answers 404") from None
        with resp_cm as resp:
            got_etag = resp.headers.get("ETag")
            if etag and got_etag != etag:
                raise _changed(uri, f"ETag {got_etag} instead of {etag}")
            if resp.status == 206:
                total = _total_size(resp.headers.get("Content-Range"), None)
                if total is not None and total != size:
                    raise _changed(uri, f"size {total} instead of {size}")
                return resp.read()
            body = resp.read()  # the server ignored Range: take our slice of the whole body
            if len(body) != size:
                raise _changed(uri, f"size {len(body)} instead of {size}")
            return body[start:start + length]

    def stream(self, uri: str) -> Iterator[bytes]:
        """The current content of an unchecked reference, in blocks."""
        if uri.startswith("s3://"):
            s3, key = self._s3_object(uri)
            yield s3.get(key)[0]
        elif uri.startswith("file://"):
            with _os_errors(uri):
                f = open(self.policy.open_local(uri), "rb")
            with f:
                while block := f.read(READ_BLOCK):
                    yield block
        else:
            with self._open_http(uri) as resp:
                while block := resp.read(READ_BLOCK):
                    yield block

    def current_size(self, uri: str) -> int:
        """The size of what an unchecked reference's source holds now (S3 HEAD, stat, HTTP HEAD)."""
        if uri.startswith("s3://"):
            s3, key = self._s3_object(uri)
            return int(s3._call(key, s3.client.head_object, Key=key)["ContentLength"])
        if uri.startswith("file://"):
            with _os_errors(uri):
                fd = self.policy.open_local(uri)
            try:
                return os.fstat(fd).st_size
            finally:
                os.close(fd)
        with self._open_http(uri, method="HEAD") as resp:
            length = resp.headers.get("Content-Length")
        if length is None or not length.isdigit():
            raise StoreUnavailable(f"reference {uri}: the server does not say its size")
        return int(length)

    def read_current(self, uri: str, start: int, length: int) -> bytes:
        """Up to `length` bytes at `start` of what an unchecked reference's source holds now: nothing is
        checked (there is nothing recorded to check against); short or empty past the source's end."""
        if length <= 0:
            return b""
        if uri.startswith("s3://"):
            s3, key = self._s3_object(uri)
            return s3.get_range(key, start, length)
        if uri.startswith("file://"):
            with _os_errors(uri):
                fd = self.policy.open_local(uri)
            try:
                return os.pread(fd, length, start)
            finally:
                os.close(fd)
        with self._open_http(uri, headers={"Range": f"bytes={start}-{start + length - 1}"}) as resp:
            body = resp.read()
            return body if resp.status == 206 else body[start:start + length]  # 200: Range ignored

    def check(self, entry: Entry, chunk_size: int = CHUNK_SIZE) -> str | None:
        """Why `entry`'s source no longer matches its record, or None if it does (for verify)."""
        if is_unchecked(entry) or entry.ref is None:
            return None
        uri = entry.ref
        try:
            if entry.digest is not None:  # file:// and http without ETag: re-hash the content
                hasher = StreamHasher(chunk_size)
                for start in range(0, entry.size, READ_BLOCK):
                    hasher.update(self.read_range(uri, start, min(READ_BLOCK, entry.size - start),
                                                  entry.size, entry.etag, entry.version_id))
                size, digest, _ = hasher.finish()
                if digest != entry.digest:
                    return f"reference {entry.ref} content no longer matches digest {entry.digest}"
                return None
            if entry.size:
                self.read_range(uri, 0, 1, entry.size, entry.etag, entry.version_id)
            elif uri.startswith("s3://"):
                s3, key = self._s3_object(uri)
                resp = s3._call(key, s3.client.head_object, Key=key)
                if resp["ETag"] != entry.etag or resp["ContentLength"] != 0:
                    return f"reference {entry.ref} changed since it was committed"
        except (CorruptData, PermissionDenied) as exc:
            return str(exc)
        except NotFound:
            return f"reference {entry.ref} no longer exists"
        return None

    # ---- http -----------------------------------------------------------------------------------
    def _open_http(self, uri: str, method: str = "GET", headers: dict | None = None):
        """The response to a request, a context manager (2xx, 416). Each hop goes to the address the
        policy checked (no second lookup), redirects included."""
        for _ in range(MAX_REDIRECTS + 1):
            host, port, address = self.policy.http_address(uri)
            parts = urllib.parse.urlsplit(uri)
            default = 443 if parts.scheme == "https" else 80
            target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
            try:
                resp = self._http_pool(parts.scheme, host, port, address).urlopen(
                    method, target, headers={"Host": host if port == default else f"{host}:{port}", **(headers or {})},
                    redirect=False, retries=False, preload_content=False)
            except urllib3.exceptions.HTTPError as exc:
                raise StoreUnavailable(f"reference {uri} is unreachable: {type(exc).__name__}") from None
            if resp.status in (301, 302, 303, 307, 308) and resp.headers.get("Location"):
                resp.close()
                uri = urllib.parse.urljoin(uri, resp.headers["Location"])
                if not uri.startswith(("http://", "https://")):
                    raise PermissionDenied(f"reference redirected to {uri}: only http(s) is followed")
                method = "GET" if resp.status == 303 else method
                continue
            if resp.status < 400 or resp.status == 416:
                return resp
            resp.close()
            if resp.status == 404:
                raise NotFound(f"reference {uri}: the server answers 404")
            if resp.status == 412:
                raise _changed(uri, "the server answers 412 Precondition Failed")
            raise StoreUnavailable(f"reference {uri}: the server answers {resp.status} {resp.reason}")
        raise StoreUnavailable(f"reference {uri}: more than {MAX_REDIRECTS} redirects")

    def _http_pool(self, scheme: str, host: str, port: int, address: str):
        with self._lock:
            key = (scheme, host, port, address)
            if key not in self._http:
                timeout = urllib3.Timeout(connect=min(self.timeout, 5.0), read=self.timeout)
                if scheme == "https":  # TLS checks the name, though the socket goes to the checked address
                    self._http[key] = urllib3.HTTPSConnectionPool(address, port, timeout=timeout, maxsize=8,
                                                                  server_hostname=host, assert_hostname=host)
                else:
                    self._http[key] = urllib3.HTTPConnectionPool(address, port, timeout=timeout, maxsize=8)
            return self._http[key]

    def close(self) -> None:
        with self._lock:
            for s3 in self._s3.values():
                s3.close()
            self._s3.clear()
            for pool in self._http.values():
                pool.close()
            self._http.clear()


def _version_id(resp: dict) -> str | None:
    vid = resp.get("VersionId")
    return vid if vid and vid != "null" else None


def _total_size(content_range: str | None, content_length) -> int | None:
    """The object's total size from `bytes a-b/TOTAL`, else None."""
    if content_range and "/" in content_range:
        total = content_range.rsplit("/", 1)[1]
        return int(total) if total.isdigit() else None
    return None


def verify_piece(uri: str, data: bytes, digest: str | None) -> bytes:
    """Check a piece that has a recorded digest (file:// and ETag-less http references)."""
    if digest and digest_bytes(data) != digest:
        raise _changed(uri, "its content no longer matches the recorded digest")
    return data
