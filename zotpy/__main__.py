"""``python -m zotpy``: the same commands as the ``zotpy`` console script (:mod:`zotpy.cli`)."""

import sys

from zotpy.cli.main import main

if __name__ == "__main__":
    sys.exit(main(prog="python -m zotpy"))
