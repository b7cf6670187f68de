"""A store in an S3-compatible bucket, through boto3 (AWS S3, SeaweedFS, MinIO, Ceph).

One client is made up front and shared by all threads (boto3 clients are thread-safe). Conditional
writes use `IfNoneMatch="*"` and `IfMatch=etag`. Timeouts and retries are bounded so an unreachable
store is an error within seconds, not a hang. Foreign exceptions are translated here and nowhere else.
"""

import builtins
import contextlib
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import boto3
import botocore.exceptions
from botocore.config import Config

from ..errors import (
    ArtifactfsError,
    NotFound,
    ObjectNotFound,
    PermissionDenied,
    PreconditionFailed,
    StoreUnavailable,
    UnsupportedStore,
)
from ..layout import probe_key
from .base import CheckedSource, ObjectInfo, ObjectStore, PendingUpload
from .s3_lean import ATTEMPTS
from .s3_lean import MAX_PUT as MAX_LEAN_PUT

MULTIPART_THRESHOLD = 16 * 1024 * 1024
MULTIPART_CHUNK = 8 * 1024 * 1024
PARTS_IN_FLIGHT = 8  # per file: 64 MiB of parts in memory at most

# servers whose conditional writes were checked (endpoint, bucket), by this process
_conditional_writes_checked: set[tuple[str, str]] = set()
_conditional_lock = threading.Lock()
_NOT_FOUND = {"NoSuchKey", "404", "NotFound", "NoSuchUpload"}
_PRECONDITION = {"PreconditionFailed", "412", "ConditionalRequestConflict", "409"}
_DENIED = {"AccessDenied", "403", "InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken",
           "ExpiredToken", "AllAccessDisabled", "Forbidden"}


