"""`python -m composer.edit`: region-restricted editing of a photo of your own. The app is
`composer/cli/edit.py`; this module is its command name."""

from composer.cli.edit import main, run, run_or_exit

__all__ = ["main", "run", "run_or_exit"]

if __name__ == "__main__":
    main()
