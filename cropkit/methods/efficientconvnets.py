"""Pruning Filters for Efficient ConvNets (Li et al. 2017): filters ranked by their L1 norm after a short dense
phase, the same fraction removed in every layer."""
from __future__ import annotations

from torch import nn

from cropkit.methods.context import Context
from cropkit.methods.method import Method, budget
from cropkit.methods.options import LAYER_FLOOR, Option

EFFICIENTCONVNETS_OPTIONS = (
    Option("dense_epochs", int, "epochs of dense training before the filters are ranked", minimum=0),
    LAYER_FLOOR,
)


def efficientconvnets(ctx: Context) -> nn.Module:
    """Pruning Filters for Efficient ConvNets (Li et al. 2017): after ``dense_epochs`` of dense training remove
    the nodes with the smallest filter L1 norm, the same fraction in every layer (``scope="layer"``), train."""
    c = ctx.cfg
    model = ctx.build_model()
    if c.dense_epochs > 0:
        model = ctx.fit(ctx.trainer(model, c.dense_epochs, schedule="constant"))
    model = ctx.prune(model, "l1_nodes", scope="layer")
    ctx.pruned()
    return ctx.fit(ctx.trainer(model, ctx.sparse_epochs(c.dense_epochs)))


EFFICIENTCONVNETS = Method(efficientconvnets, "EfficientConvNets", "Structured",
                           when="early",
                           schedule="once, after dense_epochs of dense training",
                           epochs=lambda cfg: budget(cfg, cfg.dense_epochs), options=EFFICIENTCONVNETS_OPTIONS)
