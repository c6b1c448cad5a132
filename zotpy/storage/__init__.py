"""Byte storage drivers and the OCI image store that sits on top of them."""
