"""Issue 20: every row whose spread decides claims 1–4, seed by seed, under one and two torch threads (and, with
``--kernels native avx2``, with this CPU's kernels and restricted to AVX2).

The claims table (``./kit claims``) runs five seeds (``deciding_seeds``) for every row that decides claims 1–4: dense,
EarlyCroP-S at both high sparsities, GateDecorators (the best other structured row at 95 %), EarlyCroP-U, CroPit-U
(the best at-init unstructured row) and LTR, with EarlyCroP-S and the per-layer floor (``layer_floor``, a deviation
from the paper) beside them. This prints those rows' test accuracy per seed, their training loss at the end, and the
verdicts of claims 1–4 by the claims' own rule (`cropkit.experiments.verdicts`: margin against √(σ_a² + σ_b²); a
verdict that differs between environments is undecided). Same setting and cache keys as ``./kit claims``: on the
claims' cache it replays their runs without training; on an empty one it makes them (runs at once fit the CPUs,
`cropkit.experiments.claims.fit_workers`).

    python benchmarks/claims_deciding.py                          # threads 1 and 2, the claims' cpu setting
    python benchmarks/claims_deciding.py --threads 1 --cache-dir DIR
    python benchmarks/claims_deciding.py --threads 1 --kernels native avx2   # AVX2 runs in DIR/kernels-avx2

Claims 2 and 3 are read here as EarlyCroP against the rival that was best in the claims table under both thread
counts; the claims table ranks every method.
"""
from __future__ import annotations

import argparse
import statistics

from cropkit.experiments import claims, grid
from cropkit.experiments import verdicts as V
from cropkit.methods.registry import LABELS


def rows(cfg) -> list[tuple[str, float, dict]]:
    p, high = cfg.sparsity, list(cfg.high_sparsities)
    return ([("dense", 0.0, {})] + [("earlycrop-s", s, {}) for s in high]
            + [("gatedecorators", p, {}), ("earlycrop-u", p, {}), ("cropit-u", p, {}), ("ltr", p, {})]
            + [("earlycrop-s", s, {"layer_floor": cfg.layer_floor}) for s in high])


def _pair(runs, contender: str, rival: str) -> tuple[str, str]:
    p = runs.cfg.sparsity
    a, b = runs.values(contender, p, "test_acc"), runs.values(rival, p, "test_acc")
    margin, spread = statistics.fmean(a) - statistics.fmean(b), V.seed_spread(a, b)
    return (f"{LABELS[contender]} {claims._ms(a)} vs {LABELS[rival]} {claims._ms(b)}: margin {100 * margin:+.2f} pt, "
            f"spread {100 * spread:.2f} pt"), V.margin_verdict(margin, spread)


VERDICTS = (("1 EarlyCroP-S within 2 points of dense", claims._near_dense),
            ("1 with the floor (a deviation): the same test",
             lambda runs: claims._near_dense(runs, layer_floor=runs.cfg.layer_floor)),
            ("2 EarlyCroP-S above GateDecorators", lambda runs: _pair(runs, "earlycrop-s", "gatedecorators")),
            ("3 EarlyCroP-U above CroPit-U", lambda runs: _pair(runs, "earlycrop-u", "cropit-u")),
            ("4 LTR matches EarlyCroP-U at ≥ 2.5× the time", claims._ltr_cost))


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", default="cpu", choices=("cpu", "smoke"), help="the claims' setting")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="torch threads per run")
    parser.add_argument("--cache-dir", default=None, help="where the runs are cached (default: the kit's cache)")
    parser.add_argument("--kernels", nargs="+", default=["native"], choices=tuple(grid.KERNELS),
                        help="CPU kernels the runs use (as ./kit claims --kernels)")
    args = parser.parse_args(argv)
    kernels = claims.check_kernel_sets(args.kernels)
    environments = [claims.Environment(t, k) for k in kernels for t in args.threads]
    found = {}
    for env in environments:
        cfg = claims.settings(args.profile, threads=env.threads)
        cfg.workers = claims.fit_workers(cfg.workers, env.threads)
        runs = claims.Runs(cfg, progress=True, cache_dir=args.cache_dir, kernels=env.kernels)
        runs.fetch(rows(cfg))
        print(f"\n{env.describe(' per run')}, seeds {cfg.deciding_seeds}: test accuracy per seed, "
              "mean ± std, training loss at the end")
        for method, sparsity, options in rows(cfg):
            results = runs.get(method, sparsity, **options)
            acc = [100 * r.test_acc for r in results]
            loss = statistics.fmean(r.history[-1]["train_loss"] for r in results)
            label = LABELS[method] + "".join(f" {k}={v}" for k, v in options.items())
            print(f"  {label:28} @{sparsity:4.0%}  {' '.join(f'{a:5.1f}' for a in acc)}   "
                  f"{statistics.fmean(acc):5.1f} ± {statistics.stdev(acc):4.1f} %   loss {loss:.3f}", flush=True)
        found[env] = [check(runs) for _, check in VERDICTS]
        for (name, _), (text, verdict) in zip(VERDICTS, found[env]):
            print(f"  claim {name}: {verdict} ({text})")
    if len(environments) > 1:
        print("\nverdict across environments:")
        for i, (name, _) in enumerate(VERDICTS):
            print(f"  claim {name}: {V.across([found[env][i][1] for env in environments])} "
                  f"({', '.join(f'{env}: {found[env][i][1]}' for env in environments)})")
    return found


if __name__ == "__main__":
    main()
