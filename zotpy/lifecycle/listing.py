"""What a repository stores under ``blobs/``, read from the driver's listing.

Garbage collection ages and removes these objects; dedupe's warm-up tells its locator about them.
Both read the same two levels (``blobs/<algorithm>/<encoded>``), so the walk lives here once.
"""

from __future__ import annotations

from zotpy.oci.digest import Digest, parse_digest
from zotpy.oci.errors import RegistryError
from zotpy.storage.driver import FileInfo, IStorageDriver, PathNotFound

#: Names of the files an atomic write keeps until it completes (left behind by a killed writer).
TEMPORARY_PREFIX = ".tmp-"


async def stored_blobs(driver: IStorageDriver, repo: str) -> dict[str, FileInfo]:
    """Every object under ``<repo>/blobs``, by digest (``sha256:<hex>``); the leftovers of
    interrupted writes (``.tmp-*``) by their path. Empty when the repository has no blobs."""
    found: dict[str, FileInfo] = {}
    try:
        algorithms = await driver.list(f"{repo}/blobs")
    except PathNotFound:
        return found
    for algorithm in algorithms:
        if not algorithm.is_dir:
            continue
        try:
            children = await driver.list(algorithm.path)
        except PathNotFound:
            continue
        name = algorithm.path.rsplit("/", 1)[-1]
        for child in children:
            encoded = child.path.rsplit("/", 1)[-1]
            if not child.is_dir:
                found[child.path if encoded.startswith(TEMPORARY_PREFIX) else f"{name}:{encoded}"] = child
    return found


def blob_digest(name: str) -> Digest | None:
    """The digest a :func:`stored_blobs` key names; None for a leftover or a stray file."""
    if ":" not in name:
        return None
    try:
        return parse_digest(name)
    except RegistryError:
        return None  # not a blob zotpy wrote: nothing to locate
