r"""Offline stand-ins for the paper's regression and language tasks (Rachwan et al. 2022, §4.4: NYU depth with a
fully convolutional residual network, PTB with a recurrent language model). Nothing is downloaded or cached.

**depth** — dense regression. Each sample is a scene rendered here by ray casting: a pinhole camera (y up, looking
along +z, rays d = (u, v, 1), so a ray's parameter t *is* the depth z of what it hits) sees a checkered floor at a
random height, a back wall at a random distance, and up to three spheres and two boxes resting on the floor at
random depths, seen with a random pitch of up to 10° (so the horizon moves), lit by one random directional light
(Lambertian, with ambient light), with random colours, a little distance fog and pixel noise. The input is the RGB
image (standardised with the training set's statistics), the target the per-pixel depth map, standardised too:
(depth − mean) / std with the training set's depth mean and std (≈ 7.3 and 3.3 scene units, "metres"; `depth_data`
returns both). So the RMSE is in units of the depth's standard deviation and the constant predictor that outputs the
mean scores ≈ 1.0 — the reference a network must beat (standardising also spares a sparse output layer from first
having to learn a large mean). Depth cues a network can learn: where the floor meets an object, the perspective of
the checkerboard, an object's apparent size (radii and box sizes have a narrow range), shading and fog. 2000
training and 500 test scenes of 32×32 (rendered in about two seconds of CPU and kept in memory, never on disk); the
split is fixed (its own seed), whatever the run's seed. Loss: L2 (mean squared error over all pixels); metric: RMSE
over all test pixels, in the standardised units (`cropkit.tasks.task.REGRESSION`).

**pydoc** — word-level language modelling on the help texts that ship with Python (``pydoc_data.topics``: 79 topics,
~120 000 tokens). Text is lower-cased and split into words, numbers and single punctuation marks; each topic ends
with ``<eos>``. The topics, taken in sorted key order, each go to the split (train / validation / test) furthest
below its share of the tokens so far (80 / 10 / 10): a split by topic, so a test topic is never seen in training.
The vocabulary is the ``vocab`` most frequent training tokens (ties alphabetical) plus ``<unk>``; other tokens
become ``<unk>``. Each split's token stream is cut into windows of T + 1 tokens (stride T): input = the first T,
target = the next token at every position (truncated backpropagation through time at T; the hidden state starts at
zero in every window). Loss: mean token cross-entropy; metric: log-perplexity = the mean test cross-entropy per
token in nats (`cropkit.tasks.task.LANGUAGE`; perplexity = e^log_ppl). The validation split is `pydoc_corpus`'s, for
notebooks that tune on it; runs report the test split.
"""
from __future__ import annotations

import collections
import functools
import re

import numpy as np
import torch

DEPTH_SEED = 1234          # the scenes: fixed, whatever the run's seed
DEPTH_SIZES = (2000, 500)  # train, test scenes
IMAGE_SIZE = 32
VOCAB = 1000               # most frequent training words kept (pydoc)
SEQ_LEN = 32               # T: tokens per training sequence (pydoc)


# ----------------------------------------------------------------------------- depth: a tiny ray caster

def _spheres(rays, c, r):
    """Ray parameter t of the nearest hit of every ray (N, P, 3) with spheres (centres c (N, K, 3), radii r (N, K)):
    (N, K, P)."""
    a = (rays ** 2).sum(-1)[:, None]                          # (N, 1, P)
    b = np.einsum("nkd,npd->nkp", c, rays)                    # d·c
    disc = b ** 2 - a * ((c ** 2).sum(-1) - r ** 2)[..., None]
    t = (b - np.sqrt(np.maximum(disc, 0))) / a
    return np.where((disc > 0) & (t > 0), t, np.inf)


def _boxes(rays, lo, hi):
    """Ray parameter of every ray's (N, P, 3) hit with axis-aligned boxes [lo, hi] (N, K, 3) (slab test), and the
    axis of the face hit: both (N, K, P)."""
    near, far = [], []
    for axis in range(3):
        with np.errstate(divide="ignore"):  # a ray parallel to a face: ±inf, which the slab test handles
            inv = 1 / rays[:, None, :, axis]                  # (N, 1, P)
        t1, t2 = lo[..., axis, None] * inv, hi[..., axis, None] * inv
        near.append(np.minimum(t1, t2))
        far.append(np.maximum(t1, t2))
    t_near = np.maximum(np.maximum(near[0], near[1]), near[2])
    t_far = np.minimum(np.minimum(far[0], far[1]), far[2])
    face = np.where(near[0] == t_near, 0, np.where(near[1] == t_near, 1, 2))
    return np.where((t_far >= t_near) & (t_near > 0), t_near, np.inf), face


