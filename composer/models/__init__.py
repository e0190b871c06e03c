"""composer.models: the network and its parts. `ComposerModel` (a diffusers UNet with Composer's
condition encoders and GLIGEN's gated self-attention), its box-masked attention and multiscale
local residuals, Composer's prior, and the conditioning stack that turns a batch into the model's
condition inputs (`inputs.py`) with the allow-list of what a model folder may build
(`trusted_extractors.py`)."""
