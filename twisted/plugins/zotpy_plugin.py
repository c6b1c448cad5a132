"""twistd dropin: ``twistd -n zotpy -c config.json``.

Kept to a few lines so that scanning plugins stays cheap; the options and the
service live in :mod:`zotpy.tap`.
"""

from twisted.application.service import ServiceMaker

zotpy = ServiceMaker(
    "zotpy",
    "zotpy.tap",
    "A scale-out OCI container registry (zot-compatible configuration)",
    "zotpy",
)
