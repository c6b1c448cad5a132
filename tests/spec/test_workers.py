"""The spec matrix against a replica of two worker processes sharing its socket (``--workers 2``):
pull, push, uploads and manifests, on local disk and on S3 (sha256, direct; the cluster and digest
columns do not meet the worker code). Every request goes on a new connection, which the kernel hands
to either worker: an upload session started on one worker goes on on whichever accepts the next."""

from __future__ import annotations

import attr

from tests.integration.cluster import RegistryClient
from tests.spec.deployments import DIRECT, VARIANTS
from tests.spec.matrix import variants_of
from tests.spec.test_manifests import ManifestBehaviours
from tests.spec.test_pull import PullBehaviours
from tests.spec.test_push import PushBehaviours
from tests.spec.test_uploads import UploadBehaviours

WORKER_VARIANTS = tuple(
    attr.evolve(v, workers=2, label="Workers") for v in VARIANTS if v.algorithm == "sha256" and v.path == DIRECT
)



class _NewConnections:
    """Each request on a connection of its own (the matrix's client keeps one open per test)."""

    async def setUp(self) -> None:
        await super().setUp()  # type: ignore[misc]
        self.client = RegistryClient(persistent=False)
        self.addCleanup(self.client.close)  # type: ignore[attr-defined]


for _behaviours in (ManifestBehaviours, PullBehaviours, PushBehaviours, UploadBehaviours):
    for _name, _case in variants_of(_behaviours, WORKER_VARIANTS).items():
        # trial -j loads each test by module and class name: the class is made here, in full
        globals()[_name] = type(_name, (_NewConnections,) + _case.__bases__, {**vars(_case), "__module__": __name__})
del _behaviours, _name, _case  # not a TestCase of this module: trial would run it under its own
