"""Tests of arcsub.core.augment: exact invertibility on real ARC data, D8 group laws, names, views, task surgery."""

from __future__ import annotations

import time
from collections import Counter

import numpy as np
import pytest

from arcsub.core.augment import (
    Augmentation,
    d8_apply,
    d8_inverse,
    invert_perm,
    leave_one_out,
    random_augmentation,
    random_colour_perm,
    swap_train_test,
    views,
)
from arcsub.core.data import Pair, Task, data_dir, dataset_files, grids_equal, load_tasks

COLOUR_MODES = ("keep0", "all", "none")
# Not symmetric under any D8 element (all cells distinct), and not square.
G23 = np.array([[1, 2, 3], [4, 5, 6]], dtype=np.uint8)
# Hand-checked: 1-3 counter-clockwise quarter turns, 4 transpose, 5 vertical flip, 6 anti-transpose,
# 7 horizontal flip.
EXPECTED_D8 = {
    0: [[1, 2, 3], [4, 5, 6]],
    1: [[3, 6], [2, 5], [1, 4]],
    2: [[6, 5, 4], [3, 2, 1]],
    3: [[4, 1], [5, 2], [6, 3]],
    4: [[1, 4], [2, 5], [3, 6]],
    5: [[4, 5, 6], [1, 2, 3]],
    6: [[6, 3], [5, 2], [4, 1]],
    7: [[3, 2, 1], [6, 5, 4]],
}


@pytest.fixture(scope="module")
def arc_tasks() -> dict[str, Task]:
    challenges, solutions = dataset_files("arc-agi-1", "training")
    if not challenges.exists() or not solutions.exists():
        pytest.skip(f"ARC data not found under {data_dir()} (set ARCSUB_DATA to the shared data folder)")
    tasks = load_tasks(challenges, solutions)
    assert len(tasks) == 400
    return tasks


def all_grids(task: Task) -> list[np.ndarray]:
    return [g for p in task.train + task.test for g in (p.input, p.output) if g is not None]


def pair_key(p: Pair) -> tuple:
    return (
        p.input.shape,
        p.input.tobytes(),
        None if p.output is None else (p.output.shape, p.output.tobytes()),
    )


def make_task(n_train: int = 3, n_test: int = 2, with_outputs: bool = True) -> Task:
    """A small task whose pairs are all different (pair k is filled with colour k, sizes differ)."""
    train = [
        Pair(np.full((k + 1, k + 2), k, np.uint8), np.full((k + 2, k + 1), k, np.uint8))
        for k in range(n_train)
    ]
    test = [
        Pair(
            np.full((1, k + 1), 9 - k, np.uint8),
            np.full((k + 1, 1), 9 - k, np.uint8) if with_outputs else None,
        )
        for k in range(n_test)
    ]
    return Task("t0", train, test, meta={"source": "made"})


# --- D8 ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("k", range(8))
def test_d8_hand_checked(k: int) -> None:
    out = d8_apply(G23, k)
    assert out.tolist() == EXPECTED_D8[k]
    assert out.dtype == np.uint8
    assert not np.shares_memory(out, G23)


def test_d8_matches_numpy_rot90_and_transpose() -> None:
    assert np.array_equal(d8_apply(G23, 1), np.rot90(G23))
    assert np.array_equal(d8_apply(G23, 3), np.rot90(G23, -1))
    assert np.array_equal(d8_apply(G23, 4), G23.T)


def test_d8_group_laws() -> None:
    images = [d8_apply(G23, k) for k in range(8)]
    assert len({(im.shape, im.tobytes()) for im in images}) == 8, "the 8 transforms must be distinct"
    for k in range(8):
        inv = d8_inverse(k)
        assert d8_inverse(inv) == k
        assert grids_equal(d8_apply(d8_apply(G23, k), inv), G23)
        assert grids_equal(d8_apply(d8_apply(G23, inv), k), G23)
        # exactly one element undoes k
        undo = [j for j in range(8) if grids_equal(d8_apply(images[k], j), G23)]
        assert undo == [inv]
    # closure: composing two elements gives one of the 8 images
    image_keys = {(im.shape, im.tobytes()): k for k, im in enumerate(images)}
    for a in range(8):
        for b in range(8):
            c = d8_apply(d8_apply(G23, a), b)
            assert (c.shape, c.tobytes()) in image_keys


