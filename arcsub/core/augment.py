"""Invertible augmentations of ARC tasks: the dihedral group D8, colour permutations, train-pair order.

ARC rules are (mostly) unchanged by rotating/flipping every grid, renaming colours or reordering the
demonstrations, so the same task can be shown to a model in many "views". Training uses them to multiply
data; inference predicts under several views, maps each prediction back with `revert_grid` and votes.
Every view has a compact, stable `name` (the "view" field of predictions files) that `Augmentation.parse`
reads back, so a prediction can always be mapped back to the original frame.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from arcsub.core.data import NUM_COLOURS, Grid, Pair, Task

ColourMode = Literal["keep0", "all", "none"]
IDENTITY_PERM: tuple[int, ...] = tuple(range(NUM_COLOURS))
D8_SIZE = 8
_MAX_FAILED_TRIES = 200  # views(): consecutive repeats before we accept there are no new views left


# --- D8 -------------------------------------------------------------------------------------------------


def _check_d8(k: int) -> None:
    if not isinstance(k, int | np.integer) or isinstance(k, bool) or not 0 <= k < D8_SIZE:
        raise ValueError(f"D8 index must be an int in 0..7, got {k!r}")


def d8_apply(grid: Grid, k: int) -> Grid:
    """Apply D8 element k: transpose first if k & 4, then rotate k & 3 quarter turns counter-clockwise.

    So 1-3 are rotations (np.rot90), 4 the transpose, 5 a vertical flip, 6 the anti-transpose, 7 a
    horizontal flip. Returns a new C-contiguous array (never a view of `grid`).
    """
    _check_d8(k)
    g = np.asarray(grid)
    if g.ndim != 2:
        raise ValueError(f"a grid must be 2-D, got shape {g.shape}")
    if k & 4:
        g = g.T
    return np.rot90(g, k & 3).copy(order="C")


def d8_inverse(k: int) -> int:
    """The D8 index undoing k: rotations invert to the opposite rotation, reflections are their own inverse.

    (T R^-r = R^r T, so a transpose-then-rotate element undoes itself.)
    """
    _check_d8(k)
    return k if k & 4 else (4 - k) % 4


# --- colour permutations ------------------------------------------------------------------------------


def _check_perm(perm: tuple[int, ...], n: int, what: str) -> tuple[int, ...]:
    """Validate a permutation of range(n) and return it as a tuple of Python ints (stable names, hashing)."""
    try:
        p = tuple(int(x) for x in perm)
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be a sequence of ints, got {perm!r}") from None
    if sorted(p) != list(range(n)):
        raise ValueError(f"{what} must be a permutation of 0..{n - 1}, got {p}")
    return p


def random_colour_perm(rng: np.random.Generator, keep_background: bool = True) -> tuple[int, ...]:
    """A random colour permutation (perm[c] = new colour of c); 0 stays 0 when keep_background.

    Background 0 is special in most ARC tasks (it is the "empty" colour), so by default it is kept.
    """
    if keep_background:
        return (0, *(int(c) + 1 for c in rng.permutation(NUM_COLOURS - 1)))
    return tuple(int(c) for c in rng.permutation(NUM_COLOURS))


def invert_perm(perm: tuple[int, ...]) -> tuple[int, ...]:
    """The permutation q with q[perm[c]] == c."""
    p = _check_perm(perm, len(perm), "a permutation")
    inv = [0] * len(p)
    for c, new in enumerate(p):
        inv[new] = c
    return tuple(inv)


def _colour_mode_perm(rng: np.random.Generator, colours: ColourMode) -> tuple[int, ...]:
    if colours == "none":
        return IDENTITY_PERM
    if colours not in ("keep0", "all"):
        raise ValueError(f"colours must be 'keep0', 'all' or 'none', got {colours!r}")
    return random_colour_perm(rng, keep_background=colours == "keep0")


# --- Augmentation -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Augmentation:
    """One invertible view of a task: colour permutation, then D8 element, plus an order of train pairs.

    `train_order[j]` is the index of the original train pair shown at position j. An identity order is
    stored as None so that equal views compare (and name) equal.
    """

    d8: int = 0
    colours: tuple[int, ...] = IDENTITY_PERM
    train_order: tuple[int, ...] | None = None
    _lut: np.ndarray = field(init=False, repr=False, compare=False, hash=False)
    _inv_lut: np.ndarray = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        _check_d8(self.d8)
        colours = _check_perm(self.colours, NUM_COLOURS, "colours")
        order = self.train_order
        if order is not None:
            order = _check_perm(order, len(order), "train_order")
            if order == tuple(range(len(order))):
                order = None
        object.__setattr__(self, "d8", int(self.d8))
        object.__setattr__(self, "colours", colours)
        object.__setattr__(self, "train_order", order)
        object.__setattr__(self, "_lut", np.asarray(colours, dtype=np.uint8))
        object.__setattr__(self, "_inv_lut", np.asarray(invert_perm(colours), dtype=np.uint8))

    @property
    def is_identity(self) -> bool:
        return self.d8 == 0 and self.colours == IDENTITY_PERM and self.train_order is None

    def apply_grid(self, grid: Grid) -> Grid:
        """Recolour then transform one grid (a new uint8 array)."""
        return d8_apply(np.take(self._lut, np.asarray(grid)), self.d8)

    def revert_grid(self, grid: Grid | None) -> Grid | None:
        """Exact inverse of apply_grid; None (an unparsable prediction) passes through."""
        if grid is None:
            return None
        return np.take(self._inv_lut, d8_apply(grid, d8_inverse(self.d8)))

    def apply_pair(self, p: Pair) -> Pair:
        """Both grids of a pair (a pair without an output stays without one)."""
        return p.map(self.apply_grid)

    def apply(self, task: Task) -> Task:
        """A new task with every grid transformed and train pairs reordered; test order is kept."""
        order = self.train_order
        if order is None:
            order = tuple(range(len(task.train)))
        elif len(order) != len(task.train):
            raise ValueError(
                f"task {task.id}: train_order has {len(order)} entries for {len(task.train)} train pairs"
            )
        return Task(
            id=task.id,
            train=[self.apply_pair(task.train[i]) for i in order],
            test=[self.apply_pair(p) for p in task.test],
            meta=dict(task.meta),
        )

    @property
    def name(self) -> str:
        """Compact stable name, e.g. "d3.c0432156789.o2-0-1"; identity parts are left out, "id" if all are."""
        parts = []
        if self.d8:
            parts.append(f"d{self.d8}")
        if self.colours != IDENTITY_PERM:
            parts.append("c" + "".join(map(str, self.colours)))
        if self.train_order is not None:
            parts.append("o" + "-".join(map(str, self.train_order)))
        return ".".join(parts) or "id"

    @classmethod
    def parse(cls, name: str) -> Augmentation:
        """Read back a `name`; raises ValueError on anything `name` would not produce."""
        if name == "id":
            return cls()
        kwargs: dict[str, object] = {}
        keys = {"d": "d8", "c": "colours", "o": "train_order"}
        for part in name.split("."):
            key = keys.get(part[:1])
            body = part[1:]
            if key is None or key in kwargs or not body:
                raise ValueError(f"bad augmentation name {name!r} (part {part!r})")
            try:
                if key == "d8":
                    kwargs[key] = int(body)
                elif key == "colours":
                    kwargs[key] = tuple(int(ch) for ch in body)
                else:
                    kwargs[key] = tuple(int(x) for x in body.split("-"))
            except ValueError:
                raise ValueError(f"bad augmentation name {name!r} (part {part!r})") from None
        aug = cls(**kwargs)  # type: ignore[arg-type]
        if aug.name != name:  # e.g. "d0" or an identity colour part: not a canonical name
            raise ValueError(f"bad augmentation name {name!r} (canonical form is {aug.name!r})")
        return aug


def random_augmentation(
    task: Task,
    rng: np.random.Generator,
    d8: bool = True,
    colours: ColourMode = "keep0",
    shuffle_train: bool = True,
) -> Augmentation:
    """A random view of `task` (the task is needed only for its number of train pairs)."""
    return _random_view(task, rng, int(rng.integers(D8_SIZE)) if d8 else 0, colours, shuffle_train)


def _random_view(
    task: Task, rng: np.random.Generator, k: int, colours: ColourMode, shuffle_train: bool
) -> Augmentation:
    n = len(task.train)
    order = tuple(int(i) for i in rng.permutation(n)) if shuffle_train and n > 1 else None
    return Augmentation(d8=k, colours=_colour_mode_perm(rng, colours), train_order=order)


def views(
    task: Task,
    n: int,
    rng: np.random.Generator,
    d8: bool = True,
    colours: ColourMode = "keep0",
    shuffle_train: bool = True,
) -> list[Augmentation]:
    """Up to n distinct views for inference voting: identity, the 7 other D8 elements, then random ones.

    Covering all of D8 first gives the vote the most diverse views for small n. Fewer than n come back
    when the settings allow fewer distinct views (we stop after repeated draws bring nothing new).
    """
    if n <= 0:
        return []
    out = [Augmentation()]
    seen = {out[0].name}

    def add(aug: Augmentation) -> bool:
        if aug.name in seen:
            return False
        seen.add(aug.name)
        out.append(aug)
        return True

    if d8:
        for k in range(1, D8_SIZE):
            if len(out) >= n:
                return out
            add(_random_view(task, rng, k, colours, shuffle_train))
    failures = 0
    while len(out) < n and failures < _MAX_FAILED_TRIES:
        failures = 0 if add(random_augmentation(task, rng, d8, colours, shuffle_train)) else failures + 1
    return out


# --- train/test restructuring -------------------------------------------------------------------------


def swap_train_test(task: Task, rng: np.random.Generator) -> Task:
    """Training-time augmentation: swap a random test pair with a random train pair (new task).

    Counts and the multiset of pairs are kept; needs every test output (ValueError otherwise).
    """
    if not task.has_solutions:
        raise ValueError(f"task {task.id}: swap_train_test needs the test outputs")
    i = int(rng.integers(len(task.test)))
    j = int(rng.integers(len(task.train)))
    train, test = list(task.train), list(task.test)
    train[j], test[i] = task.test[i], task.train[j]
    return Task(id=task.id, train=train, test=test, meta=dict(task.meta))


def leave_one_out(task: Task, i: int) -> Task:
    """Test-time fine-tuning task: train pair i becomes the only test pair (with its output), the rest train."""
    n = len(task.train)
    if n < 2:
        raise ValueError(f"task {task.id}: leave_one_out needs at least 2 train pairs, has {n}")
    if not 0 <= i < n:
        raise ValueError(f"task {task.id}: train pair index {i} outside 0..{n - 1}")
    return Task(
        id=task.id,
        train=[p for j, p in enumerate(task.train) if j != i],
        test=[task.train[i]],
        meta=dict(task.meta),
    )
