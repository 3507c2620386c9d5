"""What the EarlyCroP detector costs: one `EarlyCroPDetector.update` per epoch, as a % of the epoch (target < 1 %).

    python benchmarks/detector_overhead.py                    # the cpu profile's run setting (digits, cnn)
    python benchmarks/detector_overhead.py --model resnet18 --width 0.25 --epochs 3

It trains the profile's model with the profile's batch size and, at the end of every epoch, times
``detector.update(model)`` (Δ_t = ‖θ_t − θ₀‖² on the model's device, one ``.item()``), against the epoch's
training time as the trainer measured it (the steps, without the test evaluation). Medians over epochs.
"""
from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch

import cropkit as ck
from cropkit.experiments import profiles
from cropkit.training import loop as train
from cropkit.training import timing


class TimedDetector(train.Callback):
    """Feeds the detector at every epoch end and records how long each update took."""

    def __init__(self, detector: timing.EarlyCroPDetector):
        self.detector, self.seconds = detector, []

    def on_epoch_end(self, trainer) -> None:
        start = time.perf_counter()
        self.detector.update(trainer.model)
        self.seconds.append(time.perf_counter() - start)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="cpu", choices=profiles.PROFILES)
    parser.add_argument("--data")
    parser.add_argument("--model")
    parser.add_argument("--width", type=float)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--rule", default="seed", choices=timing.RULES)
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = profiles.settings("run", args.profile, data=args.data, model=args.model, width=args.width)

    data = ck.data.load(cfg.data, batch_size=cfg.batch_size, seed=0, limit=cfg.limit)
    model = ck.models.build(cfg.model, data.input_shape, data.num_classes, width=cfg.width, seed=0)
    reference = {"sparsity": 0.9} if args.rule == "reference" else {}
    detector = timing.EarlyCroPDetector(model, rule=args.rule, **reference)
    timed = TimedDetector(detector)
    trainer = train.Trainer(model, data, args.epochs, lr=cfg.lr, weight_decay=cfg.weight_decay, callbacks=[timed],
                            progress=False)
    history = trainer.fit()

    epoch_s = statistics.median(history.column("seconds"))
    update_s = statistics.median(timed.seconds)
    share = 100 * update_s / epoch_s
    params = sum(p.numel() for p in model.parameters())
    print(f"device: {trainer.device} ({platform.processor() or platform.machine()}, "
          f"{torch.get_num_threads()} torch threads), profile {args.profile}")
    print(f"{cfg.model} (width {cfg.width}, {params:,} parameters) on {cfg.data}, batch {cfg.batch_size}, "
          f"{len(data.train)} steps per epoch, {args.epochs} epochs, {args.rule} rule")
    print(f"epoch (training steps only), median: {epoch_s * 1e3:9.1f} ms")
    print(f"EarlyCroPDetector.update, median:    {update_s * 1e3:9.3f} ms   (per update: "
          + ", ".join(f"{s * 1e3:.3f}" for s in timed.seconds) + " ms)")
    print(f"overhead per epoch: {share:.3f} % of an epoch  (target < 1 %: {'met' if share < 1 else 'NOT met'})")
    return dict(epoch_ms=epoch_s * 1e3, update_ms=update_s * 1e3, percent=share)


if __name__ == "__main__":
    main()
