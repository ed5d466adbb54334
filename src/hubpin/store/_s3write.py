"""Blob writers of the S3 store: nothing becomes visible under `blobs/<etag>` before it verified.

Small blobs are spooled and PUT after verification; big ones go as a multipart upload whose
parts are sent while hashing and which is completed only after verification (else aborted).
"""

from __future__ import annotations

import tempfile
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from .base import BlobWriter

if TYPE_CHECKING:
    from .s3 import S3Store

__all__ = ["MultipartWriter", "SinglePutWriter", "is_boto_error"]

_SPOOL_IN_MEMORY = 8 * 1024 * 1024  # single-part blobs above this spill to a local temp file


class SinglePutWriter(BlobWriter):
    """Spool the bytes (memory, then a local temp file) and PUT them only once they verified."""

    def __init__(self, store: S3Store, key: str, what: str, etag: str, size: int, sha256: str | None) -> None:
        super().__init__(what, etag, size, sha256)
        self.store, self.key = store, key
        self._spool = tempfile.SpooledTemporaryFile(max_size=_SPOOL_IN_MEMORY)  # noqa: SIM115

    def _write(self, data: bytes | memoryview) -> None:
        self._spool.write(data)

    def _commit(self) -> None:
        try:
            self._spool.seek(0)
            self.store._call(
                "PutObject", self.key, self.store.client.put_object, Key=self.key, Body=self._spool,
                ContentLength=self.size,
            )
        finally:
            self._spool.close()

    def _abort(self) -> None:
        self._spool.close()


class MultipartWriter(BlobWriter):
    """Upload parts while hashing; complete the upload only after size and hashes matched.

    An uncompleted multipart upload is invisible under its key, so a failed or wrong blob
    never appears under `blobs/<etag>`; `_abort` also frees its parts.
    """

    def __init__(
        self, store: S3Store, key: str, part_size: int, what: str, etag: str, size: int, sha256: str | None
    ) -> None:
        super().__init__(what, etag, size, sha256)
        self.store, self.key, self.part_size = store, key, part_size
        resp = store._call("CreateMultipartUpload", key, store.client.create_multipart_upload, Key=key)
        self.upload_id: str = resp["UploadId"]
        self._buf = bytearray()
        self._pool = ThreadPoolExecutor(store.upload_concurrency, thread_name_prefix="hubpin-s3-part")
        self._pending: list[Future[dict[str, Any]]] = []
        self._parts: list[dict[str, Any]] = []

    def _write(self, data: bytes | memoryview) -> None:
        self._buf += data
        while len(self._buf) >= self.part_size:
            with memoryview(self._buf) as view:
                chunk = bytes(view[: self.part_size])  # one copy, released before the buffer shrinks
            del self._buf[: self.part_size]
            self._send(chunk)

    def _send(self, chunk: bytes) -> None:
        number = len(self._parts) + len(self._pending) + 1
        self._pending.append(self._pool.submit(self._upload_part, number, chunk))
        while len(self._pending) >= self.store.upload_concurrency:  # bounded memory: wait for the oldest
            self._parts.append(self._pending.pop(0).result())

    def _upload_part(self, number: int, chunk: bytes) -> dict[str, Any]:
        s = self.store
        resp = s._call(
            "UploadPart", self.key, s.client.upload_part, Key=self.key, UploadId=self.upload_id,
            PartNumber=number, Body=chunk,
        )
        return {"PartNumber": number, "ETag": resp["ETag"]}

    def _commit(self) -> None:
        try:
            if self._buf or not (self._parts or self._pending):
                self._send(bytes(self._buf))
                self._buf = bytearray()
            self._parts.extend(f.result() for f in self._pending)
            self._pending = []
            s = self.store
            s._call(
                "CompleteMultipartUpload", self.key, s.client.complete_multipart_upload, Key=self.key,
                UploadId=self.upload_id, MultipartUpload={"Parts": self._parts},
            )
        except BaseException:
            self._abort()
            raise
        finally:
            self._pool.shutdown(wait=True)

    def _abort(self) -> None:
        for f in self._pending:
            f.cancel()
        self._pool.shutdown(wait=True)
        self._pending = []
        self._buf = bytearray()
        try:
            self.store.client.abort_multipart_upload(Bucket=self.store.bucket, Key=self.key, UploadId=self.upload_id)
        except Exception as e:
            if not is_boto_error(e):
                raise
            # the upload stays invisible; a bucket lifecycle rule (AbortIncompleteMultipartUpload) reaps it


def is_boto_error(e: BaseException) -> bool:
    """True for botocore's client and transport errors (imported only when boto3 is in use)."""
    from botocore.exceptions import BotoCoreError, ClientError  # type: ignore[import-untyped]

    return isinstance(e, BotoCoreError | ClientError)
