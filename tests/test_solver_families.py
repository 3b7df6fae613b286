"""The solver's program families added after a5e598f, each on the ARC-AGI-1 training tasks it was written for and
where it must refuse: periodic patterns continued, objects slid to an anchor, stamps around cells, odd-one-out
crops, fixed windows, the feature rule's object and interior features, answers looked up by the input's colours."""

from __future__ import annotations

import numpy as np
import pytest

from arcsub.core.data import grids_equal
from arcsub.solver.feature_rule import box_colour, size_extreme
from arcsub.solver.lookup import colours, fit_table
from arcsub.solver.objects import label
from arcsub.solver.periodic import continue_pattern, continue_rows, find_period
from arcsub.solver.search import solve
from arcsub.solver.select import any_symmetry, crop_rarest_colour, crop_selected, equal_blocks
from arcsub.solver.slide import slide_to
from arcsub.solver.stamp import StampRule, fit_stamp_rule
from arcsub.solver.window import fit_windows

FOUND = {
    "d8c310e9": "continue_cols_same",  # a frieze continued to the right edge
    "963e52fc": "continue_cols_double",  # onto a grid twice as wide
    "53b68214": "continue_rows_square",  # a staircase continued down to a square
    "017c7c7b": "continue_rows_half_more | colours",  # one and a half times as tall, recoloured
    "05f2a901": "slide_to_8",  # the shape moved until it touches the 8 square
    "a48eeaf7": "slide_to_2",  # grey cells pulled straight or diagonally onto the red square
    "4093f84a": "slide_into_5",  # cells stuck to the grey band turn grey (its test shows a new colour)
    "0ca9ddb6": "identity | stamp_1_2",  # corners around red, sides around blue
    "dc1df850": "identity | stamp_2",  # a blue ring around each red cell
    "d364b489": "identity | stamp_1",  # four colours around each blue cell
    "913fb3ed": "identity | stamp_2_3_8",  # a ring whose colour depends on the cell's
    "0b148d64": "crop_rarest_colour",  # the quadrant drawn in the colour the other three lack
    "1f85a75f": "crop_rarest_colour",  # the one shape among ~100 noise cells
    "72ca375d": "select_symmetric_8",  # the symmetric shape of three
    "88a62173": "select_unique_shape_8",  # the quadrant unlike the other three
    "ae4f1146": "select_most_rarest_colour_4",  # the block with most blue cells
    "662c240a": "block_asymmetric",  # of three stacked squares, the one no mirror or diagonal maps onto itself
    "a87f7484": "block_unique_pattern",  # of squares in a row, each in its own colour, the odd drawing
    "39a8645d": "select_commonest_shape",  # the shape drawn most often (a tie of identical crops answers)
    "48d8fb45": "select_beside_rarest",  # the shape the lone grey mark touches
    "5bd6f4ac": "window_top_left_0_6",  # always the same 3x3 corner of a 9x9 grid
    "d10ecb37": "window_top_left_0_0",  # always the top-left 2x2
    "aedd82e4": "identity | local_cell+size_extreme",  # the lone red cells (the smallest red pieces) turn blue
    "3aa6fb7a": "identity | local_cell+box_colour",  # the gap in each L-shape's box turns blue
    "50cb2852": "identity | local_cell+interior",  # the inside of each rectangle turns azure
    "d4469b4b": "lookup_colours",  # the input's colour names the 3x3 picture
}


@pytest.mark.parametrize("tid", sorted(FOUND))
def test_each_family_explains_its_training_task_and_answers_it_right(arc1_train, tid):
    task = arc1_train[tid]
    name, answers = solve(task)
    assert name.startswith(FOUND[tid])
    for pair, ours in zip(task.test, answers, strict=True):
        assert grids_equal(ours[0], pair.output)


def g(rows: list[str]) -> np.ndarray:
    return np.array([[int(c) for c in r] for r in rows], dtype=np.uint8)


def test_a_period_must_be_seen_repeating():
    frieze = g(["12312300", "00000000"]).T  # columns as rows: "123" twice, then blank
    assert find_period(frieze, 0, 6) == (3, 0)
    assert continue_rows(frieze, 8)[6:, 0].tolist() == [1, 2]
    once = g(["1234", "0000", "0000"])  # a pattern drawn once has no period to continue
    assert continue_pattern("cols", "same")(once) is None
    assert continue_pattern("rows", "same")(np.zeros((3, 3), dtype=np.uint8)) is None
    staircase = g(["1100", "0110", "0000", "0000"])  # rows repeat one column further right
    assert find_period(staircase[:2], 0, 2) is None  # two rows show a step once only
    assert continue_pattern("rows", "half_more")(g(["12", "12", "12"])) is None  # odd height: no 3/2 canvas


def test_slide_refuses_without_an_anchor_or_a_move():
    grid = g(["00000", "20008", "00000"])
    assert slide_to(8)(grid).tolist() == g(["00000", "00028", "00000"]).tolist()
    assert slide_to(8, join=True)(grid).tolist() == g(["00000", "00088", "00000"]).tolist()
    assert slide_to(3)(grid) is None  # no anchor
    assert slide_to(8)(g(["00000", "00028", "00000"])) is None  # already touching: nothing moves


