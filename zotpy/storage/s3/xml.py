"""S3's XML: reading the replies the driver needs and writing the two request bodies it sends.

S3 answers in namespaced XML (``http://s3.amazonaws.com/doc/2006-03-01/``); servers that imitate it
sometimes omit the namespace, so elements are matched by local name only. Parsing uses the standard
library: the replies come from the configured S3 endpoint, and CPython's expat refuses entity
expansion attacks by itself, so defusedxml would add a dependency without adding safety here.
"""

from __future__ import annotations

import datetime
from typing import Iterable, Iterator
from urllib.parse import unquote
from xml.etree import ElementTree
from xml.sax.saxutils import escape

import attrs

S3_NAMESPACE = "http://s3.amazonaws.com/doc/2006-03-01/"


class MalformedReply(ValueError):
    """The server answered something that is not the XML document the operation returns."""


@attrs.frozen
class ErrorReply:
    code: str
    message: str


@attrs.frozen
class ListedObject:
    key: str
    size: int
    #: LastModified, POSIX seconds (None if the server left it out).
    modified: float | None = None


@attrs.frozen
class Listing:
    """One page of ListObjectsV2: objects, common prefixes (directories) and where to continue."""

    objects: tuple[ListedObject, ...]
    prefixes: tuple[str, ...]
    continuation: str | None


@attrs.frozen
class Part:
    number: int
    etag: str
    size: int


@attrs.frozen
class PartsPage:
    parts: tuple[Part, ...]
    next_marker: int | None


@attrs.frozen
class PendingUpload:
    key: str
    upload_id: str
    #: When the multipart upload was initiated, POSIX seconds (None if the server left it out).
    initiated: float | None = None


@attrs.frozen
class UploadsPage:
    uploads: tuple[PendingUpload, ...]
    next_key_marker: str | None
    next_upload_id_marker: str | None


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _parse(body: bytes) -> ElementTree.Element:
    try:
        return ElementTree.fromstring(body)
    except ElementTree.ParseError as error:
        raise MalformedReply(f"not XML ({error}): {body[:200]!r}") from None


def _children(element: ElementTree.Element, name: str) -> Iterator[ElementTree.Element]:
    return (child for child in element if _local(child.tag) == name)


def _text(element: ElementTree.Element, name: str, default: str | None = None) -> str:
    for child in _children(element, name):
        return child.text or ""
    if default is None:
        raise MalformedReply(f"<{_local(element.tag)}> has no <{name}>")
    return default


def _time(element: ElementTree.Element, name: str) -> float | None:
    """An ISO 8601 timestamp element (``2026-12-05T17:00:00.000Z``) as POSIX seconds."""
    text = _text(element, name, "").strip()
    if not text:
        return None
    try:
        return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _truncated(element: ElementTree.Element) -> bool:
    return _text(element, "IsTruncated", "false").strip().lower() == "true"


def parse_error(body: bytes) -> ErrorReply | None:
    """The ``<Error>`` document of a failed call, or None when ``body`` is not one.

    CopyObject, UploadPartCopy and CompleteMultipartUpload may answer 200 and still carry an
    ``<Error>``: callers check their 200 replies with this too.
    """
    if b"<Error" not in body[:512]:
        return None
    try:
        root = _parse(body)
    except MalformedReply:
        return None
    if _local(root.tag) != "Error":
        return None
    return ErrorReply(_text(root, "Code", "").strip(), _text(root, "Message", "").strip())


def parse_listing(body: bytes, url_encoded: bool) -> Listing:
    """A ListObjectsV2 page; ``url_encoded`` when the request asked for ``encoding-type=url``."""
    root = _parse(body)
    decode = unquote if url_encoded else (lambda text: text)
    objects = tuple(
        ListedObject(decode(_text(entry, "Key")), int(_text(entry, "Size", "0")), _time(entry, "LastModified"))
        for entry in _children(root, "Contents")
    )
    prefixes = tuple(decode(_text(entry, "Prefix")) for entry in _children(root, "CommonPrefixes"))
    continuation = _text(root, "NextContinuationToken", "") if _truncated(root) else ""
    return Listing(objects, prefixes, continuation or None)


def parse_upload_id(body: bytes) -> str:
    """The UploadId of an InitiateMultipartUploadResult."""
    upload_id = _text(_parse(body), "UploadId").strip()
    if not upload_id:
        raise MalformedReply("empty UploadId")
    return upload_id


def parse_parts(body: bytes) -> PartsPage:
    root = _parse(body)
    parts = tuple(
        Part(int(_text(entry, "PartNumber")), _text(entry, "ETag").strip(), int(_text(entry, "Size")))
        for entry in _children(root, "Part")
    )
    marker = _text(root, "NextPartNumberMarker", "").strip() if _truncated(root) else ""
    return PartsPage(parts, int(marker) if marker else None)


def parse_uploads(body: bytes, url_encoded: bool) -> UploadsPage:
    root = _parse(body)
    decode = unquote if url_encoded else (lambda text: text)
    uploads = tuple(
        PendingUpload(decode(_text(entry, "Key")), _text(entry, "UploadId").strip(), _time(entry, "Initiated"))
        for entry in _children(root, "Upload")
    )
    if not _truncated(root):
        return UploadsPage(uploads, None, None)
    return UploadsPage(
        uploads, decode(_text(root, "NextKeyMarker", "")), _text(root, "NextUploadIdMarker", "") or None
    )


def parse_copy_etag(body: bytes) -> str:
    """The ETag of a CopyObjectResult or CopyPartResult."""
    etag = _text(_parse(body), "ETag").strip()
    if not etag:
        raise MalformedReply("copy result without an ETag")
    return etag


def parse_delete_failures(body: bytes) -> list[ErrorReply]:
    """The keys a DeleteObjects call could not delete (quiet mode lists only those)."""
    root = _parse(body)
    return [
        ErrorReply(_text(entry, "Code", ""), f"{_text(entry, 'Key', '')}: {_text(entry, 'Message', '')}")
        for entry in _children(root, "Error")
    ]


def complete_body(parts: Iterable[tuple[int, str]]) -> bytes:
    """The CompleteMultipartUpload request body for (part number, ETag) pairs in order."""
    items = "".join(
        f"<Part><PartNumber>{number}</PartNumber><ETag>{escape(etag)}</ETag></Part>" for number, etag in parts
    )
    return f'<CompleteMultipartUpload xmlns="{S3_NAMESPACE}">{items}</CompleteMultipartUpload>'.encode()


def delete_body(keys: Iterable[str]) -> bytes:
    """A quiet DeleteObjects request body (at most 1000 keys, the caller's job)."""
    items = "".join(f"<Object><Key>{escape(key)}</Key></Object>" for key in keys)
    return f'<Delete xmlns="{S3_NAMESPACE}"><Quiet>true</Quiet>{items}</Delete>'.encode()