@functools.lru_cache(maxsize=2)  # in memory only: every run of a process renders the same scenes once
def render_depth(n: int, seed: int = DEPTH_SEED, size: int = IMAGE_SIZE) -> tuple[np.ndarray, np.ndarray]:
    """``n`` rendered scenes: images (n, 3, size, size) in [0, 1] and depth maps (n, 1, size, size) in metres,
    float32 (cached in memory: treat them as read-only)."""
    rng = np.random.default_rng(seed)
    u = (np.arange(size) + 0.5) / size - 0.5                  # image plane at z = 1, field of view ≈ 53°
    rays = np.stack(np.broadcast_arrays(u[None, :], -u[:, None], np.ones((size, size))), -1).reshape(-1, 3)
    rays = rays.astype(np.float32)
    P, f32 = len(rays), np.float32
    floor_h = rng.uniform(0.8, 1.6, (n, 1)).astype(f32)       # the floor is the plane y = −h
    wall = rng.uniform(8, 12, (n, 1)).astype(f32)             # the back wall is the plane z = D
    # spheres resting on the floor; an absent one is moved out of sight (behind the camera)
    radius = rng.uniform(0.3, 0.9, (n, 3)).astype(f32)
    sz = rng.uniform(2.5, 8, (n, 3)).astype(f32)
    centre = np.stack([rng.uniform(-0.45, 0.45, (n, 3)) * sz, radius - floor_h, sz], -1).astype(f32)
    centre[rng.random((n, 3)) < 0.3, 2] = -100
    half = rng.uniform(0.2, 0.6, (n, 2, 3)).astype(f32)
    bz = rng.uniform(3, 8, (n, 2)).astype(f32)
    middle = np.stack([rng.uniform(-0.45, 0.45, (n, 2)) * bz, half[..., 1] - floor_h, bz], -1)
    middle[rng.random((n, 2)) < 0.5, 2] = -100
    lo, hi = (middle - half).astype(f32), (middle + half).astype(f32)
    # the camera looks up or down by up to 10°, so the horizon moves and the layout alone does not give the depth
    pitch = rng.uniform(-0.17, 0.17, n)
    cos, sin = np.cos(pitch)[:, None], np.sin(pitch)[:, None]
    camera = rays                                             # (P, 3): (u, v, 1) in the camera's frame
    rays = np.stack([np.broadcast_to(camera[:, 0], (n, P)), camera[:, 1] * cos - sin,
                     camera[:, 1] * sin + cos], -1).astype(f32)  # (n, P, 3) in the world: t is still the depth

    with np.errstate(divide="ignore"):
        t_floor = np.where(rays[..., 1] < 0, -floor_h / rays[..., 1], np.inf)  # (n, P)
    t_wall = wall / rays[..., 2]
    t_sph = _spheres(rays, centre, radius)                    # (n, 3, P)
    t_box, box_axis = _boxes(rays, lo, hi)                    # (n, 2, P)
    candidates = np.concatenate([t_floor[:, None], t_wall[:, None], t_sph, t_box], 1)  # (n, 7, P)
    which = candidates.argmin(1)                              # 0 floor, 1 wall, 2–4 spheres, 5–6 boxes
    depth = np.take_along_axis(candidates, which[:, None], 1)[:, 0]
    point = depth[..., None] * rays                           # (n, P, 3)

    rows = np.arange(n)[:, None]
    sphere = np.clip(which - 2, 0, 2)                         # the sphere / box a pixel shows (where it shows one)
    box = np.clip(which - 5, 0, 1)
    sphere_normal = (point - centre[rows, sphere]) / radius[rows, sphere][..., None]
    axis = np.take_along_axis(box_axis, box[:, None], 1)[:, 0]  # (n, P): x, y or z face
    facing = -np.sign(rays)                                   # (n, P, 3): a face's normal points at the camera
    box_normal = np.stack([(axis == a) * facing[..., a] for a in range(3)], -1).astype(f32)
    plane_normal = np.where((which == 0)[..., None], np.array([0, 1, 0], f32), np.array([0, 0, -1], f32))
    kind = which[..., None]
    normal = np.where(kind >= 5, box_normal, np.where(kind >= 2, sphere_normal, plane_normal))

    light = rng.normal(size=(n, 3)) * [0.6, 0.3, 0.6] + [0, 1, -0.7]
    light = (light / np.linalg.norm(light, axis=1, keepdims=True)).astype(f32)
    diffuse = np.clip(np.einsum("npd,nd->np", normal, light), 0, None)
    colours = rng.uniform(0.2, 1.0, (n, 7, 3)).astype(f32)    # per surface RGB albedo
    albedo = colours[rows, which]                             # (n, P, 3)
    square = rng.uniform(0.4, 1.0, (n, 1)).astype(f32)
    checker = (np.floor(point[..., 0] / square) + np.floor(point[..., 2] / square)) % 2
    albedo = albedo * np.where((which == 0) & (checker == 1), f32(0.55), f32(1))[..., None]
    fog = np.exp(f32(-0.04) * depth)[..., None]
    image = albedo * (f32(0.3) + f32(0.7) * diffuse[..., None]) * fog + f32(0.15) * (1 - fog)
    image += f32(0.02) * rng.standard_normal(image.shape, dtype=f32)
    image = np.clip(image, 0, 1).astype(f32).reshape(n, size, size, 3).transpose(0, 3, 1, 2)
    return np.ascontiguousarray(image), depth.astype(f32).reshape(n, 1, size, size)


