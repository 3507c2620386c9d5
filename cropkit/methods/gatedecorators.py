"""Gate Decorator (You et al. 2019): learnable gates after the norms, tick (score and remove) / tock (train)."""
from __future__ import annotations

from torch import nn

from cropkit.core import measure, prune, schedules
from cropkit.methods import gates as gates_lib
from cropkit.methods.context import Context
from cropkit.methods.method import Method, budget
from cropkit.methods.options import Option
from cropkit.training.loop import Callback

GATEDECORATORS_OPTIONS = (
    Option("ticks", int, "tick-tock rounds, each removing nodes", minimum=1),
    Option("gate_l1", float, "λ of the L1 sparsity penalty on the gates φ (the kit's default)", default=1e-4),
    Option("gate_min_fraction", float, "the least fraction of every layer's filters kept (the authors' code "
           "keeps 10 %)", default=0.1),
)


def gatedecorators(ctx: Context) -> nn.Module:
    """Gate Decorator (You et al. 2019, `cropkit.methods.gates`), from initialisation: learnable gates φ = 1 after every
    node layer's BatchNorm, trained with the L1 penalty ``gate_l1``·‖φ‖₁. ``ticks`` times: tock = one epoch of
    training (all parameters and the gates, penalty on); tick = one pass over the scoring batches in which the
    gates, the norms' shifts and the classifier train (`cropkit.methods.gates.GateDecorator.tick`) while the
    Taylor score Θ = Σ_b |φ ⊙ ∂L_b/∂φ| accumulates, then the gates are folded into the norms (γφ, βφ) and the
    lowest-Θ nodes removed to the cumulative weight sparsity 1 − (1 − p)^(i/ticks) of the dense model (the same
    fraction of the remaining weights each tick; the last tick lands on p), every layer keeping at least
    ``gate_min_fraction`` of its filters, and fresh gates go on. Then train without gates.

    Where this differs from the authors' code: they remove 0.5 % of the filters per tick over hundreds of tick-tock
    rounds; here ``ticks`` rounds (4 under the cpu profile) each remove the same fraction of what remains."""
    model = ctx.build_model()
    tick_tock = _TickTock(ctx, model)  # the gates come before the optimizer exists
    return ctx.fit(ctx.trainer(model, ctx.cfg.ticks, schedule="constant", callbacks=[tick_tock]))


class _TickTock(Callback):
    """GateDecorators' schedule: the gates of the running tock, and a tick at the end of epochs 1..``ticks``. Its
    state (gates on or off) lets a resumed run hook the gates of the restored model (`cropkit.training.checkpoint`)."""

    def __init__(self, ctx: Context, model: nn.Module):
        self.ctx, self.dense_weights = ctx, measure.prunable_count(model)
        self.gates = gates_lib.GateDecorator(model, ctx.batches, penalty=ctx.cfg.gate_l1)

    def on_epoch_end(self, trainer) -> None:
        c, ctx, i = self.ctx.cfg, self.ctx, trainer.epoch
        if i > c.ticks:
            return
        theta = self.gates.tick(ctx.batches_for(trainer.model), lr=c.lr, loss_fn=ctx.loss_fn)
        self.gates.fold()
        target = schedules.geometric(ctx.sparsity, i, c.ticks)
        trainer.model = prune.structured(trainer.model, theta, target, ctx.example_inputs,
                                         dense_weights=self.dense_weights, min_fraction=c.gate_min_fraction)
        if i < c.ticks:  # tensors changed: fresh gates and a fresh optimizer for the next tock
            self.gates = gates_lib.GateDecorator(trainer.model, ctx.batches, penalty=c.gate_l1)
            trainer.reset_optimizer(epochs=c.ticks - i, schedule="constant")
        else:
            self.gates = None
            ctx.pruned(trainer)
            trainer.reset_optimizer(epochs=ctx.sparse_epochs(c.ticks), schedule=c.schedule)

    def state_dict(self) -> dict:
        return dict(gated=self.gates is not None)

    def load_state_dict(self, state: dict, trainer) -> None:
        if self.gates is not None:
            self.gates.unhook()
        self.gates = gates_lib.GateDecorator(trainer.model, self.ctx.batches, penalty=self.ctx.cfg.gate_l1) \
            if state["gated"] else None


GATEDECORATORS = Method(gatedecorators, "GateDecorators", "Structured", when="early",
                        schedule="a little at each of the first ticks epochs",
                        epochs=lambda cfg: budget(cfg, cfg.ticks), cuts=lambda cfg: cfg.ticks,
                        options=GATEDECORATORS_OPTIONS)
