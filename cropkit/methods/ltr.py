"""Lottery tickets with rewinding (Frankle et al. 2020): iterative magnitude pruning, the survivors rewound to an
early epoch's weights before every retraining."""
from __future__ import annotations

from torch import nn

from cropkit.core import schedules
from cropkit.methods.context import REINIT_OFFSET, Context
from cropkit.methods.method import Method, budget
from cropkit.methods.options import Option
from cropkit.training.callbacks import Snapshot, rewind, state_of

LTR_OPTIONS = (
    Option("ltr_rounds", int, "rounds of prune → rewind → retrain", minimum=1),
    Option("rewind_epoch", int, "k of θ_k, the epoch of the first training the survivors rewind to", minimum=0),
    Option("reinit", bool, "re-initialise the survivors at random instead of rewinding (open_lth's control)",
           default=False),
)


def ltr(ctx: Context) -> nn.Module:
    """Lottery tickets with rewinding (Frankle et al. 2020): train, then ``ltr_rounds`` rounds of prune → rewind
    the survivors to θ_k → retrain. Round r prunes to the cumulative sparsity 1 − (1 − p)^(r/R), i.e. the
    fraction 1 − (1 − p)^(1/R) of the surviving weights, globally by |θ|. With ``reinit=True`` the survivors
    are re-initialised at random instead (open_lth's control: a new draw from the same initialiser).

    Every retraining runs the full ``epochs`` from θ_k with a fresh optimizer and one-cycle schedule, so
    epochs_trained = (R + 1) · epochs. (open_lth instead resumes the original schedule at step k and trains the
    remaining epochs − k; the difference is k epochs per round.)"""
    c = ctx.cfg
    model = ctx.build_model()
    snapshot = Snapshot(c.rewind_epoch)
    ctx.fit(ctx.trainer(model, ctx.sparse_epochs(), callbacks=[snapshot]))
    if "start" not in ctx.state:  # in ctx.state: a resumed run skips the training that took it
        ctx.state["start"] = state_of(ctx.build_model(seed=ctx.seed + REINIT_OFFSET)) if c.reinit else snapshot.state
    start = ctx.state["start"]
    for r in range(1, c.ltr_rounds + 1):
        ctx.prune(model, "magnitude", sparsity=schedules.geometric(ctx.sparsity, r, c.ltr_rounds))
        rewind(model, start)
        ctx.pruned()
        ctx.fit(ctx.trainer(model, ctx.sparse_epochs()))
    return model


LTR = Method(ltr, "LTR", "Unstructured", when="after training",
             schedule="R = ltr_rounds rounds, each after a full training, rewinding the survivors",
             epochs=lambda cfg: (cfg.ltr_rounds + 1) * budget(cfg), cuts=lambda cfg: cfg.ltr_rounds,
             options=LTR_OPTIONS)