@pytest.mark.parametrize("bad", [-1, 8, 1.0, True, "1"])
def test_d8_rejects_bad_index(bad: object) -> None:
    with pytest.raises(ValueError):
        d8_apply(G23, bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        d8_inverse(bad)  # type: ignore[arg-type]


# --- colour permutations -----------------------------------------------------------------------------


def test_random_colour_perm_keep0_and_all() -> None:
    rng = np.random.default_rng(0)
    keep = [random_colour_perm(rng, keep_background=True) for _ in range(200)]
    free = [random_colour_perm(rng, keep_background=False) for _ in range(200)]
    for p in keep + free:
        assert sorted(p) == list(range(10))
        assert all(type(c) is int for c in p)
    assert all(p[0] == 0 for p in keep)
    assert any(p[0] != 0 for p in free), "'all' must also move colour 0"
    assert len(set(keep)) > 100 and len(set(free)) > 100, "permutations must vary"


def test_random_augmentation_colour_modes() -> None:
    task = make_task(3)
    rng = np.random.default_rng(8)
    by_mode = {
        m: [random_augmentation(task, rng, colours=m).colours for _ in range(100)] for m in COLOUR_MODES
    }
    assert all(p[0] == 0 for p in by_mode["keep0"]) and len(set(by_mode["keep0"])) > 50
    assert any(p[0] != 0 for p in by_mode["all"])
    assert set(by_mode["none"]) == {tuple(range(10))}
    with pytest.raises(ValueError):
        random_augmentation(task, rng, colours="some")  # type: ignore[arg-type]


def test_invert_perm() -> None:
    perm = (3, 0, 9, 1, 2, 4, 8, 5, 6, 7)
    inv = invert_perm(perm)
    assert inv == (1, 3, 4, 0, 5, 7, 8, 9, 6, 2)
    assert all(inv[perm[c]] == c for c in range(10))
    assert invert_perm(inv) == perm
    with pytest.raises(ValueError):
        invert_perm((0, 0, 1))


def test_colour_application_hand_checked() -> None:
    perm = (0, 2, 3, 4, 5, 6, 7, 8, 9, 1)  # c -> c+1, 9 -> 1, 0 fixed
    aug = Augmentation(colours=perm)
    assert aug.apply_grid(G23).tolist() == [[2, 3, 4], [5, 6, 7]]
    assert aug.apply_grid(np.array([[0, 9]], np.uint8)).tolist() == [[0, 1]]
    both = Augmentation(d8=1, colours=perm)
    assert both.apply_grid(G23).tolist() == [[4, 7], [3, 6], [2, 5]]


# --- invertibility on real data --------------------------------------------------------------------


@pytest.mark.parametrize("colours", COLOUR_MODES)
def test_revert_apply_is_identity_on_all_arc_training_grids(arc_tasks: dict[str, Task], colours: str) -> None:
    rng = np.random.default_rng(1)
    checked = 0
    for task in arc_tasks.values():
        grids = all_grids(task)
        for k in range(8):
            aug = random_augmentation(task, rng, d8=False, colours=colours, shuffle_train=False)
            aug = Augmentation(d8=k, colours=aug.colours)
            lut = np.asarray(aug.colours)
            for g in grids:
                out = aug.apply_grid(g)
                assert out.dtype == np.uint8
                assert out.shape == (g.shape[::-1] if (k + (k >> 2)) & 1 else g.shape)
                # colour histogram is the permuted histogram: every cell is recoloured, none lost
                assert np.array_equal(
                    np.bincount(out.ravel(), minlength=10)[lut], np.bincount(g.ravel(), minlength=10)
                )
                if colours == "keep0":
                    assert (out == 0).sum() == (g == 0).sum()
                back = aug.revert_grid(out)
                assert back is not None and grids_equal(back, g), (task.id, aug.name)
                checked += 1
    assert checked > 400 * 8 * 5


def test_apply_task_then_revert_on_real_data(arc_tasks: dict[str, Task]) -> None:
    rng = np.random.default_rng(2)
    for task in arc_tasks.values():
        aug = random_augmentation(task, rng, colours="all")
        new = aug.apply(task)
        order = aug.train_order or tuple(range(len(task.train)))
        assert new.id == task.id and new.meta == task.meta
        assert len(new.train) == len(task.train) and len(new.test) == len(task.test)
        for j, p in enumerate(new.train):
            assert grids_equal(aug.revert_grid(p.input), task.train[order[j]].input)
            assert grids_equal(aug.revert_grid(p.output), task.train[order[j]].output)
        for p, q in zip(new.test, task.test, strict=True):
            assert grids_equal(aug.revert_grid(p.input), q.input)
            assert grids_equal(aug.revert_grid(p.output), q.output)


def test_revert_none_passes_through() -> None:
    assert Augmentation(d8=3, colours=random_colour_perm(np.random.default_rng(0))).revert_grid(None) is None


# --- Augmentation fields, names ------------------------------------------------------------------------


def test_identity_and_normalisation() -> None:
    assert Augmentation().is_identity
    assert Augmentation(train_order=(0, 1, 2)).is_identity
    assert Augmentation(train_order=(0, 1, 2)) == Augmentation()
    assert not Augmentation(d8=1).is_identity
    assert not Augmentation(train_order=(1, 0)).is_identity
    assert not Augmentation(colours=(0, 2, 1, 3, 4, 5, 6, 7, 8, 9)).is_identity
    assert Augmentation(colours=np.arange(10)).colours == tuple(range(10))  # type: ignore[arg-type]
    for bad in ({"d8": 8}, {"colours": (0, 1)}, {"colours": (1,) * 10}, {"train_order": (0, 0)}):
        with pytest.raises(ValueError):
            Augmentation(**bad)  # type: ignore[arg-type]


def test_name_examples() -> None:
    assert Augmentation().name == "id"
    aug = Augmentation(d8=3, colours=(0, 4, 3, 2, 1, 5, 6, 7, 8, 9), train_order=(2, 0, 1))
    assert aug.name == "d3.c0432156789.o2-0-1"
    assert Augmentation.parse("d3.c0432156789.o2-0-1") == aug
    assert Augmentation(d8=5).name == "d5"
    assert Augmentation(train_order=(1, 0)).name == "o1-0"
    assert Augmentation(train_order=tuple(range(11, -1, -1))).name == "o11-10-9-8-7-6-5-4-3-2-1-0"


def test_name_parse_round_trip() -> None:
    rng = np.random.default_rng(3)
    tasks = [make_task(n) for n in (1, 2, 5, 12)]
    names = set()
    for i in range(500):
        aug = random_augmentation(
            tasks[i % 4], rng, d8=i % 3 != 0, colours=COLOUR_MODES[i % 3], shuffle_train=i % 5 != 0
        )
        back = Augmentation.parse(aug.name)
        assert back == aug and back.name == aug.name
        names.add(aug.name)
    assert len(names) > 400
    assert Augmentation.parse("id").is_identity


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "x1",
        "d",
        "d9",
        "d0",
        "d1.d2",
        "c012",
        "c0123456789",
        "c012345678a",
        "o0-1",
        "o1-1",
        "o1--0",
        "d1..o1-0",
    ],
)
def test_parse_rejects_bad_names(bad: str) -> None:
    with pytest.raises(ValueError):
        Augmentation.parse(bad)


