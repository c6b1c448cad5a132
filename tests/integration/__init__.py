"""Tests that run real servers and clients (skopeo, the zotpy daemon)."""
