"""Storage lifecycle: garbage collection, retention and upload cleanup, run per repository by its owner."""
