"""zotpy: a scale-out OCI container registry on Twisted."""
