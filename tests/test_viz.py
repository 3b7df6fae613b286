"""Pictures: PNG of a task with predictions, HTML report with wrong cells marked, and the show command."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from arcsub.core.data import Pair, Task, grid_to_list
from arcsub.core.viz import PALETTE_HEX, grid_html, grid_image, render_html, render_task_png

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _task_with_pairs(task: Task, n: int) -> Task:
    train = [task.train[i % len(task.train)] for i in range(n)]
    return replace(task, train=train)


@pytest.fixture
def real_task(arc1_train) -> Task:
    return arc1_train["007bbfb7"] if "007bbfb7" in arc1_train else next(iter(arc1_train.values()))


def _wrong(grid: np.ndarray, cells: int) -> np.ndarray:
    g = grid.copy()
    flat = g.reshape(-1)
    flat[:cells] = (flat[:cells] + 1) % 10
    return g


def test_palette_is_the_standard_arc_one():
    assert PALETTE_HEX[0] == "#000000" and PALETTE_HEX[9] == "#870C25" and len(PALETTE_HEX) == 10
    img = np.asarray(grid_image(np.array([[2, 8]], np.uint8), cell=10))
    assert tuple(img[5, 5]) == (0xFF, 0x41, 0x36) and tuple(img[5, 15]) == (0x7F, 0xDB, 0xFF)


def test_wrong_cells_are_marked_and_wrong_shape_framed():
    truth = np.array([[0, 0], [0, 0]], np.uint8)
    pred = np.array([[0, 0], [0, 1]], np.uint8)
    plain = np.asarray(grid_image(pred, cell=12))
    marked = np.asarray(grid_image(pred, cell=12, truth=truth))
    assert plain.shape == marked.shape
    assert (plain[:12, :12] == marked[:12, :12]).all()  # a right cell is untouched
    assert (plain[12:, 12:] != marked[12:, 12:]).any()  # the wrong cell is crossed out
    framed = grid_image(np.array([[0]], np.uint8), cell=12, truth=truth)
    assert framed.size[0] > 13 and framed.getpixel((0, 0)) != (85, 85, 85)


def test_png_is_written_and_grows_with_pairs(real_task, tmp):
    sizes = []
    for n in (1, 2, 4):
        path = render_task_png(_task_with_pairs(real_task, n), tmp / f"t{n}.png")
        data = path.read_bytes()
        assert data[:8] == PNG_MAGIC and len(data) > 500
        with Image.open(path) as im:
            sizes.append(im.size)
    heights = [h for _, h in sizes]
    assert heights[0] < heights[1] < heights[2]
    assert sorted(p.name for p in tmp.iterdir()) == ["t1.png", "t2.png", "t4.png"]  # no temp files left


def test_png_with_predictions_is_wider_and_counts_candidates(real_task, tmp):
    truth = real_task.test[0].output
    cands = [grid_to_list(_wrong(truth, 3))] * 3 + [grid_to_list(truth)] * 2 + [None, [[1]]]
    preds = {real_task.id: [cands] + [[grid_to_list(p.output)] for p in real_task.test[1:]]}
    alone = render_task_png(real_task, tmp / "alone.png")
    with_preds = render_task_png(real_task, tmp / "preds.png", preds)
    with Image.open(alone) as a, Image.open(with_preds) as b:
        assert b.size[0] > a.size[0]
    one = render_task_png(real_task, tmp / "one.png", preds, max_candidates=1)
    with Image.open(one) as c, Image.open(with_preds) as b:
        assert c.size[0] < b.size[0]


def _toy_tasks():
    g = np.array([[1, 2], [3, 4]], np.uint8)
    out = np.array([[4, 3], [2, 1]], np.uint8)
    return {
        "task-a": Task("task-a", [Pair(g, out)], [Pair(g, out)]),
        "task-b": Task("task-b", [Pair(g, out)], [Pair(g, out), Pair(out, g)]),
    }


def test_html_report_names_tasks_and_marks_wrong_cells(tmp):
    tasks = _toy_tasks()
    right = [[4, 3], [2, 1]]
    two_wrong = [[4, 3], [0, 0]]
    preds = {
        "task-a": [[two_wrong, two_wrong, right, None]],
        "task-b": [[right], [[[1, 2], [3, 4]], [[9]]]],
    }
    path = render_html(tasks, preds, tmp / "report.html")
    text = path.read_text()
    assert text.startswith("<!doctype html>") and text.rstrip().endswith("</html>")
    assert "task-a" in text and "task-b" in text
    assert "accuracy" in text and "vote_2" in text  # summary metrics at the top
    assert text.count(" x'") == 2  # exactly the two wrong cells of two_wrong (shown once, count 2)
    assert "x2" in text and "WRONG 2 cell(s)" in text and "WRONG size 1x1" in text
    assert "OK" in text and "1 unparsable" in text
    assert sorted(p.name for p in tmp.iterdir()) == ["report.html"]


def test_grid_html_marks_only_differences():
    t = np.array([[1, 1, 1]], np.uint8)
    html = grid_html(np.array([[1, 2, 1]], np.uint8), t)
    assert re.findall(r"class='([^']*)'", html)[1:] == ["c1", "c2 x", "c1"]
    assert " x'" not in grid_html(np.array([[1], [2]], np.uint8), t)  # wrong shape: framed, not crossed


def test_html_without_predictions_lists_all_tasks(tmp):
    text = render_html(_toy_tasks(), None, tmp / "r.html").read_text()
    assert "task-a" in text and "task-b" in text and " x'" not in text


def test_show_command_png_and_html(arc1_eval, tmp, run_cli):
    ids = sorted(arc1_eval)[:3]
    c, s, p = tmp / "c.json", tmp / "s.json", tmp / "p.json"
    c.write_text(json.dumps({t: arc1_eval[t].to_json() for t in ids}))
    s.write_text(json.dumps({t: [grid_to_list(x.output) for x in arc1_eval[t].test] for t in ids}))
    preds = {
        t: [[grid_to_list(_wrong(x.output, 1)), grid_to_list(x.output)] for x in arc1_eval[t].test]
        for t in ids
    }
    p.write_text(json.dumps(preds))
    res = run_cli("show", c, "--task", ids[1], "--solutions", s, "--predictions", p, "-o", tmp / "out.png")
    assert res.rc == 0, res.err
    assert (tmp / "out.png").read_bytes()[:8] == PNG_MAGIC
    res = run_cli("show", c, "--task", "all", "--solutions", s, "--predictions", p, "-o", tmp / "out.html")
    assert res.rc == 0, res.err
    html = (tmp / "out.html").read_text()
    assert all(t in html for t in ids) and " x'" in html
    res = run_cli("show", c, "--task", ids[0], "-o", tmp / "plain.png")  # no solutions, no predictions
    assert res.rc == 0 and (tmp / "plain.png").stat().st_size > 0


def test_plot_draws_training_curves_of_real_logs(run_cli, tmp_path):
    logs = Path(__file__).resolve().parent.parent / "docs" / "experiments"
    a, b = logs / "task_transductive_1gpu_log.jsonl", logs / "task_transductive_4gpu_log.jsonl"
    res = run_cli("plot", a, b, "--label", "one", "--label", "four", "--log-y", "-o", tmp_path / "c.png")
    assert res.rc == 0, res.err
    img = np.asarray(Image.open(tmp_path / "c.png").convert("RGB"))
    assert img.shape == (420, 720, 3)
    for colour in ("#0074D9", "#FF4136"):  # one line per log, in its colour
        rgb = [int(colour[i : i + 2], 16) for i in (1, 3, 5)]
        assert (img == rgb).all(-1).sum() > 200


def test_measured_runs_are_dots_and_the_fit_a_line():
    """The score curve's runs are separate measurements: joined, two runs of one length draw a false spike."""
    from arcsub.core.viz import CURVE_COLOURS, curves_image

    series = {"runs": ([0.0, 10.0], [0.0, 1.0]), "fit": ([0.0, 10.0], [0.0, 1.0])}
    rgb = [[int(c[i : i + 2], 16) for i in (1, 3, 5)] for c in CURVE_COLOURS[:2]]
    for dots, joined in (((), True), ({"runs"}, False)):
        img = np.asarray(curves_image({"runs": series["runs"]}, "x", "y", dots=dots).convert("RGB"))
        middle = img[150:260, 300:420]  # around the diagonal's midpoint, away from the legend
        assert (middle == rgb[0]).all(-1).any() == joined
    both = np.asarray(curves_image(series, "x", "y", dots={"runs"}).convert("RGB"))
    assert (both[150:260, 300:420] == rgb[1]).all(-1).any()  # the fit is still a line


