"""Object stores: `open_store(url)` picks the backend from the URL."""

import os
import re

from ..errors import UsageError
from .base import ObjectInfo, ObjectStore
from .local import LocalStore

__all__ = ["ObjectInfo", "ObjectStore", "LocalStore", "open_store"]


def open_store(url: str, endpoint_url: str | None = None, timeout: float = 10.0) -> ObjectStore:
    """`s3://bucket[/prefix]` (endpoint from the argument or AWS_ENDPOINT_URL), a `file://` URL or a path."""
    if url.startswith("s3://"):
        from .s3 import S3Store  # only S3 users pay for importing boto3

        bucket, _, prefix = url[len("s3://"):].partition("/")
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,254}", bucket):
            raise UsageError(f"invalid store URL {url!r}: expected s3://bucket[/prefix] (a bucket name is "
                             "letters, digits, '.', '-' and '_')")
        return S3Store(bucket, prefix, endpoint_url or os.environ.get("AWS_ENDPOINT_URL") or None, timeout)
    if url.startswith("file://"):
        url = url[len("file://"):]
    if "://" in url:
        raise UsageError(f"unsupported store URL {url!r}: use a directory path or s3://bucket/prefix")
    return LocalStore(url)
