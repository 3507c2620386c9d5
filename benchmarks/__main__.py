"""Run the benchmarks: ``python -m benchmarks [--quick] [--full] [--only NAME ...] [--out DIR]`` (see __init__)."""
from __future__ import annotations

import argparse
import importlib
import inspect
import os
import sys
import time
from pathlib import Path

NAMES = ("structured_payoff", "masks_alone", "scoring_cost", "synflow_cost", "finding_cost", "sparse_kernels",
         "vs_torch_pruning", "detector_overhead")
OPTIONAL = ("detector_overhead",)  # written separately; run when it is there


def available() -> list[str]:
    here = Path(__file__).resolve().parent
    return [n for n in NAMES if n not in OPTIONAL or (here / f"{n}.py").exists()]


def parse(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny sizes: seconds each (numbers not meaningful)")
    parser.add_argument("--full", action="store_true", help="larger batches and repeats where a benchmark has them")
    parser.add_argument("--only", action="append", choices=NAMES, metavar="NAME",
                        help=f"run only this benchmark (repeatable); one of {', '.join(NAMES)}")
    parser.add_argument("--out", help="output folder (default outputs/benchmarks/, or $CROPKIT_BENCH_OUT)")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's, one per core)")
    return parser.parse_args(argv)


def call(entry, args: argparse.Namespace):
    """``main(quick=..., [full=...])``; a benchmark with its own command line (``main(argv)``) gets the
    equivalent arguments: the smoke profile and two epochs for --quick, its defaults otherwise."""
    parameters = inspect.signature(entry).parameters
    if "quick" in parameters:
        return entry(quick=args.quick, **({"full": args.full} if "full" in parameters else {}))
    print(f"\n=== {entry.__module__.rsplit('.', 1)[-1]}{' (--quick)' if args.quick else ''}")
    return entry(["--profile", "smoke", "--epochs", "2"] if args.quick else [])


def main(argv=None) -> int:
    args = parse(argv)
    if args.out:
        os.environ["CROPKIT_BENCH_OUT"] = str(Path(args.out).resolve())
    import matplotlib
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)

    matplotlib.use("Agg")
    from benchmarks import common

    names = [n for n in available() if not args.only or n in args.only]
    missing = [n for n in (args.only or []) if n not in names]
    if missing:
        print(f"not available: {missing} (file not present)", file=sys.stderr)
        return 2
    print(f"benchmarks: {', '.join(names)}{' (--quick)' if args.quick else ''}")
    print(f"command: python -m benchmarks {' '.join(sys.argv[1:] if argv is None else argv)}")
    print(f"where:   {common.where()}")
    start, lines = time.perf_counter(), []
    for name in names:
        module = importlib.import_module(f"benchmarks.{name}")
        t = time.perf_counter()
        frame = call(module.main, args)
        print(f"    [{name}: {time.perf_counter() - t:.0f} s]")
        if hasattr(module, "summary") and frame is not None:
            lines += module.summary(frame)
    if lines:  # the headline ratios side by side, one line per benchmark
        print(f"\n=== summary{' (--quick: not meaningful)' if args.quick else ''}")
        print("\n".join(f"    {line}" for line in lines))
    print(f"\nall benchmarks done in {time.perf_counter() - start:.0f} s · {common.load()} at the end")
    return 0


if __name__ == "__main__":
    sys.exit(main())
