"""Dense: the reference row of the paper's tables, trained without pruning."""
from __future__ import annotations

from torch import nn

from cropkit.methods.context import Context
from cropkit.methods.method import Method


def dense(ctx: Context) -> nn.Module:
    """The reference row: no pruning."""
    return ctx.fit(ctx.trainer(ctx.build_model(), ctx.sparse_epochs()))


DENSE = Method(dense, "Dense", "Dense", when="never", schedule="does not prune", cuts=lambda cfg: 0)
