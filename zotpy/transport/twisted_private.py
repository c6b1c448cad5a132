"""Every name zotpy takes from Twisted's private modules, in one place.

Twisted may rename or drop anything behind an underscore in any release. Keeping each such touch
here (and tests/test_twisted_private.py checking that every one still exists) means an upgrade that
breaks one fails one test with the name in it, instead of breaking forwarding, splicing or TLS at
run time.
"""

from __future__ import annotations

# The interface of an object optionsForClientTLS accepts as trustRoot. Public in use (the
# ``trustRoot`` argument is documented) but only defined in the private module; zotpy implements it
# to trust the system's CAs *and* extra ones.
from twisted.internet._sslverify import IOpenSSLTrustRoot

__all__ = ["IOpenSSLTrustRoot"]
