"""Issue 11: find an offline setting where EarlyCroP's premise is visible — the detector fires while the network is
still learning (the paper's premise, §3.3: prune early, once the network has turned lazy; lesson 02 shows it).

    python benchmarks/premise_search.py --list                                   # the candidates
    python benchmarks/premise_search.py --only 5k-cnn1d-w0.5-b128 --seeds 0 1 2 \
        --set rule=reference tau=0.6 max_dense=10 epochs=10                      # one setting, as EarlyCroP runs it
    python benchmarks/premise_search.py --only digits-cnn-w0.5 5k-cnn1d-w0.5-b128 --seeds 0 1 2 \
        --taus 0.1 0.5 1 --ref-sparsities 0.5 0.6 0.7 0.9                      # one run each, a grid of τ
    python benchmarks/premise_search.py --methods mnist1d cnn1d 0.5 --sparsity 0.8 --seeds 0 1 2 \
        --run batch_size=128 rule=reference threshold=0.6 max_dense_epochs=10 epochs=10 measure_emissions=False

What it found (issue 11; 3 seeds, one thread on a shared 2-core machine):

* the seed rule at its default τ = 0.1 never fires while the network learns, on any candidate: with Adam at a
  constant LR, Δ_t = ‖θ_t − θ₀‖² grows about linearly (or faster) for as long as the loss falls, so
  |Δ_t − Δ_{t−1}| / Δ_1 stays ≈ 0.5–2 and drops below 0.1 only once the training set is fitted (digits: epoch
  10–11 at 100 %) or the cap decides (mnist1d, 12 epochs). Larger data, narrower nets, bigger batches and the
  every-N-steps cadence do not change that (the ratio is nearly scale-free in the block length); larger seed τ
  are erratic (the ratio is not monotone: τ = 0.5–1 fires at epoch 2 on some settings and never on others).
* the reference rule's un-squared, relative distance d_t = ‖θ_t − θ_1‖ / ‖θ_1‖ decays smoothly (its ratio falls
  ≈ 0.75, 0.6, 0.45, 0.38, 0.3 … from epoch 3); at τ = 0.5–0.7 it fires at epoch 4–6 while the net still learns.
  Its default τ = 1 − p (0.1 at p = 0.9) is as late as the seed rule's.
* chosen for the cpu lessons: canonical ``mnist1d`` (4000 + 1000), the ``cnn`` at width 0.5 (with the BatchNorm1d
  after its hidden Linear and the new init), batch 128, Adam 2e-3, reference rule with τ = 0.7 (threshold=0.7),
  detector once per epoch, max_dense_epochs 10, 6 sparse epochs: it fires at epoch 3–4 at 88.7 / 91.6 / 93.9 %
  train accuracy (final 99.4 / 99.4 / 99.9 %), loss 0.43 / 0.37 / 0.27 against 0.07 / 0.06 / 0.04 (seeds 0, 1, 2).

For each candidate it trains the *dense* network exactly as EarlyCroP's dense phase does (constant LR, the seed
rule's detector, cap ``max_dense`` epochs), and when the detector fires it goes on *without pruning* with a fresh
Adam and the one-cycle schedule for ``epochs`` more epochs — the dense twin of the EarlyCroP run, with the same
total length. At every epoch end and at the firing point it measures, in eval mode:

    train accuracy / loss on a fixed subset of the training set (``--train-probe`` samples),
    the scoring batches' accuracy / loss (the batches CroP scores θ_t on: ``score_batches`` batches of a loader
    of their own, seeded like `cropkit.methods.context.Context.batches`),
    test accuracy, and the detector's ratio.

The criterion (issue 11): at the firing point the train accuracy is at least 5 points below its final value and
the loss clearly above its final value. ``s/ep`` is the median training time of a dense epoch (steps only, one
thread); ``gap`` = final train acc − train acc at firing (points); ``loss×`` = train loss at firing / final.

The models are the zoo's (`cropkit.tasks.models.build`: Kaiming initialisation with zero biases, a BatchNorm1d after the
``cnn``'s hidden Linear); the search was run with that initialisation patched in before the zoo adopted it.
"""
from __future__ import annotations

import argparse
import dataclasses
import statistics
import time
import warnings

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from cropkit.tasks import data as data_lib
from cropkit.tasks import loaders, models
from cropkit.tasks.task import Data
from cropkit.training import loop as train
from cropkit.training import timing


