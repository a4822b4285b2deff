"""Entry point for both `python launcher` (run as a script) and `python -m launcher`."""

import sys
from pathlib import Path

if not __package__:
    # `python launcher` puts launcher/ itself on sys.path, not the repo root that holds the
    # `launcher` and `worker` packages.
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from launcher.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
