"""`python -m worker`, `python worker` from the checkout, and the `musicgen-worker` script."""

import sys
from pathlib import Path

if not __package__ and sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    # `python worker` runs this folder as a script, so Python put the folder itself first on
    # sys.path, where worker/output/audio.py and its neighbours would shadow top-level modules of the
    # same name. The package comes from the installed project (`make install`) instead.
    del sys.path[0]


def main() -> int:
    """The worker's CLI; without its dependencies in this Python, one line saying how to add them."""
    try:
        from worker.cli import main as run

        return run()
    except ModuleNotFoundError as missing:
        if (missing.name or "").startswith(("worker.", "launcher.")):
            raise  # a module of this project itself: a bug, not an install to fix
        print(
            f"error: {missing} in {sys.executable}: install the worker with "
            "`pip install -e '.[worker]'` from the checkout (`make install` does)",
            file=sys.stderr,
        )
        return 2


if __name__ == "__main__":
    sys.exit(main())
