"""Per-repository metadata, kept by the repository's owner: push and pull times, pull counts, sizes."""
