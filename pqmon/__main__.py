"""``python -m pqmon``: the same command as the installed ``pqmon`` script."""

from pqmon.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
