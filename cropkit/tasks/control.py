r"""Control: CartPole-v1 and Acrobot-v1 (gymnasium's classic control, nothing to download) as a cropkit dataset
and task, for the paper's reinforcement-learning results (Rachwan et al. 2022 report return over sparsity for a
3-layer fully connected policy on control games).

The algorithm: REINFORCE with a baseline (Williams 1992). The policy π_θ(a|s) = softmax(f_θ(s)) is the zoo's
``mlp``, a 3-layer fully connected net (obs → h → h → actions, ReLU); its outputs are the action logits, so
``num_classes`` is the number of actions. Each epoch collects ``batch_size`` whole episodes with the current
policy (actions sampled from π_θ) and takes one gradient step on the loss

    L(θ) = −(1/N) Σ_t log π_θ(a_t | s_t) · Â_t,     Â_t = (G_t − b_t) / σ,     G_t = Σ_{k≥t} γ^{k−t} r_k

over the N transitions of the batch (γ = 0.99). The baseline b_t is the mean return-to-go at step t over the
batch's episodes still running at t, and σ the standard deviation of G_t − b_t over the batch (it fixes the step
size across games whose returns differ by orders of magnitude). Why a time-indexed baseline: both games end at a
time limit of 500 steps, which cuts every G_t short near the limit. Against a single batch mean, the late steps of
every truncated episode would look better than the early ones whatever the actions were — a spurious signal that
made Acrobot policies collapse to −500 in our runs; at a fixed t the cut is the same for every episode, so
episodes are only compared with each other. (A batch whose episodes all run to the limit with the same rewards
gives Â = 0: nothing to learn from, as on Acrobot when no episode reaches the goal.)

Why REINFORCE rather than A2C (Mnih et al. 2016): the network stays the policy alone, with no value head to share
or prune; the loss is a plain function of logits and per-transition targets, so training and every score use the
kit's ``loss_fn(outputs, targets)`` unchanged; and on 2 CPU cores, whole episodes collected by one batched forward
per time step over parallel environments cost milliseconds per gradient step.

What "gradient flow" means here. CroP scores a network by how much removing a weight would change the gradient
flow gᵀg, g = ∇_θ L, of its training loss on data (`cropkit.core.scores`). In reinforcement learning the data are not a
fixed set: they are transitions the policy itself collects. The scoring batches are on-policy batches collected
with the network being pruned (`ControlData.scoring_batches`), the advantages Â are held fixed, and L is the
policy-gradient loss above. So CroP keeps the weights whose removal least changes ‖∇_θ L‖² on that batch: the
direction and strength in which the policy is about to improve its expected return.

Targets pack what the loss and the training metric need into one float tensor, one row per transition:
columns (action, advantage Â, undiscounted return of its episode, 1 on the episode's first step else 0).

The metric: the mean undiscounted return of the policy over fixed evaluation episodes, environment seeds
10 000 … 10 009 (`EVAL_SEEDS`), the same for every run, epoch and sparsity. The policy is evaluated as it is trained,
with actions sampled from softmax(logits), drawn by a generator seeded from the evaluation seeds, so an evaluation
repeats exactly. Sampled, not greedy: REINFORCE maximises the expected return of the stochastic policy, and the
argmax of a half-trained Acrobot policy can loop forever (−500) where its samples reach the goal in ~110 steps.
A random policy scores about 20 on CartPole (maximum 500) and −500 on Acrobot (solved: better than about −100).

Sizes (measured on one CPU core of a shared 2-core machine, process CPU time after a warm-up): with the zoo's
``mlp`` at width 0.5 (hidden 128, 128), 16 episodes per epoch and Adam at lr 5e-3, CartPole reaches a return of 500
within 30 epochs in about 2.5 s for seeds 0, 1, 2, and Acrobot −87 … −194 for seeds 0 … 3 in 4–8 s. Acrobot is the
fragile one: its reward says nothing until an episode reaches the goal, which a uniformly random policy never did
in 32 tries, so a policy that stops swinging (an unlucky initialisation, or too large a first step: at lr 1e-2
seed 1 collapsed to −500 within 5 epochs) finds nothing to learn from. Expect a wide spread over seeds.

Seeds. A training episode's environment seed derives from (run seed, epoch, episode), a scoring episode's from
(seed, batch, episode), and action sampling uses a generator seeded the same way, so a run repeats exactly on one
device. The train loader counts its epochs itself (``loader.epoch``, one per iteration).

    data = load_control("cartpole", batch_size=16, seed=0)
    model = cropkit.models.build("mlp", data.input_shape, data.num_classes, width=0.5, seed=0)
    data.train.bind(model); inputs, targets = next(iter(data.train))
    loss = TASK.loss_fn(model(inputs), targets)
"""
from __future__ import annotations

