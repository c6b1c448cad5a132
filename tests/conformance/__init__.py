"""Python ports of the OCI distribution-spec conformance suite.

Two generations of the official suite live in
github.com/opencontainers/distribution-spec, folder ``conformance/``:

* :mod:`tests.conformance.ginkgo_suite` -- the Ginkgo suite of the v1.1.x
  releases (``00_conformance_suite_test.go``, ``01_pull_test.go``,
  ``02_push_test.go``, ``03_discovery_test.go``, ``04_management_test.go``,
  ``setup.go``, ``image.go``, ``reporter.go``), driven by the ``OCI_TEST_*``
  environment switches.  Four ordered workflows, 79 specs.
* :mod:`tests.conformance.main_suite` -- the data-driven rewrite on ``main``
  (``main.go``, ``config.go``, ``run.go``, ``api.go``, ``testdata.go``,
  ``state.go``, ``results.go``), which adds sha512 digests, range requests,
  bad-digest uploads, more manifest shapes and referrer checks.

Both are ported statement by statement: same requests (methods, headers, body
framing, query encoding), same accepted status codes and headers, same order.
:mod:`tests.conformance.client` reproduces the parts of Go's ``net/http``
client behaviour that a registry can observe.

The trial entry point is ``tests/test_conformance.py``.
"""
