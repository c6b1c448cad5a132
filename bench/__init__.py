"""zotpy's benchmarks: zotpy against CNCF distribution on the same storage (``python -m bench run``)."""
