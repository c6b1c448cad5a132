"""``storage.redirectBlobURL`` end to end: a real daemon on SeaweedFS answers a whole-blob GET with a
307 to a presigned URL of the object, which skopeo and a plain client follow; ranges and HEADs are
served as before; the URL holds no secret, is never logged, and stops working when it expires.
"""

from __future__ import annotations

import os
from urllib.parse import parse_qs, urlsplit

from twisted.internet import reactor
from twisted.internet.task import deferLater
from twisted.internet.utils import getProcessOutputAndValue
from twisted.trial import unittest

from tests.integration.cluster import RegistryClient, log_records, oci_error_codes, raw_request, small_image
from tests.integration.daemon import ZotpyDaemon, require_binary, tail
from tests.integration.test_s3_driver import s3_driver
from tests.seaweed import SECRET_KEY, shared_server

NAME = "redirect/app"


class RedirectTests(unittest.TestCase):
    timeout = 120

    async def test_whole_blob_gets_are_redirected_to_the_bucket(self) -> None:
        skopeo = require_binary("skopeo", "skopeo")
        storage = shared_server().storage_driver()
        daemon = ZotpyDaemon(self.mktemp(), {"storage": {"storageDriver": storage, "redirectBlobURL": True}})
        await daemon.start()
        self.addCleanup(daemon.stop)
        client = RegistryClient()
        self.addCleanup(client.close)
        image = small_image(NAME, layer_sizes=(300_000,))
        await client.push_image(daemon.base_url, NAME, image, "v1")
        layer = list(image.blobs)[1]
        url = f"{daemon.base_url}/v2/{NAME}/blobs/{layer}"

        redirected = await raw_request("GET", url)  # http.client: follows no redirect
        self.assertEqual((redirected.status, redirected.body), (307, b""), redirected.headers)
        headers = redirected.header_map()
        self.assertEqual(headers["docker-content-digest"], [layer])
        location = headers["location"][0]
        self.assertTrue(location.startswith(shared_server().endpoint + "/"), location)
        query = parse_qs(urlsplit(location).query)
        self.assertEqual(query["X-Amz-Algorithm"], ["AWS4-HMAC-SHA256"])
        self.assertEqual(query["X-Amz-Expires"], ["1200"])
        self.assertNotIn(SECRET_KEY, location)
        fetched = await raw_request("GET", location)
        self.assertEqual((fetched.status, fetched.body), (200, image.blobs[layer]))
        # treq follows redirects, as clients do.
        self.assertEqual(await client.pull_blob(daemon.base_url, NAME, layer), image.blobs[layer])

        # Ranges and HEADs are answered by the registry; a blob the repository lacks is unknown.
        ranged = await client.expect(206, "GET", url, {"Range": "bytes=100-199"})
        self.assertEqual(ranged.body, image.blobs[layer][100:200])
        head = await client.expect(200, "HEAD", url)
        self.assertEqual(head.header("Content-Length"), str(len(image.blobs[layer])))
        missing = await client.request("GET", f"{daemon.base_url}/v2/{NAME}/blobs/sha256:{'0' * 64}")
        self.assertEqual((missing.code, oci_error_codes(missing)), (404, ["BLOB_UNKNOWN"]))
        other = await client.request("GET", f"{daemon.base_url}/v2/redirect/other/blobs/{layer}")
        self.assertEqual(oci_error_codes(other), ["BLOB_UNKNOWN"])

        # skopeo pulls the image through the redirects (dir: keeps the layer as sent, uncompressed).
        before = _redirects(daemon, layer)
        work = os.path.abspath(self.mktemp())
        os.makedirs(work)
        env = {**os.environ, "HOME": work, "REGISTRY_AUTH_FILE": os.path.join(work, "auth.json")}
        argv = ["--insecure-policy", "copy", "--src-tls-verify=false", "--src-no-creds",
                f"docker://{daemon.hostport}/{NAME}:v1", f"dir:{work}/pulled"]
        out, err, code = await getProcessOutputAndValue(skopeo, argv, env=env, path=work)
        self.assertEqual(code, 0, f"skopeo: {tail(err.decode(errors='replace'))}\n{daemon.describe()}")
        with open(os.path.join(work, "pulled", layer.split(":")[1]), "rb") as stream:
            self.assertEqual(stream.read(), image.blobs[layer])
        self.assertEqual(_redirects(daemon, layer), before + 1)

        # Nothing the daemon logged holds the signature (or the secret).
        signature = query["X-Amz-Signature"][0]
        log = daemon.log_text()
        self.assertNotIn(signature, log)
        self.assertNotIn(SECRET_KEY, log)

    async def test_an_expired_url_is_refused_by_the_storage(self) -> None:
        driver = s3_driver(self)
        driver.redirect_seconds = 1
        await driver.put_content("r/blob", b"bytes")
        location = await driver.redirect_url("r/blob")
        assert location is not None
        client = RegistryClient()
        self.addCleanup(client.close)
        self.assertEqual((await client.expect(200, "GET", location)).body, b"bytes")
        await deferLater(reactor, 2.5, lambda: None)
        expired = await client.request("GET", location)
        self.assertEqual(expired.code, 403, expired.body[:300])
        self.assertIn(b"expired", expired.body.lower(), expired.body[:300])


def _redirects(daemon: ZotpyDaemon, digest: str) -> int:
    """How many GETs of the blob the daemon's access log shows answered 307."""
    return sum(
        1 for record in log_records(daemon.log_text(), strict=False)
        if record.get("statusCode") == 307 and record.get("path") == f"/v2/{NAME}/blobs/{digest}"
    )
