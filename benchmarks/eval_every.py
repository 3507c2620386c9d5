"""Issue 23: what measuring the test set every epoch costs a run, and that measuring less changes nothing else.

For each setting, one SNIP run (seed 0, one torch thread, no cache) measured after every epoch (``eval_every=1``)
and one measured only after its last (``eval_every`` larger than its epochs), in interleaved pairs; prints the
seconds of training (the minimum over the pairs), the share measuring costs, and whether the two runs ended with the
same test metric and the same training losses (they must: measuring draws no random number the training uses).

    python benchmarks/eval_every.py                     # lessons 03/06's mnist1d cnn, lesson 05's five domains
    python benchmarks/eval_every.py --only depth acrobot --pairs 3

The settings are those of the lessons' parameters cells (lesson 05's ``SETTINGS``, lesson 06's mnist1d network).
"""
from __future__ import annotations

import argparse
import warnings
from pathlib import Path

import torch

import cropkit as ck
from cropkit.lessons.lesson_parameters import parameters

LESSON05 = Path(__file__).resolve().parent.parent / "notebooks" / "05_beyond_classification.ipynb"
MNIST1D = dict(data="mnist1d", model="cnn", width=0.5, sparsity=0.8, epochs=20, lr=0.002)  # lesson 06's as-is rows


def settings() -> dict[str, dict]:
    """{name: cropkit.run keyword arguments} of every setting measured."""
    lesson = parameters(LESSON05)["SETTINGS"]["default"]
    sparsity = {"depth": 0.9, "pydoc": 0.9, "cartpole": 0.8, "acrobot": 0.8, "lunarlander": 0.9}
    out = {"mnist1d": dict(MNIST1D)}
    for domain, values in lesson.items():
        out[domain] = {**{k: v for k, v in values.items() if k != "eval_every"}, "data": domain,
                       "sparsity": sparsity[domain]}
    return out


def measure(kwargs: dict, pairs: int) -> dict:
    """Seconds of training measured every epoch and only after the last, and whether the runs agree."""
    seconds = {1: [], "last": []}
    ends = {}
    for _ in range(pairs):
        for every in (1, "last"):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                result = ck.run("snip", **{**kwargs, "seed": 0, "cache": False, "progress": False, "threads": 1,
                                           "measure_emissions": False,
                                           "eval_every": 1 if every == 1 else kwargs["epochs"] + 1})
            seconds[every].append(result.train_seconds)
            ends[every] = (result.test_metric, [e["train_loss"] for e in result.history])
    every, last = min(seconds[1]), min(seconds["last"])
    return dict(every=every, last=last, share=1 - last / every, same=ends[1] == ends["last"])


def main(argv=None) -> dict[str, dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", help="settings to measure (default: all)")
    parser.add_argument("--pairs", type=int, default=2, help="interleaved pairs of runs per setting (default 2)")
    args = parser.parse_args(argv)
    table = settings()
    unknown = sorted(set(args.only or ()) - set(table))
    if unknown or args.pairs < 1:
        parser.error(f"unknown setting(s) {unknown}; choose from {list(table)}" if unknown else "--pairs must be >= 1")
    torch.set_num_threads(1)
    found = {}
    print(f"{'setting':<12} {'every epoch':>12} {'last only':>10} {'measuring':>10}  same training and final metric")
    for name in args.only or table:
        found[name] = row = measure(table[name], args.pairs)
        print(f"{name:<12} {row['every']:>10.2f} s {row['last']:>8.2f} s {row['share']:>9.0%}  {row['same']}",
              flush=True)
    return found


if __name__ == "__main__":
    main()
