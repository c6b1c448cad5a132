"""Every Twisted private name zotpy uses (zotpy.transport.twisted_private) still exists.

If a Twisted upgrade drops or renames one, this fails with the name, before forwarding, splicing or
TLS fail at run time.
"""

from __future__ import annotations

from twisted.trial.unittest import TestCase
from zope.interface.interface import InterfaceClass

from zotpy.transport import twisted_private


class TwistedPrivateNamesTests(TestCase):
    def test_trust_root_interface(self) -> None:
        self.assertIsInstance(twisted_private.IOpenSSLTrustRoot, InterfaceClass)
        self.assertIn("_addCACertsToContext", twisted_private.IOpenSSLTrustRoot.names())
