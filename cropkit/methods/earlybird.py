"""Early-bird tickets (You et al. 2020): dense training with an L1 penalty on BatchNorm scales until the channel mask
settles, then nodes removed by |γ|."""
from __future__ import annotations

import math

from torch import nn

from cropkit.methods.context import Context
from cropkit.methods.method import Method, budget
from cropkit.methods.options import LAYER_FLOOR, MAX_DENSE_EPOCHS, Option
from cropkit.training import timing
from cropkit.training.callbacks import BatchNormL1, DetectorCallback

EARLYBIRD_OPTIONS = (
    MAX_DENSE_EPOCHS,
    LAYER_FLOOR,
    Option("bn_l1", float, "λ of the L1 penalty on BatchNorm γ (You et al. 2020)", default=1e-4),
    Option("eb_epsilon", float, "Hamming distance at or below which the BN channel mask counts as settled",
           default=0.1),
    Option("eb_window", int, "consecutive masks compared", default=5, minimum=1),
)


def earlybird(ctx: Context) -> nn.Module:
    """Early-bird tickets (You et al. 2020): dense training with λ‖γ‖₁ on BatchNorm scales; every epoch the
    detector takes the BN channel mask at the node ratio r = 1 − √(1 − p) (a chain of layers that each lose a
    fraction r of their nodes loses ≈ 1 − (1 − r)² = p of its weights) and fires once the mask stops changing.
    Then nodes are removed by |γ| to the weight-sparsity target and training goes on without the penalty."""
    c = ctx.cfg
    model = ctx.build_model()
    penalty = BatchNormL1(model, c.bn_l1)
    detector = timing.EarlyBirdDetector(1 - math.sqrt(1 - ctx.sparsity), epsilon=c.eb_epsilon, window=c.eb_window,
                                        max_epochs=c.max_dense_epochs)

    def prune_now(trainer):
        penalty.remove()
        trainer.model = ctx.prune(trainer.model, "bn_nodes")
        ctx.pruned(trainer, detector)
        trainer.reset_optimizer(epochs=ctx.sparse_epochs(trainer.epoch), schedule=c.schedule)

    trainer = ctx.trainer(model, c.max_dense_epochs, schedule="constant",
                          callbacks=[penalty, DetectorCallback(detector, on_fire=prune_now)])
    return ctx.fit(trainer)


EARLYBIRD = Method(earlybird, "EarlyBird", "Structured",
                   when="early",
                   schedule="once, when the BatchNorm channel mask settles (at the latest max_dense_epochs)",
                   epochs=lambda cfg: budget(cfg, cfg.max_dense_epochs), options=EARLYBIRD_OPTIONS)
