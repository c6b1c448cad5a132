"""The web UI (``extensions.ui``): one static page and a small script on the search API."""