class S3Store(ObjectStore):
    def __init__(self, bucket: str, prefix: str = "", endpoint_url: str | None = None,
                 timeout: float = 10.0, max_connections: int = 64, region: str | None = None):
        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.url = f"s3://{bucket}/{self.prefix}"
        config = Config(  # as in s3_lean: `timeout` bounds a request with its retries, not each attempt
            connect_timeout=min(timeout / ATTEMPTS, 5.0),
            read_timeout=timeout / ATTEMPTS,
            retries={"mode": "standard", "max_attempts": ATTEMPTS},
            max_pool_connections=max_connections,
            tcp_keepalive=True,
        )
        try:
            session = boto3.session.Session()
            self.client = session.client("s3", endpoint_url=endpoint_url, config=config,
                                         region_name=region or session.region_name or "us-east-1")
        except botocore.exceptions.BotoCoreError as exc:
            raise StoreUnavailable(f"cannot set up S3 client for {self.url}: {exc}") from None
        self._lean = None  # GETs and small PUTs with less CPU per request (s3_lean.py), explicit endpoints only
        credentials = session.get_credentials()
        if endpoint_url and "amazonaws.com" not in endpoint_url and credentials is not None:
            from .s3_lean import LeanS3

            self._lean = LeanS3(credentials, endpoint_url, bucket, self.client.meta.region_name,
                                timeout, max_connections, self.url)
        self._lock = threading.Lock()

    def _key(self, key: str) -> str:
        return self.prefix + key

    def use_buffers(self, pool) -> None:
        """Receive large ranged GETs into reused aligned buffers (buffers.BufferPool); get_range then
        returns memoryviews for them. Only on the lean path (explicit endpoints)."""
        if self._lean is not None:
            self._lean.buffers = pool

    def _call(self, key: str, fn, **kwargs):
        try:
            return fn(Bucket=self.bucket, **kwargs)
        except Exception as exc:  # translated at this edge only
            raise translate(exc, self.url, key) from None

    def get(self, key: str) -> tuple[bytes, str]:
        if self._lean is not None:
            return self._lean.get(key, self._key(key))
        resp = self._call(key, self.client.get_object, Key=self._key(key))
        return _read_body(resp, self.url, key), resp["ETag"]

    def get_range(self, key: str, start: int, length: int) -> bytes | memoryview:
        if length <= 0:
            return b""
        if self._lean is not None:
            return self._lean.get_range(key, self._key(key), start, length)
        resp = self._call(key, self.client.get_object, Key=self._key(key),
                          Range=f"bytes={start}-{start + length - 1}")
        return _read_body(resp, self.url, key)

    def put(self, key: str, data: bytes) -> str:
        self._check_conditional_writes()
        if self._lean is not None and len(data) <= MAX_LEAN_PUT:
            return self._lean.put(key, self._key(key), data)
        return self._call(key, self.client.put_object, Key=self._key(key), Body=data)["ETag"]

    def put_file(self, key: str, path: str, size: int, digest: str | None = None) -> None:
        self._check_conditional_writes()
        with CheckedSource(path, size, digest) as source:
            if size < MULTIPART_THRESHOLD:  # read whole (at most 16 MiB), checked, then one PUT
                self.put(key, source.read_all())
            else:
                self._multipart(key, source)

    def _multipart(self, key: str, source: CheckedSource) -> None:
        """Upload in parts read in order (so they are hashed as they are read) and sent in parallel;
        the object only appears at the final call, which is made once the whole file checked out:
        anything else aborts the upload."""
        full = self._key(key)
        upload_id = self._call(key, self.client.create_multipart_upload, Key=full)["UploadId"]
        try:
            parts = []
            with ThreadPoolExecutor(PARTS_IN_FLIGHT) as pool:
                pending: list = []
                while data := source.read(MULTIPART_CHUNK):
                    if len(pending) >= PARTS_IN_FLIGHT:  # bounded memory: wait for the oldest
                        parts.append(pending.pop(0).result())
                    pending.append(pool.submit(self._part, key, full, upload_id, len(parts) + len(pending) + 1,
                                               data))
                parts += [f.result() for f in pending]
            source.check()
            self._call(key, self.client.complete_multipart_upload, Key=full, UploadId=upload_id,
                       MultipartUpload={"Parts": parts})
        except BaseException:
            with contextlib.suppress(Exception):  # the store's own cleanup of stale uploads takes it then
                self.client.abort_multipart_upload(Bucket=self.bucket, Key=full, UploadId=upload_id)
            raise

    def _part(self, key: str, full: str, upload_id: str, number: int, data: bytes) -> dict:
        etag = self._call(key, self.client.upload_part, Key=full, UploadId=upload_id, PartNumber=number,
                          Body=data)["ETag"]
        return {"ETag": etag, "PartNumber": number}

    def put_if_absent(self, key: str, data: bytes) -> str:
        self._check_conditional_writes()
        return self._call(key, self.client.put_object, Key=self._key(key), Body=data, IfNoneMatch="*")["ETag"]

    def put_if_match(self, key: str, data: bytes, etag: str) -> str:
        self._check_conditional_writes()
        try:
            return self._call(key, self.client.put_object, Key=self._key(key), Body=data, IfMatch=etag)["ETag"]
        except ObjectNotFound:  # AWS S3 (and moto) answer 404 when the key is gone: it changed
            raise PreconditionFailed(key) from None

    def _check_conditional_writes(self) -> None:
        """Before the first write to a server (once per process): UnsupportedStore if it does not
        honour conditional writes. A server that ignores If-None-Match or If-Match would let two
        writers both "win" a version number or an alias, so nothing is written there at all, not even
        the blobs a commit uploads first (docs/FORMAT.md). Reads never need it."""
        server = (self.client.meta.endpoint_url, self.bucket)
        if server in _conditional_writes_checked:
            return
        with _conditional_lock:
            if server not in _conditional_writes_checked:
                self._probe_conditional_writes()
                _conditional_writes_checked.add(server)

    def _probe_conditional_writes(self) -> None:
        key = probe_key(uuid.uuid4().hex)
        full = self._key(key)
        refused = None
        try:
            self._call(key, self.client.put_object, Key=full, Body=b"probe", IfNoneMatch="*")
            for header, condition in (("If-None-Match: *", {"IfNoneMatch": "*"}),
                                      ("If-Match", {"IfMatch": '"00000000000000000000000000000000"'})):
                try:
                    self.client.put_object(Bucket=self.bucket, Key=full, Body=b"again", **condition)
                    refused = f"a PutObject with {header} that should have failed succeeded"
                except botocore.exceptions.ClientError as exc:
                    if not isinstance(translate(exc, self.url, key), PreconditionFailed):
                        refused = f"a PutObject with {header} was answered {_code(exc)}, not 412"
                except Exception as exc:
                    raise translate(exc, self.url, key) from None
                if refused:
                    break
        finally:
            with contextlib.suppress(Exception):
                self.client.delete_object(Bucket=self.bucket, Key=full)
        if refused:
            raise UnsupportedStore(
                f"{self.url}: the S3 server does not honour conditional writes ({refused}); artifactfs "
                "needs them to keep versions and aliases safe among writers, so it writes nothing there "
                "(reading works). Use a server that has them: AWS S3, SeaweedFS, MinIO, Ceph RGW 19+")

    def head(self, key: str) -> ObjectInfo:
        resp = self._call(key, self.client.head_object, Key=self._key(key))
        return ObjectInfo(key, resp["ContentLength"], resp["ETag"], resp["LastModified"].timestamp())

    def list(self, prefix: str, start_after: str = "") -> Iterator[ObjectInfo]:
        token = None
        while True:
            kwargs = {"Prefix": self._key(prefix), "MaxKeys": 1000}
            if start_after and not token:
                kwargs["StartAfter"] = self._key(start_after)
            if token:
                kwargs["ContinuationToken"] = token
            resp = self._call(prefix, self.client.list_objects_v2, **kwargs)
            for obj in resp.get("Contents", []):
                yield ObjectInfo(obj["Key"][len(self.prefix):], obj["Size"], obj.get("ETag", ""),
                                 obj["LastModified"].timestamp())
            if not resp.get("IsTruncated"):
                return
            token = resp.get("NextContinuationToken")

    def pending_uploads(self) -> "builtins.list[PendingUpload]":
        """Multipart uploads begun under this store's prefix and never completed or aborted."""
        found = []
        try:
            pages = self.client.get_paginator("list_multipart_uploads").paginate(Bucket=self.bucket,
                                                                                 Prefix=self.prefix)
            for page in pages:
                for upload in page.get("Uploads", []):
                    key, upload_id = upload["Key"], upload["UploadId"]
                    size = sum(part.get("Size", 0) for part in self._parts(key, upload_id))
                    found.append(PendingUpload(key[len(self.prefix):], upload_id,
                                               upload["Initiated"].timestamp(), size))
        except Exception as exc:
            raise translate(exc, self.url, "multipart uploads") from None
        return found

    def _parts(self, full: str, upload_id: str) -> Iterator[dict]:
        pages = self.client.get_paginator("list_parts").paginate(Bucket=self.bucket, Key=full, UploadId=upload_id)
        for page in pages:
            yield from page.get("Parts", [])

    def abort_upload(self, upload: PendingUpload) -> None:
        full = self._key(upload.key)
        with contextlib.suppress(ObjectNotFound):  # completed or aborted meanwhile
            self._call(upload.key, self.client.abort_multipart_upload, Key=full, UploadId=upload.upload_id)

    def list_dirs(self, prefix: str) -> "builtins.list[str]":  # (the method `list` shadows the type here)
        if self._lean is not None:
            return self._lean.list_dirs(prefix, self._key(prefix))
        names, token = [], None
        while True:
            kwargs = {"Prefix": self._key(prefix), "Delimiter": "/", "MaxKeys": 1000}
            if token:
                kwargs["ContinuationToken"] = token
            resp = self._call(prefix, self.client.list_objects_v2, **kwargs)
            start = len(self._key(prefix))
            names += [p["Prefix"][start:].rstrip("/") for p in resp.get("CommonPrefixes", [])]
            if not resp.get("IsTruncated"):
                return sorted(names)
            token = resp.get("NextContinuationToken")

    def delete(self, key: str) -> None:
        self._call(key, self.client.delete_object, Key=self._key(key))

    def close(self) -> None:
        if self._lean is not None:
            self._lean.close()
        self.client.close()


