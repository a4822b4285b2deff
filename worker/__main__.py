import sys

if not __package__:
    # `python worker` runs this file as a script; make the package importable.
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from worker.cli import main
else:
    from .cli import main

sys.exit(main())
