"""The command line: one method, or the paper's table, from the shell (same options as `cropkit.run`).

    python -m cropkit run earlycrop-s --data digits --model cnn --sparsity 0.9 --epochs 10 --seed 0 --profile cpu
    python -m cropkit compare dense snap earlycrop-s --seeds 0 1 2 --csv outputs/table.csv
    python -m cropkit compare all --profile cpu --json outputs/table.json
    python -m cropkit sweep dense snap earlycrop-s --sparsity 0.9 0.95 --seeds 0 1 2 --executor local --dry-run
    python -m cropkit methods
    python -m cropkit lessons my-lessons          # copy the lessons (notebooks) out of an installed cropkit

Method options that have no flag of their own go through ``--set key=value`` (values are Python literals):
``--set threshold=0.05 --set rule=reference``. Installed, the same commands run as ``cropkit run …``.
"""
from __future__ import annotations

import argparse
import ast
import sys
import time
from pathlib import Path

import torch

from cropkit.experiments import claims, comparison, paper_grid, results, runs, sweeps
from cropkit.experiments.results import default_cache_dir
from cropkit.methods import options
from cropkit.methods import registry as methods
from cropkit.methods.registry import METHODS
from cropkit.paths import unwritable
from cropkit.training import loop as train
from cropkit.training.tracking import TensorBoard


def _option(text: str) -> tuple[str, object]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected key=value, got {text!r}")
    try:
        return key, ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return key, value  # a bare word such as rule=reference


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}")
    return value


def _common(parser: argparse.ArgumentParser, sweep: bool = False) -> None:
    """The run options every subcommand that runs takes; a sweep takes several sparsities and always caches."""

    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = ("options for --set KEY=VALUE (cropkit.methods.options; a method's own options are declared "
                     "beside it in cropkit.methods):\n" + options.help_text(runs.options()))
    parser.add_argument("--data", help="dataset (default: the profile's)")
    parser.add_argument("--model", help="model name (default: the profile's)")
    if sweep:
        parser.add_argument("--sparsity", type=float, nargs="+", default=[0.9], metavar="S",
                            help="target weight sparsities in [0, 1) (default 0.9)")
    else:
        parser.add_argument("--sparsity", type=float, default=0.9,
                            help="target weight sparsity in [0, 1) (default 0.9)")
    parser.add_argument("--epochs", type=int, help="epochs of the sparse phase (default: the profile's)")
    parser.add_argument("--width", type=float, help="width multiplier of the model (default: the profile's)")
    parser.add_argument("--profile", default="cpu", choices=("smoke", "cpu", "paper"), help="default: cpu")
    parser.add_argument("--device", help="torch device: cpu, cuda, cuda:N, mps (default: cuda if available, else cpu)")
    parser.add_argument("--set", dest="options", type=_option, action="append", default=[], metavar="KEY=VALUE",
                        help="any other run option, e.g. --set threshold=0.05 (repeatable; listed below)")
    if not sweep:
        parser.add_argument("--no-cache", action="store_true",
                            help="neither replay nor store cached results, nor checkpoint (with the cache, a run "
                                 "started again resumes from its last finished epoch)")
    parser.add_argument("--cache-dir", help="where results are cached (default: outputs/cache or $CROPKIT_CACHE)")
    parser.add_argument("--tensorboard", metavar="DIR", help="log every run's epochs for TensorBoard into DIR "
                        "(cropkit.training.tracking; open with: tensorboard --logdir DIR); a cached run logs nothing")
    parser.add_argument("--pin-memory", action=argparse.BooleanOptionalAction, default=None,
                        help="page-locked batches for fast copies to a GPU (default: on when the device is CUDA); "
                        "loader workers: --set num_workers=N")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.add_argument("--threads", type=_positive_int, help="torch CPU threads of every run (default: torch's; with "
                        "several workers or local jobs at once, this machine's CPUs shared among them; 1 is often "
                        "faster for these small networks, and steadier on a busy machine); in a CPU run's cache key")


