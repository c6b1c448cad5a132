"""Which storage driver a configuration asks for: the one place that knows every driver.

``storage.storageDriver`` with name ``"s3"`` selects :class:`S3Driver` (``storage.rootDirectory`` is
then unused: zot keeps a local cache there, zotpy needs none); otherwise repositories live on local
disk under ``storage.rootDirectory``.
"""

from __future__ import annotations

import os
from typing import Any

from twisted.python.threadpool import ThreadPool

from zotpy.config import Config
from zotpy.storage.driver import IStorageDriver
from zotpy.storage.local import LocalDriver
from zotpy.storage.s3.driver import S3Driver


def make_driver(config: Config, reactor: Any, pool: ThreadPool) -> IStorageDriver:
    """The driver for ``config``, its bulk work in ``pool``. Creating it does not touch S3 (the
    endpoint and credentials are resolved in the pool on first use), so startup stays fast."""
    if config.storage.s3 is not None:
        return S3Driver(config.storage.s3, reactor, pool)
    root = os.path.abspath(config.storage.root_directory)
    os.makedirs(root, exist_ok=True)
    return LocalDriver(root, reactor, pool)


def describe_storage(config: Config) -> str:
    """Where repositories are stored, for the startup log line."""
    s3 = config.storage.s3
    if s3 is None:
        return f"storage at {os.path.abspath(config.storage.root_directory)}"
    where = s3.endpoint or f"AWS region {s3.region}"
    root = s3.root_directory.strip("/")
    return f"storage in S3 bucket {s3.bucket!r}" + (f" under {root!r}" if root else "") + f" at {where}"
