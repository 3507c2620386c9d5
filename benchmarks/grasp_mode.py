"""GraSP scored with batch statistics (as Wang et al.'s code scores) against GraSP scored in eval mode, beside
Random-U and SNIP, on the claims' network: one factor changed, the same seeds, initialisations and data order.

    python -m benchmarks.grasp_mode                 # 3 seeds, 20 epochs after pruning, 95 %, one torch thread
    python -m benchmarks.grasp_mode --epochs 6      # the old claims setting's length

At initialisation an eval-mode BatchNorm is the identity: scored in eval mode, GraSP ranks the weights of an
un-normalised ResNet (`cropkit.core.scores.grasp`). Runs are cached like every `cropkit.run` (the eval-mode variant
under a method name of its own, ``grasp-eval``, registered in this process only).
"""
from __future__ import annotations

import argparse
import dataclasses
import functools
import statistics

import torch

from cropkit.core import scores
from cropkit.experiments import grid
from cropkit.methods import at_init, registry

SETTING = dict(data="mnist1d", model="resnet18", width=0.25, batch_size=128, score_batches=4,
               measure_emissions=False, threads=1)


def register_eval_variant() -> None:
    """``grasp-eval``: GraSP with ``norms="eval"``, as a method of this process (a name of its own, so its cache
    entries never mix with GraSP's)."""
    scores.WEIGHT_SCORES["grasp_eval"] = functools.partial(scores.grasp, norms="eval")
    registry.REGISTRY["grasp-eval"] = dataclasses.replace(at_init.one_shot("grasp_eval", "GraSP (eval mode)",
                                                                           "Unstructured"))


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.grasp_mode", description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--sparsity", type=float, default=0.95)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    register_eval_variant()
    entries = ["grasp", "grasp-eval", "random-u", "snip"]
    jobs = grid.plan(entries, [args.sparsity], args.seeds, epochs=args.epochs, progress=False, **SETTING)
    results = grid.execute(jobs)
    print(f"mnist1d / resnet18 ×0.25 @ {args.sparsity:.0%}, {args.epochs} epochs after pruning, seeds {args.seeds}")
    for entry in entries:
        accs = [r.test_acc for j, r in zip(jobs, results) if j.entry == entry]
        spread = statistics.stdev(accs) if len(accs) > 1 else 0.0
        print(f"{registry.REGISTRY[entry].label:>18}: {100 * statistics.fmean(accs):5.1f} ± {100 * spread:4.1f} % "
              f"(per seed {', '.join(f'{100 * a:.1f}' for a in accs)})")


if __name__ == "__main__":
    main()
