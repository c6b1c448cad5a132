"""Pure OCI types and rules: digests, names, media types, manifests, error codes."""