@dataclasses.dataclass(frozen=True)
class Candidate:
    name: str
    data: str = "mnist1d"        # "digits" or "mnist1d"
    samples: int = 5000          # mnist1d only: samples generated (80 % train)
    model: str = "cnn1d"
    width: float = 1.0
    batch_size: int = 64
    lr: float = 2e-3
    max_dense: int = 12          # the cap of the dense phase (max_dense_epochs)
    epochs: int = 6              # the sparse phase's length (here: dense, one-cycle)
    tau: float = timing.DEFAULT_THRESHOLD  # the seed rule's τ, or the reference rule's (τ = 1 − p: 0.1 at p = 0.9)
    rule: str = "seed"
    every_steps: int | None = None  # detector cadence; None = once per epoch
    score_batches: int = 4


CANDIDATES = [
    # the lessons' current data and the canonical mnist1d (the issue's baselines)
    Candidate("digits-cnn-w0.5", data="digits", model="cnn", width=0.5),
    Candidate("digits-cnn-w1", data="digits", model="cnn", width=1.0),
    Candidate("5k-cnn1d-w1", samples=5000, width=1.0),
    Candidate("5k-cnn1d-w0.5", samples=5000, width=0.5),
    Candidate("5k-cnn1d-w0.25", samples=5000, width=0.25),
    Candidate("5k-cnn-w0.5", samples=5000, model="cnn", width=0.5),
    Candidate("5k-cnn1d-w0.5-b128", samples=5000, width=0.5, batch_size=128),
    Candidate("5k-cnn1d-w1-b128", samples=5000, width=1.0, batch_size=128),
    Candidate("5k-cnn1d-w1-b256", samples=5000, width=1.0, batch_size=256),
    Candidate("20k-cnn1d-w1-b512", samples=20000, width=1.0, batch_size=512),
    Candidate("5k-cnn1d-w0.25-b128", samples=5000, width=0.25, batch_size=128),
    Candidate("5k-cnn-w0.5-b128", samples=5000, model="cnn", width=0.5, batch_size=128),
    Candidate("5k-cnn-w0.25-b128", samples=5000, model="cnn", width=0.25, batch_size=128),
    # larger generated mnist1d, narrower nets, bigger batches (cheaper epochs)
    Candidate("10k-cnn1d-w0.25-b128", samples=10000, width=0.25, batch_size=128),
    Candidate("20k-cnn1d-w0.25-b256", samples=20000, width=0.25, batch_size=256),
    Candidate("20k-cnn1d-w0.25-b128", samples=20000, width=0.25, batch_size=128),
    Candidate("20k-cnn1d-w0.5-b256", samples=20000, width=0.5, batch_size=256),
    Candidate("20k-cnn-w0.25-b256", samples=20000, model="cnn", width=0.25, batch_size=256),
    # no BatchNorm: nothing scale-invariant keeps drifting outwards
    Candidate("20k-mlp-w0.5-b256", samples=20000, model="mlp", width=0.5, batch_size=256),
    Candidate("5k-mlp-w1", samples=5000, model="mlp", width=1.0),
    # the detector every N steps instead of every epoch
    Candidate("5k-cnn1d-w1-every10", samples=5000, every_steps=10),
    Candidate("20k-cnn1d-w0.25-b256-every20", samples=20000, width=0.25, batch_size=256, every_steps=20),
]




def load(c: Candidate, seed: int) -> Data:
    if c.data == "digits":
        return data_lib.load("digits", batch_size=c.batch_size, seed=seed)
    from cropkit.paths import data_root

    d = data_lib._mnist1d_arrays(data_root(), c.samples)
    x, xt = (torch.tensor(d[k], dtype=torch.float32).unsqueeze(1) for k in ("x", "x_test"))
    x, xt = data_lib._standardise(x, xt)
    y, yt = (torch.tensor(d[k], dtype=torch.long) for k in ("y", "y_test"))
    tr, te = loaders.tensor_loaders(x, y, xt, yt, c.batch_size, seed)
    return Data(f"mnist1d-{c.samples}", tr, te, (1, 40), 10)


@torch.no_grad()
def evaluate(model: nn.Module, batches) -> tuple[float, float]:
    was = model.training
    model.eval()
    loss = correct = n = 0
    for x, y in batches:
        logits = model(x)
        loss += nn.functional.cross_entropy(logits, y, reduction="sum").item()
        correct += (logits.argmax(1) == y).sum().item()
        n += len(y)
    model.train(was)
    return loss / n, correct / n


