"""PUTs of small blobs without boto3's per-request machinery: urllib3 plus botocore's SigV4 signer
(the same approach as store/s3_fastget.py for GETs). A commit of many small files is bound by CPU per
request on a small machine: boto3's put_object costs ~2 ms of CPU, this path a fraction of that.

Only for S3 stores with an explicit endpoint (SeaweedFS, MinIO, Ceph...) and static credentials;
`for_store` returns None otherwise and the caller uses the store's own put_file. Errors map to the
same exceptions as the store: 403 PermissionDenied; connection errors, timeouts, 5xx and 429 are
retried with backoff, then StoreUnavailable. Messages never include credentials.
"""

import os
import random
import time
from urllib.parse import quote

from ..errors import PermissionDenied, StoreUnavailable
from ..store import ObjectStore

ATTEMPTS = 3
SMALL = 8 * 1024 * 1024  # bigger blobs keep the store's multipart upload


class FastPut:
    def __init__(self, credentials, endpoint_url: str, bucket: str, prefix: str, region: str, url: str,
                 connections: int, timeout: float):
        import urllib3

        self._urllib3 = urllib3
        self._credentials = credentials
        self._region = region
        self._base = f"{endpoint_url.rstrip('/')}/{quote(bucket)}/"
        self._prefix = prefix
        self._url = url
        self._pool = urllib3.PoolManager(maxsize=connections, block=False, retries=False,
                                         timeout=urllib3.Timeout(connect=min(timeout, 5.0), read=timeout),
                                         ca_certs=os.environ.get("AWS_CA_BUNDLE") or None)

    @classmethod
    def for_store(cls, store: ObjectStore, connections: int = 16) -> "FastPut | None":
        client = getattr(store, "client", None)
        if client is None or not getattr(store, "bucket", None):
            return None
        endpoint = client.meta.endpoint_url
        if not endpoint or "amazonaws.com" in endpoint:
            return None  # AWS itself keeps the full client (virtual-host addressing, its retry rules)
        import boto3

        credentials = boto3.session.Session().get_credentials()
        if credentials is None:
            return None
        return cls(credentials, endpoint, store.bucket, store.prefix, client.meta.region_name, store.url,
                   connections, float(client.meta.config.read_timeout or 10))

    def put(self, key: str, data: bytes) -> None:
        from botocore.auth import S3SigV4Auth
        from botocore.awsrequest import AWSRequest

        url = self._base + quote(self._prefix + key, safe="/~")
        problem = ""
        for attempt in range(ATTEMPTS):
            if attempt:
                time.sleep(min(2.0, 0.1 * 2 ** attempt) * random.uniform(0.5, 1.0))
            request = AWSRequest(method="PUT", url=url, data=data,
                                 headers={"Content-Length": str(len(data)), "Content-Type": "application/octet-stream"})
            S3SigV4Auth(self._credentials.get_frozen_credentials(), "s3", self._region).add_auth(request)
            try:
                resp = self._pool.request("PUT", url, body=data, headers=dict(request.headers.items()),
                                          preload_content=True, redirect=False)
            except self._urllib3.exceptions.HTTPError as exc:
                problem = f"is unreachable: {type(exc).__name__}"
                continue
            if resp.status == 200:
                return
            if resp.status == 403:
                raise PermissionDenied(f"store {self._url} refused the upload of {key}: 403 "
                                       "(check the credentials and their permissions)")
            problem = f"failed on {key}: HTTP {resp.status}"
            if resp.status < 500 and resp.status != 429:
                break
        raise StoreUnavailable(f"store {self._url} {problem}")

    def close(self) -> None:
        self._pool.clear()