def test_a_fixed_colour_draws_its_series_and_the_others_keep_the_cycle():
    """The score curve draws a recipe's fit in its runs' colour: a named colour wins over the cycle."""
    from arcsub.core.viz import CURVE_COLOURS, curves_image

    series = {"a": ([0.0, 10.0], [0.0, 1.0]), "b": ([0.0, 10.0], [1.0, 0.0])}
    img = np.asarray(curves_image(series, "x", "y", colours={"a": "#123456"}).convert("RGB"))
    middle = img[150:260, 300:420]
    assert (middle == [0x12, 0x34, 0x56]).all(-1).any()
    assert not (middle == [int(CURVE_COLOURS[0][i : i + 2], 16) for i in (1, 3, 5)]).all(-1).any()
    assert (middle == [int(CURVE_COLOURS[1][i : i + 2], 16) for i in (1, 3, 5)]).all(-1).any()


def test_a_resumed_runs_log_is_one_curve_forward_in_steps(tmp_path):
    """A run killed after step 30 resumes from its step-20 checkpoint and logs steps 30.. again."""
    from arcsub.core.viz import read_log_series

    log = tmp_path / "log.jsonl"
    steps = [10, 20, 30, 30, 40]
    log.write_text(
        "".join(json.dumps({"step": s, "loss": 1.0 / (k + 1)}) + "\n" for k, s in enumerate(steps))
    )
    assert read_log_series(log, "step", "loss") == ([10.0, 20.0, 30.0, 40.0], [1.0, 0.5, 0.25, 0.2])


@pytest.mark.parametrize(
    "args, message",
    [
        (["--label", "only-one"], "2 log(s)"),
        (["--y", "nope"], "no record has both"),
        (["-o", "x.jpg"], "must end in .png"),
    ],
)
def test_plot_bad_input_is_one_line(run_cli, tmp_path, args, message):
    log = tmp_path / "log.jsonl"
    log.write_text('{"step": 1, "loss": 2.0}\n{"step": 2, "loss": 1.0}\n')
    out = ["-o", str(tmp_path / "c.png")] if "-o" not in args else []
    res = run_cli("plot", log, log, *args, *out)
    assert res.rc == 2 and len(res.err_lines) == 1 and message in res.err