class Probe(train.Callback):
    """Per-epoch train-probe / scoring-batch / test numbers and the detector's ratio."""

    def __init__(self, probe, scoring, det: timing.DetectorCallback):
        self.probe, self.scoring, self.det, self.rows = probe, scoring, det, []

    def snapshot(self, trainer) -> dict:
        tl, ta = evaluate(trainer.model, self.probe)
        sl, sa = evaluate(trainer.model, self.scoring)
        return dict(epoch=trainer.epoch, step=trainer.step, train_loss=tl, train_acc=ta, score_loss=sl,
                    score_acc=sa)

    def on_epoch_end(self, trainer) -> None:
        r = self.det.detector.ratios
        self.rows.append({**self.snapshot(trainer), "test_acc": trainer.history.epochs[-1]["test_acc"],
                          "ratio": r[-1] if r else float("nan"),
                          "seconds": trainer.history.epochs[-1]["seconds"]})


def measure(c: Candidate, seed: int, probe_size: int, verbose: bool) -> dict:
    data = load(c, seed)
    ds = data.train.dataset
    probe = list(DataLoader(TensorDataset(*(t[:probe_size] for t in ds.tensors)), batch_size=1024))
    scoring = data_lib.take(DataLoader(ds, batch_size=c.batch_size, shuffle=True,
                                       generator=torch.Generator().manual_seed(seed)), c.score_batches)
    model = models.build(c.model, data.input_shape, data.num_classes, width=c.width, seed=seed)
    steps_per_epoch = len(data.train)
    cap = c.max_dense if c.every_steps is None else max(1, c.max_dense * steps_per_epoch // c.every_steps)
    fired = {}

    def on_fire(trainer):
        fired.update(probe_cb.snapshot(trainer), forced=det.forced)
        mid = c.every_steps is not None and trainer.step % steps_per_epoch != 0
        trainer.reset_optimizer(epochs=c.epochs + int(mid), schedule="onecycle")

    det = timing.DetectorCallback(timing.EarlyCroPDetector(model, threshold=c.tau, rule=c.rule, max_epochs=cap),
                                  every_steps=c.every_steps, on_fire=on_fire)
    probe_cb = Probe(probe, scoring, det)
    trainer = train.Trainer(model, data, c.max_dense + c.epochs, lr=c.lr, schedule="constant", progress=False,
                            seed=seed, callbacks=[det, probe_cb])
    # the dense phase may end before the cap: the one-cycle continuation then shortens the plan
    trainer.fit()
    rows = probe_cb.rows
    final = rows[-1]
    dense_seconds = [r["seconds"] for r in rows[: max(1, fired.get("epoch", len(rows)))]] or [rows[0]["seconds"]]
    if verbose:
        print(f"  {c.name} seed {seed}: fired at epoch {fired['epoch']} step {fired['step']}"
              f"{' (forced)' if fired['forced'] else ''}")
        for r in rows:
            print(f"    ep {r['epoch']:2d}  train {100 * r['train_acc']:5.1f}% loss {r['train_loss']:.3f}  "
                  f"scoring {100 * r['score_acc']:5.1f}% loss {r['score_loss']:.3f}  test {100 * r['test_acc']:5.1f}%  "
                  f"ratio {r['ratio']:.3f}  {r['seconds']:.2f}s")
    fire_epoch = fired["step"] / steps_per_epoch  # epochs of training at the firing point (fractional mid-epoch)
    return dict(name=c.name, seed=seed, fire_epoch=round(fire_epoch, 2), fire_step=fired["step"],
                forced=fired["forced"],
                steps_per_epoch=steps_per_epoch,
                acc_fire=fired["train_acc"], acc_final=final["train_acc"],
                loss_fire=fired["train_loss"], loss_final=final["train_loss"],
                score_acc_fire=fired["score_acc"], score_loss_fire=fired["score_loss"],
                test_fire=rows[max(0, fired["epoch"] - 1)]["test_acc"], test_final=final["test_acc"],
                epochs_total=final["epoch"], s_per_epoch=statistics.median(dense_seconds))


class Ratios(train.Callback):
    """A second, passive detector per rule, fed at every epoch end: its ratios for the τ grid."""

    def __init__(self, model):
        self.detectors = {rule: timing.EarlyCroPDetector(model, threshold=1.0, rule=rule) for rule in timing.RULES}

    def on_epoch_end(self, trainer) -> None:
        for d in self.detectors.values():
            d.update(trainer.model)


def sweep(c: Candidate, seed: int, probe_size: int, taus, sparsities) -> list[dict]:
    """One dense run to the cap (constant LR), then ``epochs`` of one-cycle; every (rule, τ) is evaluated on the
    recorded ratios: the firing epoch is the first dense epoch whose ratio is below τ (none: never fired)."""
    data = load(c, seed)
    ds = data.train.dataset
    probe = list(DataLoader(TensorDataset(*(t[:probe_size] for t in ds.tensors)), batch_size=1024))
    scoring = data_lib.take(DataLoader(ds, batch_size=c.batch_size, shuffle=True,
                                       generator=torch.Generator().manual_seed(seed)), c.score_batches)
    model = models.build(c.model, data.input_shape, data.num_classes, width=c.width, seed=seed)
    ratios = Ratios(model)
    det = timing.DetectorCallback(timing.EarlyCroPDetector(model, threshold=1e-12, max_epochs=c.max_dense),
                                  on_fire=lambda tr: tr.reset_optimizer(epochs=c.epochs, schedule="onecycle"))
    probe_cb = Probe(probe, scoring, det)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        train.Trainer(model, data, c.max_dense + c.epochs, lr=c.lr, schedule="constant", progress=False, seed=seed,
                      callbacks=[ratios, det, probe_cb]).fit()
    rows, final = probe_cb.rows, probe_cb.rows[-1]
    s_per_epoch = statistics.median(r["seconds"] for r in rows[: c.max_dense])
    grid = [("seed", tau) for tau in taus] + [("reference", round(1 - p, 6)) for p in sparsities]
    out = []
    for rule, tau in grid:
        d = ratios.detectors[rule]
        fire = next((t for t, r in zip(d.ratio_epochs, d.ratios) if t <= c.max_dense and r < tau), None)
        at = rows[(fire or c.max_dense) - 1]
        out.append(dict(name=f"{c.name} {rule[:3]} τ={tau:g}", seed=seed, fire_epoch=fire or c.max_dense,
                        fire_step=(fire or c.max_dense) * len(data.train), forced=fire is None,
                        steps_per_epoch=len(data.train), acc_fire=at["train_acc"], acc_final=final["train_acc"],
                        loss_fire=at["train_loss"], loss_final=final["train_loss"], score_acc_fire=at["score_acc"],
                        score_loss_fire=at["score_loss"], test_fire=at["test_acc"], test_final=final["test_acc"],
                        epochs_total=final["epoch"], s_per_epoch=s_per_epoch))
    return out


# ----------------------------------------------------------------------------- what pruning θ_t gives there

# EarlyCroP's detector and θ_t with another score (`cropkit.run(..., criterion=...)`), beside the at-init methods
ENTRIES = {"dense": ("dense", {}), "earlycrop-u": ("earlycrop-u", {}),
           "magnitude-at-t": ("earlycrop-u", {"criterion": "magnitude"}),
           "random-at-t": ("earlycrop-u", {"criterion": "random"}),
           "crop-u": ("crop-u", {}), "random-u": ("random-u", {})}


def compare_methods(data: str, model: str, width: float, seeds, sparsity: float, cache_dir: str, **options):
    """EarlyCroP-U, magnitude and random at θ_t, CroP-U and Random-U at init, and dense, through `cropkit.run`.
    Returns the per-run rows."""
    import cropkit as ck

    rows = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, (method, extra) in ENTRIES.items():
            for seed in seeds:
                r = ck.run(method, data=data, model=model, width=width, sparsity=sparsity, seed=seed,
                           cache_dir=cache_dir, progress=False, **options, **extra)
                rows.append(dict(method=name, seed=seed, test_acc=r.test_acc, prune_epoch=r.prune_epoch,
                                 epochs_trained=r.epochs_trained, forced=bool(r.forced), seconds=r.train_seconds))
    return rows


def methods_table(rows: list[dict]) -> str:
    out = [f"{'method':16s} {'test acc (mean ± std)':>22s}  {'prune epoch':>12s}  {'forced':>6s}  {'epochs':>6s}  "
           f"{'s/run':>6s}"]
    for method in dict.fromkeys(r["method"] for r in rows):
        rs = [r for r in rows if r["method"] == method]
        accs = [100 * r["test_acc"] for r in rs]
        sd = statistics.stdev(accs) if len(accs) > 1 else 0.0
        pe = ",".join(str(r["prune_epoch"]) for r in rs)
        forced = sum(r["forced"] for r in rs)
        epochs, seconds = statistics.mean(r["epochs_trained"] for r in rs), statistics.mean(r["seconds"] for r in rs)
        out.append(f"{method:16s} {statistics.mean(accs):13.1f} ± {sd:4.1f}   {pe:>12s}  {forced:6d}  "
                   f"{epochs:6.1f}  {seconds:6.1f}")
    return "\n".join(out)


def table(rows: list[dict]) -> str:
    head = (f"{'candidate':44s} {'seed':>4s} {'fire ep':>7s} {'step':>5s} {'acc@fire':>8s} {'final':>6s} {'gap':>5s} "
            f"{'loss@fire':>9s} {'final':>6s} {'loss×':>6s} {'score acc':>9s} {'test fin':>8s} {'s/ep':>5s} ok")
    lines = [head, "-" * len(head)]
    for r in rows:
        gap = 100 * (r["acc_final"] - r["acc_fire"])
        ratio = r["loss_fire"] / max(r["loss_final"], 1e-12)
        ok = gap >= 5 and ratio >= 1.5 and not r["forced"]
        lines.append(f"{r['name']:44s} {r['seed']:4d} {r['fire_epoch']:5.4g}{'*' if r['forced'] else ' ':2s}"
                     f"{r['fire_step']:5d} {100 * r['acc_fire']:7.1f}% {100 * r['acc_final']:5.1f}% {gap:5.1f} "
                     f"{r['loss_fire']:9.3f} {r['loss_final']:6.3f} {ratio:6.1f} {100 * r['score_acc_fire']:8.1f}% "
                     f"{100 * r['test_final']:7.1f}% {r['s_per_epoch']:5.2f} {'yes' if ok else 'no'}")
    lines.append("(* forced: the detector did not fire by the cap; ok = fired by the rule, gap >= 5 points, "
                 "loss at firing >= 1.5 x final)")
    return "\n".join(lines)


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", help="candidate names (default: all)")
    parser.add_argument("--seeds", nargs="*", type=int, default=[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--train-probe", type=int, default=4000, help="training samples the train accuracy is on")
    parser.add_argument("--tau", type=float, help="override τ for every candidate")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                        help="override candidate fields, e.g. --set lr=8e-3 batch_size=128 (names get a suffix)")
    parser.add_argument("--taus", nargs="*", type=float,
                        help="sweep mode: one run to the cap per candidate, evaluated for these seed-rule τ ...")
    parser.add_argument("--ref-sparsities", nargs="*", type=float, default=[],
                        help="... and the reference rule at τ = 1 − p for these p")
    parser.add_argument("--methods", nargs=3, metavar=("DATA", "MODEL", "WIDTH"),
                        help="instead: EarlyCroP-U / magnitude and random at θ_t / CroP-U / Random-U / dense at "
                             "--sparsity through cropkit.run on DATA MODEL WIDTH (other run options: --run k=v ...)")
    parser.add_argument("--sparsity", type=float, default=0.9)
    parser.add_argument("--run", nargs="*", default=[], metavar="KEY=VALUE",
                        help="cropkit.run options (numbers or words)")
    parser.add_argument("--cache-dir", default="premise-cache")
    parser.add_argument("--verbose", action="store_true", help="print every epoch")
    parser.add_argument("--list", action="store_true")
    args = parser.parse_args(argv)
    if args.list:
        for c in CANDIDATES:
            print(c)
        return []
    torch.set_num_threads(args.threads)
    if args.methods:
        def value(v):
            for kind in (int, float):
                try:
                    return kind(v)
                except ValueError:
                    pass
            return {"None": None, "True": True, "False": False}.get(v, v)

        options = {k: value(v) for k, v in (item.split("=", 1) for item in args.run)}
        data, model, width = args.methods
        rows = compare_methods(data, model, float(width), args.seeds, args.sparsity, args.cache_dir, **options)
        print(f"{data} {model} width {width}, sparsity {args.sparsity}, seeds {args.seeds}, {options}")
        print(methods_table(rows))
        return rows
    chosen = [c for c in CANDIDATES if not args.only or c.name in args.only]
    unknown = set(args.only or ()) - {c.name for c in CANDIDATES}
    if unknown:
        raise SystemExit(f"unknown candidate(s) {sorted(unknown)}; --list shows them")
    rows = []
    for c in chosen:
        if args.tau is not None:
            c = dataclasses.replace(c, tau=args.tau, name=f"{c.name}-tau{args.tau:g}")
        for item in args.set:
            key, value = item.split("=", 1)
            kind = type(getattr(c, key))
            value = None if value == "None" else (int(value) if key in ("every_steps",) else
                                                   kind(value) if kind is not type(None) else value)
            c = dataclasses.replace(c, **{key: value, "name": f"{c.name}-{key}{value}"})
        for seed in args.seeds:
            start = time.perf_counter()
            if args.taus is not None:
                rows += sweep(c, seed, args.train_probe, args.taus, args.ref_sparsities)
            else:
                rows.append(measure(c, seed, args.train_probe, args.verbose))
            if args.verbose:
                print(f"  ({time.perf_counter() - start:.0f} s)")
    print(table(rows))
    return rows


if __name__ == "__main__":
    main()