# --- apply() ---------------------------------------------------------------------------------------------


def test_apply_reorders_train_and_keeps_test_order() -> None:
    task = make_task(3, 2)
    aug = Augmentation(train_order=(2, 0, 1))
    new = aug.apply(task)
    assert [p.input[0, 0] for p in new.train] == [2, 0, 1]
    assert [p.output.shape for p in new.train] == [task.train[i].output.shape for i in (2, 0, 1)]
    assert [p.input[0, 0] for p in new.test] == [9, 8]
    assert new.meta == task.meta and new.meta is not task.meta
    assert new is not task and [p.input[0, 0] for p in task.train] == [0, 1, 2], "original untouched"
    # test outputs that are unknown stay unknown
    hidden = Augmentation(d8=1).apply(make_task(2, 2, with_outputs=False))
    assert all(p.output is None for p in hidden.test)
    with pytest.raises(ValueError):
        Augmentation(train_order=(1, 0)).apply(task)


# --- views() ---------------------------------------------------------------------------------------------


def test_views_identity_first_then_all_d8_distinct() -> None:
    task = make_task(4)
    vs = views(task, 30, np.random.default_rng(4))
    assert len(vs) == 30
    assert vs[0].is_identity
    assert [v.d8 for v in vs[1:8]] == list(range(1, 8))
    assert all(v.colours[0] == 0 for v in vs)
    assert any(v.colours != tuple(range(10)) for v in vs[1:8])
    assert any(v.train_order is not None for v in vs[1:8])
    assert len({v.name for v in vs}) == 30
    assert views(task, 0, np.random.default_rng(0)) == []
    assert views(task, 1, np.random.default_rng(0)) == [Augmentation()]
    assert len(views(task, 5, np.random.default_rng(0))) == 5


