"""composer.cli: the command-line apps (`python -m composer.edit`, `composer.recombine`; the
evaluation's and zoo's live in their packages) and what they share: loading a pipeline from
settings, output files, errors as one line (`commands.py`), the config folder, the allocator
setting and secret scrubbing. Only this package and the entry points import hydra."""
