"""The self-edit's tools: deterministic grid augmentations and leave-one-out task construction.

A transform maps a grid to a grid and applies to every grid of a task (inputs and
outputs alike), so the rule stays consistent. Geometric and resolution transforms are
invertible, which voting at inference needs: predict on a transformed task, invert the
prediction, vote. Translation is the one lossy tool (cells shifted out are gone).
"""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass
from typing import Callable

import numpy as np

from .data import MAX_SIDE, ArcTask, Grid

Example = tuple[tuple[tuple[Grid, Grid], ...], Grid, Grid]  # (context pairs, query input, query output)


@dataclass(frozen=True)
class Transform:
    name: str
    forward: Callable[[Grid], Grid]
    inverse: Callable[[Grid], Grid] | None  # None: not invertible

    def __call__(self, grid: Grid) -> Grid:
        return self.forward(grid)

    def then(self, other: "Transform") -> "Transform":
        """``self`` first, then ``other``; invertible if both are."""
        inverse = (lambda g: self.inverse(other.inverse(g))) if self.inverse and other.inverse else None
        return Transform(f"{self.name}+{other.name}", lambda g: other.forward(self.forward(g)), inverse)


def _half(axis: int) -> Callable[[Grid], Grid]:
    return lambda g: np.take(g, np.arange(0, g.shape[axis], 2), axis=axis)


IDENTITY = Transform("identity", lambda g: g, lambda g: g)
GEOMETRIC = [
    Transform("rotate90", lambda g: np.rot90(g, 1), lambda g: np.rot90(g, -1)),
    Transform("rotate180", lambda g: np.rot90(g, 2), lambda g: np.rot90(g, 2)),
    Transform("rotate270", lambda g: np.rot90(g, 3), lambda g: np.rot90(g, -3)),
    Transform("flip_horizontal", np.fliplr, np.fliplr),
    Transform("flip_vertical", np.flipud, np.flipud),
    Transform("transpose", lambda g: g.T, lambda g: g.T),
    Transform("anti_transpose", lambda g: np.rot90(g, 2).T, lambda g: np.rot90(g.T, -2)),
]
RESOLUTION = [
    Transform("upscale2", lambda g: np.kron(g, np.ones((2, 2), dtype=g.dtype)), lambda g: _half(1)(_half(0)(g))),
    Transform("double_height", lambda g: np.repeat(g, 2, axis=0), _half(0)),
    Transform("double_width", lambda g: np.repeat(g, 2, axis=1), _half(1)),
]
REPEAT = [
    Transform("repeat_right", lambda g: np.tile(g, (1, 2)), lambda g: g[:, : g.shape[1] // 2]),
    Transform("repeat_down", lambda g: np.tile(g, (2, 1)), lambda g: g[: g.shape[0] // 2]),
    Transform("repeat_both", lambda g: np.tile(g, (2, 2)), lambda g: g[: g.shape[0] // 2, : g.shape[1] // 2]),
]
CHAIN = [geo.then(res) for geo in GEOMETRIC[:3] + GEOMETRIC[5:6] for res in RESOLUTION[:1]] + [
    GEOMETRIC[3].then(RESOLUTION[1]), GEOMETRIC[4].then(RESOLUTION[2])]
GROUPS: dict[str, list[Transform]] = {"basic": GEOMETRIC, "size": RESOLUTION, "chain": CHAIN, "repeat": REPEAT}
VOTING = [IDENTITY, *GEOMETRIC]  # the dihedral group: invertible at any size


def translate(rng: random.Random, max_shift: int = 2) -> Transform:
    """Shift content down/right by a random offset, filling with 0 (lossy: no inverse)."""
    dy, dx = rng.randint(0, max_shift), rng.randint(0, max_shift)

    def forward(g: Grid) -> Grid:
        out = np.zeros_like(g)
        out[dy:, dx:] = g[: g.shape[0] - dy, : g.shape[1] - dx]
        return out

    return Transform(f"translate{dy},{dx}", forward, None)


def colour_permutation(rng: random.Random) -> Transform:
    """Permute colours 1–9, keeping 0 (the usual background) fixed."""
    perm = np.arange(10)
    perm[1:] = rng.sample(range(1, 10), 9)
    inv = np.argsort(perm)
    return Transform("colours", lambda g: perm[g], lambda g: inv[g])


def apply(t: Transform, pairs: tuple[tuple[Grid, Grid], ...]) -> tuple[tuple[Grid, Grid], ...] | None:
    """``t`` on every grid, or None if a grid would exceed ARC's 30×30."""
    out = tuple((t(a), t(b)) for a, b in pairs)
    return None if any(max(g.shape) > MAX_SIDE for pair in out for g in pair) else out


def leave_out(task: ArcTask, k: int = 1) -> list[Example]:
    """Each training example in turn is the query; the context is the others minus k−1 more."""
    n = len(task.train)
    out = []
    for held in itertools.combinations(range(n), k):
        context = tuple(task.train[i] for i in range(n) if i not in held)
        if not context:
            continue
        out += [(context, task.train[q][0], task.train[q][1]) for q in held]
    return out


def augmented_examples(task: ArcTask, groups: list[str], *, rng: random.Random, cap: int,
                       leave_two_out: bool = False) -> list[Example]:
    """Leave-one-out (and leave-two-out) examples under the chosen groups' transforms.

    Every example also gets a random colour permutation (except the untransformed ones)
    and a shuffled context order; at most ``cap`` examples are kept, sampled with ``rng``.
    """
    unknown = sorted(set(groups) - set(GROUPS))
    if unknown:
        raise ValueError(f"unknown augmentation group(s) {', '.join(unknown)}; choose from {', '.join(GROUPS)}")
    base = leave_out(task, 1) + (leave_out(task, 2) if leave_two_out and len(task.train) >= 3 else [])
    out = list(base)
    transforms = [t for g in groups for t in GROUPS[g]]
    for t in transforms:
        for context, q_in, q_out in base:
            t2 = t.then(colour_permutation(rng))
            moved = apply(t2, context + ((q_in, q_out),))
            if moved is None:
                continue
            ctx = list(moved[:-1])
            rng.shuffle(ctx)
            out.append((tuple(ctx), *moved[-1]))
    if len(out) > cap:
        out = base[:cap] if len(base) >= cap else base + rng.sample(out[len(base):], cap - len(base))
    return out
