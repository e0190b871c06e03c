"""`python -m composer.recombine`: conditions from images of your own, recombined. The app is
`composer/cli/recombine.py`; this module is its command name."""

import sys

from composer.cli.recombine import command_line, main, run, run_or_exit

__all__ = ["command_line", "main", "run", "run_or_exit"]

if __name__ == "__main__":
    sys.argv[1:] = command_line(sys.argv[1:])
    main()
