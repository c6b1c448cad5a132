"""The OCI Distribution HTTP API (Klein routes)."""
