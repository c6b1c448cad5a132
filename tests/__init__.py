"""zotpy tests (trial)."""
