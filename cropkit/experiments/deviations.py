"""What the EarlyCroP reference code's own choices change, measured on a fresh model of the claims' setting and its
scoring batches: the share of the paper-definition kept set that the reference choice would not keep."""
from __future__ import annotations

import torch
from torch.nn import functional as F

from cropkit.core import scores
from cropkit.experiments import runs
from cropkit.tasks import data as data_lib
from cropkit.tasks import models


def _kept(scores: dict, sparsity: float, strict: bool = False) -> set:
    """Flat indices (over all layers in order) of the weights a global top-k keeps; ``strict`` keeps only scores
    strictly above the k-th largest (the reference code: k − 1 weights, ties dropped)."""
    flat = torch.cat([s.flatten() for s in scores.values()])
    k = max(1, int(round((1 - sparsity) * flat.numel())))
    values, order = torch.topk(flat, k)
    if strict:
        order = order[values > values[-1]]
    return set(order.tolist())


def reference_deviations(cfg) -> list[dict]:
    """What each deviation of the EarlyCroP reference code changes, measured on a fresh model of the claims'
    setting and its scoring batches at the claims' sparsity: the share of the paper-definition kept set that the
    reference choice would not keep."""
    run_cfg = runs.settings("crop-u", profile=cfg.profile, data=cfg.data, model=cfg.model, width=cfg.width,
                                   **cfg.run_options)
    dataset = data_lib.load(cfg.data, batch_size=run_cfg.batch_size, seed=0, limit=run_cfg.limit)
    model = models.build(cfg.model, dataset.input_shape, dataset.num_classes, width=cfg.width, seed=0)
    batches = data_lib.take(dataset.train, run_cfg.score_batches)
    p = cfg.sparsity

    def changed(ours: dict, theirs: dict, strict: bool = False) -> str:
        a, b = _kept(ours, p), _kept(theirs, p, strict=strict)
        differ = len(a - b)
        return f"{differ:,} of the {len(a):,} kept weights ({differ / len(a):.1%}) differ at {p:.0%} sparsity"

    nll_on_logits = lambda out, y: F.nll_loss(out, y)  # noqa: E731  (no log-softmax: the reference's SNIP/SNAP)
    grasp = scores.grasp(model, batches, norms="eval")  # the reference code scores GraSP in eval mode
    crop = scores.crop(model, batches)
    rows = [
        dict(deviation="GraSP inverted (keeps what GraSP removes)",
             changes=changed(grasp, {k: -v for k, v in grasp.items()})),
        dict(deviation="SNIP scored with nll_loss on raw logits instead of cross-entropy",
             changes=changed(scores.snip(model, batches), scores.snip(model, batches, loss_fn=nll_on_logits))),
        dict(deviation="keeps only scores strictly above the k-th largest (k − 1 weights, ties dropped)",
             changes=changed(crop, crop, strict=True)),
        dict(deviation="scores on the first test-set batches instead of training batches",
             changes=changed(crop, scores.crop(model, data_lib.take(dataset.test, run_cfg.score_batches)))),
    ]
    return rows