import dataclasses

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from cropkit.core.plumbing import frozen
from cropkit.tasks.task import Data, Task

ENVS = {"cartpole": "CartPole-v1", "acrobot": "Acrobot-v1", "lunarlander": "LunarLander-v3"}  # LunarLander: Box2D
EVAL_SEEDS = tuple(range(10_000, 10_010))
GAMMA = 0.99
TRAIN, SCORE = 0, 1  # seed streams: training epochs and scoring batches never share an episode seed


# ----------------------------------------------------------------------------- episodes

def _seed(*keys: int) -> int:
    """One 32-bit seed from a tuple of integers (numpy's SeedSequence: distinct tuples, independent streams)."""
    return int(np.random.SeedSequence([int(k) for k in keys]).generate_state(1)[0])


def _make(env: str, max_steps: int | None):
    import gymnasium

    return gymnasium.make(env, max_episode_steps=max_steps, disable_env_checker=True)


def play(model: nn.Module, env: str, seeds, generator: torch.Generator, max_steps: int | None = None) -> list[dict]:
    """Run one episode per seed with ``model`` as the policy, all in parallel (one forward per time step for the
    environments still running), in eval mode without gradients, actions sampled from softmax(logits) with
    ``generator`` (a CPU generator: the same draws whatever the model's device). Returns one dict per episode:
    ``obs`` (T, obs_dim) float32, ``actions`` (T,), ``rewards`` (T,)."""
    envs = [_make(env, max_steps) for _ in seeds]
    obs = [e.reset(seed=int(s))[0] for e, s in zip(envs, seeds)]
    episodes = [dict(obs=[], actions=[], rewards=[]) for _ in seeds]
    running, weight = list(range(len(envs))), next(model.parameters())
    with frozen(model):
        while running:
            x = torch.as_tensor(np.stack([obs[i] for i in running]), dtype=torch.float32)  # (running, obs_dim)
            logits = model(x.to(weight.device, weight.dtype)).float().cpu()
            actions = torch.multinomial(logits.softmax(1), 1, generator=generator)
            still = []
            for i, a in zip(running, actions.view(-1).tolist()):
                episodes[i]["obs"].append(obs[i])
                episodes[i]["actions"].append(a)
                obs[i], reward, terminated, truncated, _ = envs[i].step(a)
                episodes[i]["rewards"].append(float(reward))
                if not (terminated or truncated):
                    still.append(i)
            running = still
    for e in envs:
        e.close()
    return [dict(obs=np.asarray(ep["obs"], dtype=np.float32), actions=np.asarray(ep["actions"]),
                 rewards=np.asarray(ep["rewards"])) for ep in episodes]


def returns_to_go(rewards: np.ndarray, gamma: float = GAMMA) -> np.ndarray:
    """G_t = Σ_{k≥t} γ^{k−t} r_k for one episode."""
    out, running = np.empty(len(rewards)), 0.0
    for t in range(len(rewards) - 1, -1, -1):
        running = rewards[t] + gamma * running
        out[t] = running
    return out


def advantages(episodes: list[dict], gamma: float = GAMMA) -> np.ndarray:
    """Â for every transition of a batch of whole episodes, concatenated: G_t − b_t with the time-indexed baseline
    b_t = the mean of G_t over the batch's episodes still running at step t, then divided by the batch's std."""
    returns = [returns_to_go(ep["rewards"], gamma) for ep in episodes]
    padded = np.full((len(returns), max(len(g) for g in returns)), np.nan)  # (episodes, longest)
    for i, g in enumerate(returns):
        padded[i, :len(g)] = g
    baseline = np.nanmean(padded, axis=0)  # b_t over the episodes alive at t
    centred = np.concatenate([g - baseline[:len(g)] for g in returns])
    return centred / (centred.std() + 1e-8)