def _read_body(resp, url: str, key: str) -> bytes:
    try:
        return resp["Body"].read()
    except Exception as exc:
        raise translate(exc, url, key) from None


def _code(exc: botocore.exceptions.ClientError) -> str:
    response = exc.response
    return str(response.get("Error", {}).get("Code") or response.get("ResponseMetadata", {}).get("HTTPStatusCode"))


def translate(exc: Exception, url: str, key: str) -> ArtifactfsError:
    """Map a boto3/botocore exception to ours. Messages never include credentials."""
    if isinstance(exc, ArtifactfsError):
        return exc
    if isinstance(exc, botocore.exceptions.ClientError):
        err = exc.response.get("Error", {})
        code = str(err.get("Code", ""))
        status = str(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", ""))
        if code in _PRECONDITION or status in _PRECONDITION:
            return PreconditionFailed(key)
        if code == "NoSuchBucket":
            return NotFound(f"bucket of {url} does not exist")
        if code in _NOT_FOUND or status == "404":
            return ObjectNotFound(key)
        if code in _DENIED or status == "403":
            return PermissionDenied(f"store {url} refused the request for {key}: {code or status} "
                                    "(check the credentials and their permissions)")
        if status.startswith("5") or code in ("SlowDown", "ServiceUnavailable", "InternalError"):
            return StoreUnavailable(f"store {url} failed on {key}: {code or status}")
        return StoreUnavailable(f"store {url} error on {key}: {code} {err.get('Message', '')}".strip())
    if isinstance(exc, botocore.exceptions.NoCredentialsError):
        return PermissionDenied(f"no S3 credentials found for {url} (set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY "
                                "or a profile)")
    if isinstance(exc, (botocore.exceptions.EndpointConnectionError, botocore.exceptions.ConnectTimeoutError,
                        botocore.exceptions.ReadTimeoutError, botocore.exceptions.ConnectionClosedError,
                        botocore.exceptions.ResponseStreamingError)):
        return StoreUnavailable(f"store {url} is unreachable: {type(exc).__name__}")
    if isinstance(exc, (botocore.exceptions.BotoCoreError, OSError)):
        return StoreUnavailable(f"store {url} failed: {type(exc).__name__}: {exc}")
    return StoreUnavailable(f"store {url} failed: {type(exc).__name__}")