def depth_data() -> dict:
    """The depth task's tensors: standardised images and targets ``x_train, y_train, x_test, y_test``, and the
    training depth's ``mean`` and ``std`` in metres (depth = mean + std · target)."""
    n_train, n_test = DEPTH_SIZES
    images, depths = render_depth(n_train + n_test)
    x, y = torch.from_numpy(images), torch.from_numpy(depths)
    x = (x - x[:n_train].mean((0, 2, 3), keepdim=True)) / x[:n_train].std((0, 2, 3), keepdim=True)
    mean, std = y[:n_train].mean().item(), y[:n_train].std().item()
    y = (y - mean) / std
    return dict(x_train=x[:n_train], y_train=y[:n_train], x_test=x[n_train:], y_test=y[n_train:], mean=mean, std=std)


def depth_tensors(limit: int | None = None) -> tuple[tuple, tuple[int, ...], int]:
    """((x_train, y_train, x_test, y_test), input shape, output channels) of ``depth``, the first ``limit`` training
    scenes (None: all); `cropkit.tasks.data` makes the loaders."""
    d = depth_data()
    return (d["x_train"][:limit], d["y_train"][:limit], d["x_test"], d["y_test"]), (3, IMAGE_SIZE, IMAGE_SIZE), 1


# ----------------------------------------------------------------------------- pydoc: Python's help texts

TOKEN = re.compile(r"[a-z]+|[0-9]+|[^\sa-z0-9]")


@functools.lru_cache(maxsize=4)
def pydoc_corpus(vocab: int = VOCAB) -> dict:
    """The corpus as token ids: {"train", "valid", "test": 1-D LongTensors, "words": the vocabulary} (cached in
    memory: treat as read-only)."""
    if isinstance(vocab, bool) or not isinstance(vocab, int) or vocab < 1:
        raise ValueError(f"vocab must be an integer >= 1; got {vocab!r}")
    from pydoc_data.topics import topics

    splits = {"train": [], "valid": [], "test": []}
    share = {"train": 0.8, "valid": 0.1, "test": 0.1}
    for key in sorted(topics):  # each topic to the split furthest below its share of the tokens so far
        total = sum(len(t) for t in splits.values()) + 1
        split = min(share, key=lambda k: len(splits[k]) / total - share[k])
        splits[split] += TOKEN.findall(topics[key].lower()) + ["<eos>"]
    counts = collections.Counter(splits["train"])
    words = ["<unk>"] + sorted(counts, key=lambda w: (-counts[w], w))[:vocab]
    index = {w: i for i, w in enumerate(words)}
    out = {k: torch.tensor([index.get(w, 0) for w in tokens], dtype=torch.long) for k, tokens in splits.items()}
    return {**out, "words": words}


def sequences(tokens: torch.Tensor, seq_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Windows of ``seq_len`` + 1 tokens at stride ``seq_len``: (inputs, next tokens), each (n, seq_len)."""
    n = (len(tokens) - 1) // seq_len
    windows = tokens[: n * seq_len + 1].unfold(0, seq_len + 1, seq_len)  # (n, T + 1)
    return windows[:, :-1].contiguous(), windows[:, 1:].contiguous()


def pydoc_tensors(limit: int | None = None, vocab: int = VOCAB, seq_len: int = SEQ_LEN) -> tuple[tuple, tuple, int]:
    """((x_train, y_train, x_test, y_test), input shape, vocabulary size) of ``pydoc``: the first ``limit``
    training sequences (None: all); `cropkit.tasks.data` makes the loaders."""
    corpus = pydoc_corpus(vocab)
    x_train, y_train = sequences(corpus["train"], seq_len)
    x_test, y_test = sequences(corpus["test"], seq_len)
    return (x_train[:limit], y_train[:limit], x_test, y_test), (seq_len,), len(corpus["words"])