def parser() -> argparse.ArgumentParser:

    top = argparse.ArgumentParser(prog="cropkit", description="Early network pruning: run a method or compare several.")
    sub = top.add_subparsers(dest="command", required=True)
    one = sub.add_parser("run", help="run one method and print its row")
    one.add_argument("method", choices=METHODS)
    one.add_argument("--seed", type=int, default=0)
    one.add_argument("--json", help="also write the full result (with history) to this JSON file")
    _common(one)
    many = sub.add_parser("compare", help="run methods over seeds and print the paper's table")
    many.add_argument("methods", nargs="+", metavar="method", help=f"'all' or any of: {' '.join(METHODS)}")
    many.add_argument("--seeds", type=int, nargs="+", help="default: the profile's seeds")
    many.add_argument("--workers", type=_positive_int, default=1,
                      help="runs at once, in separate processes (default 1)")
    many.add_argument("--csv", help="save the table here (and the per-run rows beside it)")
    many.add_argument("--json", help="save the table and the per-run rows here")
    _common(many)
    sweep = sub.add_parser("sweep", help="one job per method × sparsity × seed through submitit (local processes "
                           "or a SLURM array), skipping cached ones; then the paper's table")
    sweep.add_argument("methods", nargs="*", metavar="method", help=f"'all' or any of: {' '.join(METHODS)}")
    sweep.add_argument("--plan", choices=("paper",), help="instead of methods: every setting of the paper's tables "
                       "and figures (cropkit.experiments.paper_grid), with --dry-run")
    sweep.add_argument("--seeds", type=int, nargs="+", help="default: the profile's seeds")
    sweep.add_argument("--executor", default="local", choices=("local", "slurm"), help="default: local")
    sweep.add_argument("--partition", help="SLURM partition (required with --executor slurm)")
    sweep.add_argument("--gpus-per-job", type=int, default=1, help="GPUs per job (default 1; a local job sees that "
                       "many of this machine's GPUs, 0: none)")
    sweep.add_argument("--time-limit", type=_positive_int, default=24 * 60, metavar="MIN",
                       help="time limit per job in minutes (default 1440); a job that reaches it is resubmitted "
                       "and resumes")
    sweep.add_argument("--cpus-per-job", type=_positive_int, metavar="N", help="SLURM: CPUs per job, and the job's "
                       "torch threads (default: 1 without a GPU, else the cluster's default)")
    sweep.add_argument("--array-parallelism", type=_positive_int, metavar="N",
                       help="jobs at once (default: SLURM 32, local 1)")
    sweep.add_argument("--folder", help="where the tables and the jobs' logs go (default: beside the cache)")
    sweep.add_argument("--dry-run", action="store_true", help="print the jobs, their epochs and a device-hours "
                       "estimate; submit nothing")
    sweep.add_argument("--epoch-seconds", type=float, help="seconds of one dense epoch for the dry run's estimate "
                       "(default: measured here)")
    sweep.add_argument("--no-wait", action="store_true", help="SLURM: submit and return; the same command again "
                       "later writes the table")
    _common(sweep, sweep=True)
    listing = sub.add_parser("methods", help="list the methods and their facts: family, when they prune, the most "
                                             "epochs they train and how many cuts, under a profile")
    listing.add_argument("--profile", default="cpu", choices=("smoke", "cpu", "paper"), help="default: cpu")
    claims = sub.add_parser("claims", help="check the paper's claims: one row per claim, the paper's number, "
                                           "the kit's, "
                                           "a verdict (runs what it needs, cached)")
    claims.add_argument("--profile", default="cpu", choices=("smoke", "cpu", "paper"), help="default: cpu")
    claims.add_argument("--seeds", type=int, nargs="+", help="default: the profile's (3 under cpu)")
    claims.add_argument("--out", default="outputs/claims.md", help="Markdown table written here "
                        "(default: outputs/claims.md)")
    claims.add_argument("--cache-dir", help="where results are cached (default: outputs/cache or $CROPKIT_CACHE)")
    claims.add_argument("--quiet", action="store_true", help="no progress bars")
    claims.add_argument("--threads", type=_positive_int, nargs="+", metavar="N",
                        help="torch CPU threads per run (default: the setting's, 1 under cpu); several (e.g. 1 2) "
                        "run the claims under each and call a verdict that differs between them undecided")
    claims.add_argument("--kernels", nargs="+", default=["native"], choices=("native", "avx2"),
                        help="CPU kernels the runs use (default: native, what torch picks for this CPU); several (e.g. "
                        "native avx2) run the claims with each, AVX2's in worker processes with their own cache "
                        "folder, and call a verdict that differs between them undecided")
    claims.add_argument("--workers", type=_positive_int, help="runs at once (default: the setting's, 2 under cpu, "
                        "fewer where runs × threads would exceed the CPUs)")
    lessons = sub.add_parser("lessons",
                             help="copy the lessons (notebooks) into a folder, e.g. cropkit lessons my-lessons")
    lessons.add_argument("dest", help="folder to copy them into (created if needed)")
    lessons.add_argument("--force", action="store_true", help="overwrite lessons already in that folder")
    return top


def _kwargs(args) -> dict:

    flags = dict(data=args.data, model=args.model, sparsity=args.sparsity, epochs=args.epochs, width=args.width,
                 profile=args.profile, device=args.device, cache_dir=args.cache_dir, progress=not args.quiet,
                 callbacks=[TensorBoard(args.tensorboard)] if args.tensorboard else [], pin_memory=args.pin_memory,
                 threads=args.threads, **({} if args.command == "sweep" else {"cache": not args.no_cache}))
    given = dict(args.options)
    clash = [key for key in given if key in flags]
    if clash:
        raise ValueError(f"--set {clash[0]}=…: {clash[0]} is set by a flag of its own (--help lists them, e.g. "
                         f"--width, --epochs, --threads), not by --set")
    return {**flags, **given}