def transitions(episodes: list[dict], gamma: float = GAMMA) -> tuple[torch.Tensor, torch.Tensor]:
    """(inputs (N, obs_dim), targets (N, 4)) for a batch of whole episodes: targets columns (action, Â, episode
    return, first-step flag)."""
    episode_return = np.concatenate([np.full(len(ep["rewards"]), ep["rewards"].sum()) for ep in episodes])
    first = np.concatenate([np.eye(1, len(ep["rewards"]))[0] for ep in episodes])
    actions = np.concatenate([ep["actions"] for ep in episodes])
    inputs = torch.as_tensor(np.concatenate([ep["obs"] for ep in episodes]))
    targets = np.stack([actions, advantages(episodes, gamma), episode_return, first], 1)
    return inputs, torch.as_tensor(targets, dtype=torch.float32)


# ----------------------------------------------------------------------------- the task

def _check_targets(logits: torch.Tensor, targets: torch.Tensor) -> None:
    if targets.dim() != 2 or targets.shape[1] != 4 or len(targets) != len(logits):
        raise ValueError(f"control targets are one row (action, advantage, episode return, first-step flag) per "
                         f"transition: shape ({len(logits)}, 4) for {len(logits)} logits; got {tuple(targets.shape)}")


def reinforce_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """L = −mean_t log π(a_t|s_t) · Â_t, π = softmax(logits) (REINFORCE with a baseline, Williams 1992)."""
    _check_targets(logits, targets)
    actions, advantage = targets[:, 0].long(), targets[:, 1].to(logits.dtype)
    log_pi = F.log_softmax(logits, dim=1).gather(1, actions[:, None]).squeeze(1)  # (N,)
    return -(log_pi * advantage).mean()


def batch_return(logits: torch.Tensor, targets: torch.Tensor) -> float:
    """The mean undiscounted return of the (sampled) training episodes in a batch."""
    _check_targets(logits, targets)
    return targets[targets[:, 3] == 1, 2].mean().item()


@dataclasses.dataclass(frozen=True)
class Evaluation:
    """The test "loader" of a control set: the environment and the fixed evaluation seeds (one episode each)."""

    env: str
    seeds: tuple[int, ...] = EVAL_SEEDS


def evaluate(model: nn.Module, loader: Evaluation, device=None) -> tuple[float, float]:
    """(nan, mean return of the sampling policy over ``loader.seeds``). No loss: the policy-gradient loss is a
    surrogate whose value (≈ 0 with standardised advantages) says nothing about how good the policy is.
    ``device`` is unused: the policy plays on the device it is on."""
    if not isinstance(loader, Evaluation):
        raise ValueError(f"a control task evaluates on a cropkit.tasks.control.Evaluation; got {type(loader).__name__}")
    generator = torch.Generator().manual_seed(_seed(*loader.seeds))
    episodes = play(model, loader.env, loader.seeds, generator)
    return float("nan"), float(np.mean([ep["rewards"].sum() for ep in episodes]))


# the training metric (``train_return``) is the mean return of the episodes an epoch collected; the test metric
# (``test_return``) comes from the fixed evaluation episodes
TASK = Task("control", metric="return", higher_is_better=True, loss_fn=reinforce_loss, batch_metric=None,
            evaluate=evaluate, step_metric=batch_return)


# ----------------------------------------------------------------------------- the data

class Rollouts:
    """The train "loader": each iteration (an epoch) collects ``episodes`` whole episodes with the bound policy,
    sampling its actions, and yields them as one batch: one gradient step per epoch (REINFORCE is on-policy).
    ``bind(model)`` before each epoch (the Trainer does it at every epoch begin, after any prune)."""

    def __init__(self, env: str, episodes: int, seed: int, max_steps: int | None = None, gamma: float = GAMMA):
        self.env, self.episodes, self.seed, self.max_steps, self.gamma = env, episodes, seed, max_steps, gamma
        self.model: nn.Module | None = None
        self.epoch = 0  # iterations so far: the next epoch's episodes use seeds from (seed, epoch, episode)

    def bind(self, model: nn.Module) -> None:
        self.model = model

    def state_dict(self) -> dict:
        """Where the stream of training episodes stands (a resumed run continues it: `cropkit.training.checkpoint`)."""
        return dict(epoch=self.epoch)

    def load_state_dict(self, state: dict) -> None:
        self.epoch = int(state["epoch"])

    def __len__(self) -> int:
        return 1

    def __iter__(self):
        if self.model is None:
            raise ValueError("bind(model) the policy to the control train loader before iterating it: its data "
                             "are the transitions that policy collects")
        batch = collect(self.model, self.env, self.episodes, (self.seed, TRAIN, self.epoch), self.max_steps,
                        self.gamma)
        self.epoch += 1
        yield batch


