"""Issue 20: is lesson 05's budget on depth and pydoc enough for dense training to converge?

Trains dense (seed 0, one torch thread, no cache) on lesson 05's `depth` and `pydoc` domains with the lesson's own
settings (its parameters cell, the ``cpu`` profile) but for each pair of epochs E and peak learning rate given, and
prints the test metric, the training loss of the last three epochs and how much it fell in the last one. With the
one-cycle schedule every E is a run of its own (the rate anneals to zero at its end), so a row that still falls by
several percent in its last epoch, or that a longer E beats by far, had not converged.

    python benchmarks/lesson05_budget.py                         # the lesson's old and new budgets
    python benchmarks/lesson05_budget.py --depth 8@0.01 16@0.01 --pydoc 8@0.02

What it found (2-core Intel Xeon, one thread, 2026-12-04; RMSE in units of the depth's std, log-perplexity in nats):

=============  ==========  =========================  ==================
domain         E @ lr      training loss, last epoch  test metric
=============  ==========  =========================  ==================
depth          4 @ 2e-3    0.380 (fell 9.1 %)         RMSE 0.605
depth          12 @ 1e-2   0.140 (fell 2.8 %)         RMSE 0.393
depth          16 @ 1e-2   0.125 (fell −0.2 %)        RMSE 0.375
pydoc          3 @ 5e-3    4.946 (fell 2.0 %)         log-ppl 5.168
pydoc          10 @ 1e-2   3.752 (fell 0.4 %)         log-ppl 4.384
pydoc          16 @ 1e-2   3.462 (fell 0.1 %)         log-ppl 4.242
=============  ==========  =========================  ==================

The old budgets (the first row of each domain) stopped dense far from where longer training takes it. Lesson 05 now
trains depth for 12 epochs and pydoc for 10, both at 1e-2 (the ~10 % left to gain at 16 epochs would cost a third
more time); its section 4 prints every row's training loss at the end beside dense's.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

import cropkit as ck
from cropkit.lessons.lesson_parameters import parameters

LESSON = Path(__file__).resolve().parent.parent / "notebooks" / "05_beyond_classification.ipynb"
DEFAULTS = {"depth": ["4@0.002", "12@0.01", "16@0.01"], "pydoc": ["3@0.005", "10@0.01", "16@0.01"]}
METRICS = {"depth": "test_rmse", "pydoc": "test_log_ppl"}


def budget(text: str) -> tuple[int, float]:
    """'E@lr' → (E, lr)."""
    epochs, _, lr = text.partition("@")
    try:
        return int(epochs), float(lr)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a budget is E@lr, e.g. 12@0.01; got {text!r}") from None


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    for domain, default in DEFAULTS.items():
        parser.add_argument(f"--{domain}", type=budget, nargs="*", default=[budget(b) for b in default],
                            help=f"E@lr budgets for {domain} (default: {' '.join(default)})")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    settings = parameters(LESSON)["SETTINGS"]["default"]
    torch.set_num_threads(1)
    rows = []
    for domain in DEFAULTS:
        for epochs, lr in getattr(args, domain):
            options = {**settings[domain], "epochs": epochs, "lr": lr}
            start = time.perf_counter()
            r = ck.run("dense", data=domain, seed=args.seed, profile="cpu", cache=False, progress=False, **options)
            loss = [e["train_loss"] for e in r.history]
            fell = (loss[-2] - loss[-1]) / loss[-2] if len(loss) > 1 else float("nan")
            metric = r.history[-1][METRICS[domain]]
            rows.append(dict(domain=domain, epochs=epochs, lr=lr, train_loss_end=loss[-1], fell_last=fell,
                             metric=metric))
            print(f"{domain:6} E = {epochs:>2} @ {lr:g}: training loss {' '.join(f'{x:.3f}' for x in loss[-3:])} "
                  f"(fell {fell:.1%} in the last epoch), {METRICS[domain]} {metric:.3f}  "
                  f"[{time.perf_counter() - start:.0f} s]", flush=True)
    print(f"dense, seed {args.seed}, lesson 05's settings otherwise, on {ck.hardware.describe()}")
    return rows


if __name__ == "__main__":
    main()
