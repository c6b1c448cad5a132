"""A Docker token service for tests: ``GET /token?service=S&scope=repository:NAME:pull,push``
with Basic credentials answers ``{"token": <JWT>, "access_token": <JWT>}``, the JWT signed (ES256)
with a key generated here and granting what the user's rules allow of what was asked.

The registry verifies with :attr:`TokenService.cert_path` (``http.auth.bearer.cert``)."""

from __future__ import annotations

import base64
import json
import os
import time
from typing import Any, Mapping

import jwt
from twisted.web.resource import Resource

from tests.certs import CertificateAuthority
from tests.support import serve


class TokenService(Resource):
    isLeaf = True

    def __init__(self, directory: str, users: Mapping[str, tuple[str, Mapping[str, list[str]]]],
                 service: str = "zotpy-test", lifetime: float = 300.0) -> None:
        """``users``: name -> (password, {repository: allowed actions})."""
        super().__init__()
        os.makedirs(directory, exist_ok=True)
        authority = CertificateAuthority(directory, name="token signer")
        self.signer = authority.issue("token-signer", [])
        self.cert_path = self.signer.cert_path
        with open(self.signer.key_path, "rb") as stream:
            self.key = stream.read()
        self.users = users
        self.service = service
        self.lifetime = lifetime
        self.issued: list[dict[str, Any]] = []
        self.url = ""

    async def start(self, testcase: Any) -> str:
        self.url = await serve(testcase, self) + "/token"
        return self.url

    def token(self, subject: str, access: list[dict[str, Any]], **claims: Any) -> str:
        now = time.time()
        body = {"iss": "test-token-service", "sub": subject, "aud": self.service, "iat": int(now),
                "nbf": int(now) - 1, "exp": int(now + self.lifetime), "access": access, **claims}
        body = {key: value for key, value in body.items() if value is not None}
        self.issued.append(body)
        return jwt.encode(body, self.key, algorithm="ES256")

    def render_GET(self, request: Any) -> bytes:
        user = ""
        header = request.getHeader("authorization") or ""
        if header.lower().startswith("basic "):
            name, _, password = base64.b64decode(header[6:]).decode().partition(":")
            if name in self.users and self.users[name][0] == password:
                user = name
            else:
                request.setResponseCode(401)
                return b'{"details": "wrong credentials"}'
        rules = self.users[user][1] if user else {}
        access = []
        for scope in request.args.get(b"scope", []):
            kind, _, rest = scope.decode().partition(":")
            name, _, wanted = rest.rpartition(":")
            allowed = [action for action in wanted.split(",") if action in rules.get(name, rules.get("*", []))]
            if allowed:
                access.append({"type": kind, "name": name, "actions": allowed})
        token = self.token(user, access)
        request.setHeader("Content-Type", "application/json")
        return json.dumps({"token": token, "access_token": token, "expires_in": int(self.lifetime)}).encode()


