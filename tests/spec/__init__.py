"""zotpy's own OCI Distribution Specification v1.1 test matrix.

Each module holds the behaviours of one area of the spec (pull, push, uploads, manifests, referrers,
listing, delete, errors, ranges) as a mixin of ``test_*`` methods, written once. :mod:`tests.spec.matrix`
turns every mixin into one trial TestCase per :class:`~tests.spec.deployments.Variant`: digest algorithm
(sha256, sha512) x storage (local disk, S3 on SeaweedFS) x path (straight to one daemon, or through a
replica of a three-member cluster that does not own the repository). So a module reads as a table of
behaviours, and every behaviour is checked everywhere. :mod:`tests.spec.test_access` shows the hook for
other configurations: variants carrying zot config (auth, access control, a rate limit) and request
headers (credentials), for the error codes only those provoke; :mod:`tests.spec.test_auth_matrix` runs
the whole matrix with htpasswd auth and with bearer tokens (credentials that follow the registry's
challenges: :attr:`~tests.spec.deployments.Variant.credentials`).

The daemons are real ``twistd -n zotpy`` processes, started once per deployment and test process (see
:mod:`tests.spec.deployments`), so the whole matrix runs in about a minute.

Run: ``python -m twisted.trial tests.spec``
"""
