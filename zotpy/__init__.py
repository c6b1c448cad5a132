"""zotpy: a scale-out OCI container registry on Twisted."""

#: The one place the version is written: setup.cfg reads it (``attr:``), ``zotpy --version`` prints
#: it, the daemon logs it at startup and exports it in the ``zot_info`` metric.
__version__ = "0.1.0"