def test_stamp_refuses_disagreeing_demonstrations_clashes_and_inputs_without_its_colours():
    a, b = g(["00000", "00100", "00000"]), g(["00000", "02120", "00000"])
    c, d = g(["0000", "0100", "0000"]), g(["0000", "2120", "0000"])
    rule = fit_stamp_rule([a, c], [b, d])
    assert rule is not None and rule.stencils == {1: ((0, -1, 2), (0, 1, 2))}
    assert fit_stamp_rule([a, c], [b, g(["0000", "3120", "0000"])]) is None  # left of blue: red, then green
    assert fit_stamp_rule([a], [b]) is None  # each offset seen once only
    assert rule(g(["000", "030", "000"])) is None  # no blue cell: nothing to stamp
    clash = StampRule({1: ((0, 1, 2),), 3: ((0, -1, 4),)})
    assert clash(g(["103"])) is None  # the middle cell painted red and yellow


def test_odd_one_out_crops_refuse_ties_and_single_objects():
    two_alike = g(["110011", "000000", "100001"])  # pairs of one shape each: no shape is the unique one
    assert crop_selected("unique_shape", True, False)(two_alike) is None
    odd = g(["110011", "000000", "100000"])  # the lone cell is the one shape that occurs once
    assert crop_selected("unique_shape", True, False)(odd).tolist() == [[1]]
    assert (
        crop_selected("symmetric", True, False)(g(["0110", "0000"])) is None
    )  # one object: nothing to pick from
    assert crop_rarest_colour(g(["120", "000"])) is None  # red and blue tie for the rarest
    assert crop_rarest_colour(g(["1112", "0002"])).tolist() == [[2], [2]]


def test_equal_blocks_cut_only_whole_squares_and_symmetry_counts_the_diagonals():
    assert [b.shape for b in equal_blocks(np.zeros((6, 2), dtype=np.uint8))] == [(2, 2)] * 3
    assert equal_blocks(np.zeros((5, 2), dtype=np.uint8)) is None  # 5 is not a multiple of 2
    assert equal_blocks(np.zeros((3, 3), dtype=np.uint8)) is None  # one square: nothing to compare
    assert any_symmetry(g(["12", "23"]))  # mirrored about its main diagonal only
    assert not any_symmetry(g(["12", "34"]))


def test_a_window_is_learned_only_for_one_output_size_of_four_cells_or_more():
    grid = g(["1234", "5678", "9012"])
    names = [t.name for t in fit_windows([grid, grid], [g(["78", "12"])])]
    assert names[0] == "window_top_left_1_2" and "window_bottom_right_0_0" in names
    assert fit_windows([grid], [g(["12"])]) == []  # two cells match by chance too easily
    assert fit_windows([grid, grid], [g(["12", "56"]), g(["123", "567"])]) == []  # the outputs' sizes differ
    assert fit_windows([grid], [grid]) == []  # the whole input is no crop


def test_object_features_rank_pieces_by_size_per_colour_and_find_the_smallest_box():
    grid = g(["1100", "0001", "2020", "2000"])
    # the two-cell blue and red pieces are their colour's largest (1), the single cells its smallest (2); the
    # background is one piece, so both (3)
    assert size_extreme(grid).tolist() == [[1, 1, 3, 3], [3, 3, 3, 2], [1, 3, 2, 3], [1, 3, 3, 3]]
    boxes = box_colour(g(["110", "100", "002"]))  # an L-shape's box holds its gap; no shape holds (1, 2)
    assert boxes.tolist() == [[1, 1, 10], [1, 1, 10], [10, 10, 2]]


def test_a_lookup_needs_a_repeated_key_a_function_and_two_sightings_of_a_tiny_answer():
    red, blue = g(["20", "02"]), g(["10", "01"])
    square, line = g(["11", "11"]), g(["1111"])
    assert colours(g(["202", "000"])) == (2,)
    table = fit_table(colours, [red, blue, g(["22", "00"])], [square, line, square])
    assert table is not None and set(table) == {(1,), (2,)}  # 4-cell answers: one sighting of blue suffices
    assert fit_table(colours, [red, blue], [square, line]) is None  # no key repeats: nothing shows it decides
    assert fit_table(colours, [red, g(["22", "00"])], [square, line]) is None  # one key, two answers
    assert fit_table(colours, [red, g(["22", "00"])], [square, square]) is None  # one answer for everything
    dot, dash = g(["5"]), g(["55"])
    tiny = fit_table(colours, [red, blue, g(["22", "00"])], [dot, dash, dot])
    assert list(tiny) == [(2,)] and grids_equal(tiny[(2,)], dot)  # a tiny answer seen once (blue): chance


def test_labelled_grids_are_cached_read_only_and_keyed_on_every_argument():
    grid = g(["110", "001", "220"])
    first, again = label(grid, 0, False, True), label(grid.copy(), 0, False, True)
    assert [o.box for o in first] == [o.box for o in again] == [(0, 0, 1, 2), (1, 2, 2, 3), (2, 0, 3, 2)]
    assert first[0].mask is again[0].mask and not first[0].mask.flags.writeable  # one copy, never changed
    assert len(label(grid, 0, True, False)) == 1  # other arguments, another entry: all touch diagonally
    assert len(label(grid.T, 0, False, True)) == 3 and label(grid.T, 0, False, True)[1].box == (0, 2, 2, 3)
