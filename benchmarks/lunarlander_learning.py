"""Issue 21: how LunarLander-v3 learns under the control games' cpu settings (lesson 05's ``SETTINGS`` for
CartPole and Acrobot: the ``policy`` ×0.5, REINFORCE with Adam 5e-3 at a constant rate, ``batch_size`` episodes and
one step per epoch), against a uniformly random policy on the same evaluation seeds, and what an epoch costs.

    python benchmarks/lunarlander_learning.py                            # 16 episodes, 100 epochs, seeds 0 1 2
    python benchmarks/lunarlander_learning.py --episodes 32 --epochs 60

What it found (dense runs; one torch thread on a shared 2-core CPU whose load average stayed near 10, so wall times
are inflated several-fold; CPU seconds are the process's own):

* a random policy scores −193 on the evaluation seeds (10 000 … 10 009); 200 counts as solved. The fresh policy
  does worse (−357, −509, −605 for seeds 0, 1, 2): its Kaiming-initialised logits fire the engines persistently.
* 16 episodes per epoch (the CartPole / Acrobot setting): at epoch 10: −118, −114, −94; at 30: −118, −51, +59
  (all clearly above random); at 60: −102, +238, +150; at 100: −569, +209, +161. Seed 0 hovers at −118 from epoch
  ~10 and collapses to about −560 by epoch 80; seeds 1 and 2 first reach 200 at epochs 45 and 79. First epoch above
  −100: 62, 28, 10; above 0: never, 36, 18.
* 32 episodes per epoch: at 30: +6, +1, +86; at 60: +166, +133, +148; first above −100 at epochs 10, 15, 5, above 0
  at 23, 26, 8.
* cost: an epoch costs what its episodes last. The 30 epochs at 16 episodes took 2.9, 5.4 and 17.6 CPU-seconds
  (evaluation included; CartPole's took 4.2–5.3): 0.1–0.6 s an epoch, the most once the lander hovers and episodes
  run to the 1000-step limit. With 32 episodes an epoch costs about twice as much.
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

import cropkit as ck
from cropkit.tasks import control


def random_policy_return(seeds=control.EVAL_SEEDS) -> float:
    """Mean return of uniformly random actions on ``seeds`` (the action space seeded with each episode's seed)."""
    import gymnasium

    returns = []
    for seed in seeds:
        env = gymnasium.make("LunarLander-v3")
        env.reset(seed=seed)
        env.action_space.seed(seed)
        total, done = 0.0, False
        while not done:
            _, reward, terminated, truncated, _ = env.step(env.action_space.sample())
            total, done = total + reward, terminated or truncated
        returns.append(total)
        env.close()
    return float(np.mean(returns))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--episodes", type=int, default=16, help="episodes per epoch (default 16)")
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    print(f"random policy: {random_policy_return():.1f}")
    ck.run("dense", data="lunarlander", model="policy", profile="smoke", cache=False, progress=False)  # warm-up
    for seed in args.seeds:
        cpu, wall = time.process_time(), time.perf_counter()
        result = ck.run("dense", data="lunarlander", model="policy", profile="cpu", width=0.5, epochs=args.epochs,
                        batch_size=args.episodes, lr=5e-3, schedule="constant", limit=None, score_batches=1,
                        measure_emissions=False, cache=False, progress=False, seed=seed)
        returns = [e["test_return"] for e in result.history]
        first = {f"first>{t}": next((i + 1 for i, r in enumerate(returns) if r > t), None) for t in (-100, 0, 199)}
        at = {e: round(returns[e - 1]) for e in (10, 20, 30, 40, 60, 80, 100) if e <= len(returns)}
        print(json.dumps(dict(seed=seed, cpu_s=round(time.process_time() - cpu, 1),
                              wall_s=round(time.perf_counter() - wall, 1), **first, at=at)))


if __name__ == "__main__":
    main()
