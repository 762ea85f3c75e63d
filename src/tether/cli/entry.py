"""The ``tether`` console entry point: answers what it can before importing the command line.

``--version`` and a provably clean ``status`` / no-op ``commit`` (see :mod:`tether.cli.quick`)
need neither Typer nor any feature module, so they are answered here; everything else goes to
:mod:`tether.cli.main`.
"""

from __future__ import annotations

import os
import sys


def run() -> None:
    os.environ.setdefault("PYTHONIOENCODING", "utf-8")
    argv = sys.argv[1:]
    if argv == ["--version"]:
        from tether import __version__

        sys.stdout.write(f"tether {__version__}\n")
        raise SystemExit(0)
    from tether.cli.quick import try_quick

    code = try_quick(argv)
    if code is not None:
        raise SystemExit(code)
    from tether.cli.main import app

    app()