def _sweep(args) -> int:

    resources = dict(gpus_per_job=args.gpus_per_job, time_min=args.time_limit)
    if args.partition:
        resources["partition"] = args.partition
    if args.array_parallelism:
        resources["array_parallelism"] = args.array_parallelism
    if args.cpus_per_job:
        resources["cpus_per_task"] = args.cpus_per_job
    if args.plan:  # the paper's grid (cropkit.experiments.paper_grid): its own data, models, methods and sparsities

        if not args.dry_run or args.methods:
            raise ValueError("--plan lists and prices a whole plan: use it with --dry-run and no methods; each "
                             "setting's own `cropkit sweep` command is printed to submit it")
        paper_grid.dry_run(args.plan, seeds=args.seeds, cache_dir=args.cache_dir, epoch_seconds=args.epoch_seconds)
        return 0
    if not args.methods:
        raise ValueError("name the methods to sweep ('all' or any of cropkit methods), or give --plan")
    names = list(methods.METHODS) if args.methods == ["all"] else args.methods
    table = sweeps.sweep(names, seeds=args.seeds, executor=args.executor, folder=args.folder, slurm=resources,
                         dry_run=args.dry_run, wait=not args.no_wait, epoch_time=args.epoch_seconds,
                         **_kwargs(args))
    if table is not None and not args.dry_run:
        print(comparison.markdown(table.drop(columns=["Type"])))
    return 0


def _check_outputs(args) -> None:
    """Output files are checked before any run starts: a typo must not cost the table after hours of training."""

    wanted = [(getattr(args, "json", None), ".json" if args.command == "compare" else None),
              (getattr(args, "csv", None), ".csv")]
    for path, suffix in wanted:
        if not path:
            continue
        if suffix and not path.endswith(suffix):
            raise ValueError(f"--{suffix[1:]} {path}: the file name must end in {suffix}")
        reason = unwritable(path)
        if reason:
            raise ValueError(f"cannot write {path}: {reason}")


def _claims(args) -> int:
    reason = unwritable(args.out)
    if reason:
        raise ValueError(f"cannot write {args.out}: {reason}")
    table = claims.check(args.profile, progress=not args.quiet, cache_dir=args.cache_dir, threads=args.threads,
                         kernels=args.kernels, seeds=args.seeds, workers=args.workers)
    text = claims.markdown(table)
    print(text)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)
    print(f"wrote {args.out}")
    return 0


def _run(args) -> int:
    import json

    import pandas as pd


    if args.command == "claims":
        return _claims(args)
    if args.command == "sweep":
        return _sweep(args)
    _check_outputs(args)
    if args.command == "run":
        result = runs.run(args.method, seed=args.seed, **_kwargs(args))
        for key, value in result.row().items():
            print(f"{key:20s} {value}")
        if args.json:
            with open(args.json, "w") as f:
                json.dump(result.to_json(), f, indent=1)
        return 0
    names = list(methods.METHODS) if args.methods == ["all"] else args.methods
    start = time.perf_counter()
    table = comparison.compare(names, seeds=args.seeds, workers=args.workers, **_kwargs(args))
    setting = table.attrs["setting"]
    print(f"{setting['model']} on {setting['data']}, target weight sparsity {setting['sparsity']}, "
          f"seeds {setting['seeds']}, profile {setting['profile']} ({time.perf_counter() - start:.0f} s)")
    with pd.option_context("display.max_columns", None, "display.width", 250):
        print(table.drop(columns=["Type"]).to_string())
    for path in (args.csv, args.json):
        if path:
            for written in results.save_table(table, path):
                print(f"wrote {written}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Exit status 0 on success; 2 with ``cropkit: error: ...`` (no traceback) for a user's mistake; 130 on Ctrl+C."""

    args = parser().parse_args(argv)
    if getattr(args, "threads", None) and args.command != "claims":  # the claims set each run's threads
        torch.set_num_threads(args.threads)
    if args.command == "methods":
        for name, spec in methods.REGISTRY.items():
            cfg = runs.settings(name, profile=args.profile)
            print(f"{name:18s} {spec.label:18s} {spec.family:13s} {spec.when:15s} ≤ {spec.epochs(cfg):3d} epochs, "
                  f"{spec.cuts(cfg)} cut(s) ({args.profile}): {spec.schedule}")
        return 0
    if args.command == "lessons":
        from cropkit.lessons.notebook import copy_lessons  # deferred: nbclient (its schema validation, 5 s to import)

        try:
            copies = copy_lessons(args.dest, overwrite=args.force)
        except (FileExistsError, FileNotFoundError) as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        print("\n".join(str(p) for p in copies))
        return 0
    try:
        return _run(args)
    except (ValueError, FileNotFoundError, train.DivergedError) as err:  # a user's mistake, said in one line
        print(f"cropkit: error: {err}", file=sys.stderr)
        return 2
    except RuntimeError as err:  # a sweep's jobs failed, or submitit could not submit them
        print(f"cropkit: error: {err}", file=sys.stderr)
        return 1
    except OSError as err:  # writing an output failed after the runs (they are cached)
        print(f"cropkit: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        cached = ("" if getattr(args, "no_cache", False)  # a sweep and the claims always cache
                  else f"; finished runs are cached in {args.cache_dir or default_cache_dir()}")
        print(f"cropkit: interrupted{cached}", file=sys.stderr)
        return 130
