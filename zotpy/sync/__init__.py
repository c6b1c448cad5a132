"""Mirroring upstream registries (zot's ``extensions.sync``): periodically and on demand."""