def collect(model: nn.Module, env: str, episodes: int, key: tuple[int, ...], max_steps: int | None = None,
            gamma: float = GAMMA) -> tuple[torch.Tensor, torch.Tensor]:
    """One on-policy batch of ``episodes`` sampled episodes; environment seeds and action draws derive from ``key``."""
    seeds = [_seed(*key, i) for i in range(episodes)]
    generator = torch.Generator().manual_seed(_seed(*key))
    return transitions(play(model, env, seeds, generator, max_steps), gamma)


@dataclasses.dataclass
class ControlData(Data):
    """A control set: ``train`` a `Rollouts`, ``test`` an `Evaluation`, ``task`` the REINFORCE task."""

    on_policy = True  # scoring batches are collected by the network being scored (`cropkit.methods.context.Context`)

    def __post_init__(self):
        self.scoring_batches = self.collect_scoring  # Data's hook, here with the network that collects

    def collect_scoring(self, n: int, batch_size: int, seed: int, model: nn.Module | None = None) -> list:
        """``n`` on-policy batches of ``batch_size`` episodes each, collected with ``model`` (the network about to
        be scored): seeds from (seed, batch, episode), a stream of their own, never a training epoch's."""
        if model is None:
            raise ValueError(f"{self.name}: the scoring batches of a control set are transitions collected by the "
                             f"policy itself; pass model=")
        if n < 1 or batch_size < 1:
            raise ValueError(f"scoring_batches needs n >= 1 and batch_size >= 1 episodes; got {n}, {batch_size}")
        return [collect(model, self.train.env, batch_size, (seed, SCORE, b), self.train.max_steps, self.train.gamma)
                for b in range(n)]

    def example_inputs(self, n: int = 2) -> torch.Tensor:
        """``n`` initial observations (seeds 0 … n−1): no policy needed."""
        env = _make(self.train.env, None)
        obs = np.stack([env.reset(seed=i)[0] for i in range(n)])  # (n, obs_dim)
        env.close()
        return torch.as_tensor(obs, dtype=torch.float32)


def load_control(name: str, batch_size: int = 16, seed: int = 0, limit: int | None = None, *, eval_episodes: int = 10,
                 **_) -> ControlData:
    """A control set by name (``cartpole`` or ``acrobot``).

    batch_size  episodes collected per epoch (one gradient step each)
    limit       None, or a cap on the length of training and scoring episodes (smoke runs); evaluation always
                plays the environment's own time limit (500 steps for both)
    eval_episodes  evaluation episodes, seeds 10 000 … 10 000 + eval_episodes − 1 (fewer for smoke runs)
    """
    if name not in ENVS:
        raise ValueError(f"unknown control set {name!r}; choose one of {list(ENVS)}")
    if batch_size < 1:
        raise ValueError(f"batch_size is the number of episodes per epoch and must be >= 1; got {batch_size}")
    if limit is not None and limit < 1:
        raise ValueError(f"limit caps a training episode's steps and must be None or >= 1; got {limit}")
    if isinstance(eval_episodes, bool) or not isinstance(eval_episodes, int) or eval_episodes < 1:
        raise ValueError(f"eval_episodes must be an integer >= 1; got {eval_episodes!r}")
    env = _make(ENVS[name], None)
    shape, actions = env.observation_space.shape, getattr(env.action_space, "n", None)
    env.close()
    test = Evaluation(ENVS[name], tuple(range(EVAL_SEEDS[0], EVAL_SEEDS[0] + eval_episodes)))
    return ControlData(name, Rollouts(ENVS[name], batch_size, seed, limit), test, tuple(shape), int(actions), task=TASK)
