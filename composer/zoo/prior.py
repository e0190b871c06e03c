"""Training Composer's prior (`composer.models.prior.EmbeddingPrior`) on the built-in scenes: each
scene's caption, embedded by the caption condition's MiniLM, against the shipped image encoder's
embedding of the scene. Saved with `save_pretrained` (safetensors), loaded by
`EmbeddingPrior.from_pretrained`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from composer.models.prior import EmbeddingPrior
from composer.zoo.image_encoder import Pairs
from composer.zoo.loop import fit
from decompose import ClipImageEncoder


@torch.no_grad()
def image_embeddings(encoder: ClipImageEncoder, images: torch.Tensor, batch: int = 256) -> torch.Tensor:
    """The encoder's embeddings `[N, D]` of `images [N, 3, S, S]`, in batches."""
    return torch.cat([encoder.extract(images[i:i + batch], None) for i in range(0, len(images), batch)])


def train_prior(pairs: Pairs, targets: torch.Tensor, *, steps: int, batch: int = 256, lr: float = 1e-3,
                seed: int = 0, progress: bool = True) -> EmbeddingPrior:
    """An `EmbeddingPrior` fitted to map `pairs`' captions to `targets [N, D]` (their scenes' image
    embeddings) for `steps` AdamW steps, with unCLIP's cosine objective for a regression prior."""
    torch.manual_seed(seed)
    prior = EmbeddingPrior(pairs.captions.shape[1], targets.shape[1], max_words=pairs.words.shape[1]).train()

    def loss(rows: torch.Tensor) -> torch.Tensor:
        predicted = prior(pairs.captions[rows], pairs.words[rows], pairs.mask[rows])
        return (1 - (predicted * targets[rows]).sum(-1)).mean()

    fit(prior.parameters(), loss, count=len(targets), steps=steps, batch=batch, lr=lr, weight_decay=0.01, seed=seed,
        desc="training prior", progress=progress)
    return prior.eval()


@torch.no_grad()
def prior_accuracy(prior: EmbeddingPrior, pairs: Pairs, targets: torch.Tensor) -> dict[str, float]:
    """Held-out accuracy: mean cosine of the predicted and the true image embeddings, and
    caption -> image recall@1 among the pairs, each beside the caption's own sentence embedding
    used as the prediction (what the image encoder was trained to match)."""
    predicted = prior(pairs.captions, pairs.words, pairs.mask)
    order = torch.arange(len(targets))

    def recall(query: torch.Tensor) -> float:
        return (query @ targets.T).argmax(1).eq(order).float().mean().item()

    caption = F.normalize(pairs.captions, dim=-1)
    return {"cosine": (predicted * targets).sum(-1).mean().item(), "recall_at_1": recall(predicted),
            "caption_cosine": (caption * targets).sum(-1).mean().item(), "caption_recall_at_1": recall(caption)}
