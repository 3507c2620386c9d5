"""Do the CPU's kernels move a claims run? The same run (the claims' cpu setting, one torch thread) in two fresh
processes on this machine, once with the kernels torch picks for this CPU and once restricted to AVX2 (ATen's
vectorised kernels, oneDNN's convolutions and MKL's BLAS: ``ATEN_CPU_CAPABILITY``, ``ONEDNN_MAX_CPU_ISA``,
``MKL_ENABLE_INSTRUCTIONS``). Nothing else changes: code, data, seed, thread count, library versions.

It prints the digest of the MNIST-1D arrays, each run's kernel capability, test accuracy, training loss per epoch and
the epoch at which the two runs' training losses first differ. The claims' runs tables differ between an Intel Xeon
(the README's table before 2026-12-04) and an AMD EPYC in every row trained past initialisation, while the rows
decided at initialisation (Random-S, SNAP, CroP-S, CroPit-S, EfficientConvNets) keep the same channels: this is the
experiment that changes only the kernels.

    python benchmarks/cpu_kernels.py                       # EarlyCroP-S @95 %, seed 4
    python benchmarks/cpu_kernels.py --method dense --seed 0
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

from cropkit.experiments.grid import KERNELS

ONE_RUN = """
import hashlib, json, sys, torch
from cropkit.experiments import claims, grid
from cropkit.tasks.data import _mnist1d_arrays
from cropkit.paths import data_root
method, sparsity, seed, cache, profile = sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
cfg = claims.settings(profile, threads=1)
runs = claims.Runs(cfg, progress=False, cache_dir=cache)
jobs = grid.plan([method], [sparsity], [seed], profile=profile, cache_dir=cache, progress=False, threads=1,
                 **runs.run_options())
(result,) = grid.execute(jobs, "here", progress=False)
arrays = _mnist1d_arrays(data_root())
digest = hashlib.sha256(b"".join(arrays[k].tobytes() for k in sorted(arrays))).hexdigest()[:16]
print(json.dumps(dict(capability=torch.backends.cpu.get_cpu_capability(), data=digest, test_acc=result.test_acc,
                      prune_epoch=result.prune_epoch, loss=[h["train_loss"] for h in result.history])))
"""

AVX2 = KERNELS["avx2"]  # the variables `./kit claims --kernels avx2` sets


def run(method: str, sparsity: float, seed: int, env: dict, profile: str = "cpu") -> dict:
    with tempfile.TemporaryDirectory() as cache:
        done = subprocess.run([sys.executable, "-c", ONE_RUN, method, str(sparsity), str(seed), cache, profile],
                              env={**os.environ, **env}, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--method", default="earlycrop-s")
    parser.add_argument("--sparsity", type=float, default=0.95)
    parser.add_argument("--seed", type=int, default=4)
    parser.add_argument("--profile", default="cpu", choices=("cpu", "smoke"), help="the claims' setting")
    args = parser.parse_args(argv)
    found = {}
    for name, env in (("this CPU's kernels", {}), ("AVX2 kernels", AVX2)):
        print(f"{args.method} @{args.sparsity:.0%}, seed {args.seed}, one thread, {name} ...", flush=True)
        found[name] = r = run(args.method, args.sparsity, args.seed, env, args.profile)
        print(f"  capability {r['capability']}, MNIST-1D digest {r['data']}, pruned at epoch {r['prune_epoch']}, "
              f"test accuracy {100 * r['test_acc']:.2f} %, training loss at the end {r['loss'][-1]:.4f}", flush=True)
    a, b = found.values()
    differ = next((i + 1 for i, (x, y) in enumerate(zip(a["loss"], b["loss"])) if x != y), None)
    print(f"same data: {a['data'] == b['data']}; training losses first differ at epoch {differ} "
          f"({a['loss'][differ - 1]!r} vs {b['loss'][differ - 1]!r})" if differ else
          f"same data: {a['data'] == b['data']}; every epoch's training loss equal")
    return found


if __name__ == "__main__":
    main()
