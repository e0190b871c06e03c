"""composer: the Composer model, its training loss, sampling pipeline, editing and recombination.

Builds on `conditions` (condition encoders) and diffusers. (This is the `composer-diffusion`
distribution, not MosaicML's unrelated `composer` package.)
"""
