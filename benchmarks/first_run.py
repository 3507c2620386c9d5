"""The first run of a process against the same run repeated: ``train_seconds`` must not carry process warm-up.

    python -m benchmarks.first_run [--method dense] [--profile smoke] [--threads 1]

A fresh process runs one method twice (cache off, same seed, so the work is identical) and prints both
``train_seconds`` and their ratio. Before `cropkit.training.loop.warm_up`, the first run of a process paid the import
of ``torch._dynamo`` inside its timer (10.76 s against 0.31 s for the same run second on a cold disk); now the
two should agree to within the machine's noise.
"""
from __future__ import annotations

import argparse
import sys
import warnings


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.first_run", description=__doc__.splitlines()[0])
    parser.add_argument("--method", default="dense")
    parser.add_argument("--profile", default="smoke")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    if "torch._dynamo" in sys.modules:
        print("warning: torch._dynamo is already imported; run this in a fresh process", file=sys.stderr)
    import torch

    import cropkit

    torch.set_num_threads(args.threads)
    seconds = []
    for _ in range(2):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            seconds.append(cropkit.run(args.method, profile=args.profile, cache=False, progress=False,
                                       measure_emissions=False).train_seconds)
    print(f"{args.method} ({args.profile}) on {cropkit.hardware.describe()}")
    print(f"first run {seconds[0]:.3f} s, same run again {seconds[1]:.3f} s, ratio {seconds[0] / seconds[1]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