@pytest.mark.parametrize(
    ("n_train", "d8", "shuffle", "possible"),
    [(3, False, False, 1), (3, True, False, 8), (2, True, True, 16), (3, False, True, 6)],
)
def test_views_stop_when_no_more_distinct(n_train: int, d8: bool, shuffle: bool, possible: int) -> None:
    start = time.perf_counter()
    vs = views(
        make_task(n_train), 100, np.random.default_rng(5), d8=d8, colours="none", shuffle_train=shuffle
    )
    assert time.perf_counter() - start < 5
    assert len(vs) == possible
    assert len({v.name for v in vs}) == possible
    assert vs[0].is_identity


# --- leave_one_out, swap_train_test ------------------------------------------------------------------


def test_leave_one_out_on_real_data(arc_tasks: dict[str, Task]) -> None:
    for task in arc_tasks.values():
        for i in range(len(task.train)):
            loo = leave_one_out(task, i)
            assert len(loo.test) == 1 and loo.test[0] is task.train[i]
            assert loo.test[0].output is not None
            assert all(p is not task.train[i] for p in loo.train), "pair i leaked into train"
            assert loo.train == [p for j, p in enumerate(task.train) if j != i]
            assert loo.id == task.id


def test_leave_one_out_errors() -> None:
    with pytest.raises(ValueError):
        leave_one_out(make_task(1), 0)
    with pytest.raises(ValueError):
        leave_one_out(make_task(3), 3)
    with pytest.raises(ValueError):
        leave_one_out(make_task(3), -1)


def test_swap_train_test_keeps_multiset(arc_tasks: dict[str, Task]) -> None:
    rng = np.random.default_rng(6)
    for task in arc_tasks.values():
        before = [pair_key(p) for p in task.train + task.test]
        new = swap_train_test(task, rng)
        assert len(new.train) == len(task.train) and len(new.test) == len(task.test)
        assert Counter(pair_key(p) for p in new.train + new.test) == Counter(before)
        assert [pair_key(p) for p in task.train + task.test] == before, "original untouched"
        # exactly one test pair came from train and it really moved
        assert sum(any(p is q for q in task.train) for p in new.test) == 1
        assert sum(any(p is q for q in task.test) for p in new.train) == 1


def test_swap_train_test_is_random_and_needs_outputs() -> None:
    task = make_task(4, 2)
    rng = np.random.default_rng(7)
    moved = Counter(pair_key(p) for _ in range(200) for p in swap_train_test(task, rng).test)
    assert len(moved) == 4 + 2, "every train pair can move to test and every test pair can stay"
    with pytest.raises(ValueError):
        swap_train_test(make_task(3, 2, with_outputs=False), rng)
