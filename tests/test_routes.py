"""The route table (zotpy.api.routes): what each request line matches, and that the Klein app,
the cluster's forwarding and the streaming of upload bodies agree with it."""

from __future__ import annotations

from twisted.trial import unittest

from zotpy.api import routes
from zotpy.api.registry import RegistryApp
from zotpy.cluster.routes import forwarded_repository

DIGEST = "sha256:" + "a" * 64


class MatchTests(unittest.TestCase):
    def test_kinds(self) -> None:
        cases = [
            ("GET", "/v2/", routes.BASE_ROUTE, None, routes.BASE),
            ("GET", "/v2/_catalog", routes.CATALOG, None, routes.LISTING),
            ("GET", "/v2/a/b/tags/list", routes.TAGS, "a/b", routes.LISTING),
            ("GET", f"/v2/a/manifests/{DIGEST}", routes.MANIFEST, "a", routes.READ_BY_DIGEST),
            ("HEAD", "/v2/a/manifests/v1", routes.MANIFEST, "a", routes.READ_BY_TAG),
            ("PUT", "/v2/a/manifests/v1", routes.MANIFEST, "a", routes.WRITE),
            ("DELETE", f"/v2/a/manifests/{DIGEST}", routes.MANIFEST, "a", routes.WRITE),
            ("POST", "/v2/a/blobs/uploads/", routes.UPLOAD_START, "a", routes.UPLOAD),
            ("PATCH", "/v2/a/blobs/uploads/u-1", routes.UPLOAD_SESSION, "a", routes.UPLOAD),
            ("GET", f"/v2/a/blobs/{DIGEST}", routes.BLOB, "a", routes.READ_BY_DIGEST),
            ("DELETE", f"/v2/a/blobs/{DIGEST}", routes.BLOB, "a", routes.WRITE),
            ("GET", f"/v2/a/referrers/{DIGEST}", routes.REFERRERS, "a", routes.LISTING),
        ]
        for method, path, route, repository, kind in cases:
            found = routes.match(method.encode(), path.encode())
            assert found is not None, path
            self.assertEqual((found.route, found.repository, found.kind), (route, repository, kind), path)

    def test_parameters(self) -> None:
        found = routes.match(b"PUT", b"/v2/a/b/blobs/uploads/u-1")
        assert found is not None
        self.assertEqual(dict(found.params), {"session": "u-1"})
        found = routes.match("GET", "/v2/x/manifests/v1")
        assert found is not None
        self.assertEqual(dict(found.params), {"reference": "v1"})

    def test_no_route_and_no_method(self) -> None:
        self.assertIsNone(routes.match(b"GET", b"/v3/"))
        self.assertIsNone(routes.match(b"GET", b"/v2/a/unknown/x"))
        found = routes.match(b"POST", f"/v2/a/blobs/{DIGEST}".encode())
        assert found is not None
        self.assertIsNone(found.kind)
        self.assertFalse(found.forwarded)

    def test_an_invalid_name_matches_without_a_repository(self) -> None:
        found = routes.match(b"GET", b"/v2/UPPER/tags/list")
        assert found is not None
        self.assertIs(found.route, routes.TAGS)
        self.assertIsNone(found.repository)
        self.assertFalse(found.forwarded)

    def test_percent_escapes_are_decoded_as_the_app_decodes_them(self) -> None:
        found = routes.match(b"GET", b"/v2/team%2Fapp/tags/list")
        assert found is not None
        self.assertEqual((found.route, found.repository, found.forwarded), (routes.TAGS, "team/app", True))
        found = routes.match(b"PUT", b"/v2/%74eam/manifests/v%31")
        assert found is not None
        self.assertEqual((found.repository, dict(found.params)), ("team", {"reference": "v1"}))
        found = routes.match(b"GET", b"/v2/team%252Fapp/tags/list")  # decoded once, as the app does
        assert found is not None
        self.assertIsNone(found.repository)
        # Bytes that are not UTF-8 read as U+FFFD, as the app reads them (zotpy.api.paths): in a
        # name they make it invalid; elsewhere the repository is still the one the API serves.
        for path in (b"/v2/%ff/tags/list", b"/v2/\xff/tags/list"):
            found = routes.match(b"GET", path)
            assert found is not None
            self.assertEqual((found.route, found.repository), (routes.TAGS, None), path)
        found = routes.match(b"GET", b"/v2/team/app/manifests/v%ff")
        assert found is not None
        self.assertEqual((found.repository, found.params["reference"], found.forwarded), ("team/app", "v\ufffd", True))


class AgreementTests(unittest.TestCase):
    def test_the_klein_app_serves_exactly_the_table(self) -> None:
        served: dict[str, set[str]] = {}
        for rule in RegistryApp.app.url_map.iter_rules():
            served.setdefault(rule.rule, set()).update(rule.methods or ())
        table = {route.pattern: set(route.kinds) for route in routes.ROUTES}
        self.assertEqual(served, table)

    def test_forwarded_pairs_are_zots_seventeen(self) -> None:
        self.assertEqual(sum(len(route.forwarded) for route in routes.ROUTES), 17)
        for route in routes.ROUTES:
            self.assertLessEqual(route.forwarded - {"OPTIONS"}, set(route.kinds), route.name)

    def test_forwarded_repository(self) -> None:
        self.assertEqual(forwarded_repository(b"HEAD", f"/v2/a/b/blobs/{DIGEST}".encode()), "a/b")
        self.assertEqual(forwarded_repository(b"OPTIONS", b"/v2/a/tags/list"), "a")
        self.assertIsNone(forwarded_repository(b"HEAD", b"/v2/a/tags/list"))
        self.assertIsNone(forwarded_repository(b"GET", b"/v2/_catalog"))
        self.assertIsNone(forwarded_repository(b"GET", f"/v2/Bad/blobs/{DIGEST}".encode()))
        self.assertEqual(forwarded_repository(b"GET", f"/v2/a%2Fb/blobs/{DIGEST}".encode()), "a/b")
