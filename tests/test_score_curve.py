"""bench/score_curve.py: the score-against-tokens fit, one line per recipe, on the kept ARC-AGI-2 curve points."""

import math
from pathlib import Path

import pytest
from bench_scripts import bench_module

from arcsub.core.data import ArcDataError, read_json

CURVE = Path(__file__).resolve().parents[1] / "docs" / "experiments" / "arc2-h200" / "curve.json"


def line_points(a: float, b: float, steps: list[int], recipe: str) -> list[dict]:
    """Points exactly on score = a + b ln(tokens), 4 rows of 8192 tokens a step."""
    return [
        {
            "label": f"{recipe}{s}",
            "steps": s,
            "rows": 4,
            "seq_len": 8192,
            "recipe": recipe,
            "score": a + b * math.log(s * 4 * 8192),
        }
        for s in steps
    ]


def test_each_recipe_gets_its_own_line():
    sc = bench_module("score_curve")
    points = line_points(-0.2, 0.01, [1000, 4000, 16000], "base") + line_points(
        -0.5, 0.03, [2000, 9000], "scale"
    )
    groups = sc.by_recipe(points, ["base", "scale"])
    fits = {name: sc.fit(pts) for name, pts in groups.items()}
    assert fits["base"]["b"] == pytest.approx(0.01) and fits["scale"]["b"] == pytest.approx(0.03)
    assert fits["scale"]["a"] == pytest.approx(-0.5)
    assert sc.by_recipe(points, []) == {"runs": points}  # no recipe named: one fit of all


def test_a_recipe_without_two_lengths_cannot_be_fitted():
    sc = bench_module("score_curve")
    points = line_points(-0.2, 0.01, [1000, 1000], "base")
    with pytest.raises(ArcDataError, match="'base'.*under two lengths"):
        sc.by_recipe(points, ["base"])
    with pytest.raises(ArcDataError, match="'large'"):
        sc.by_recipe(points, ["large"])


def test_the_kept_curve_fits_and_plots_both_recipes(tmp_path, capsys):
    sc = bench_module("score_curve")
    points = read_json(CURVE)
    assert {p["recipe"] for p in points} == {"base", "scale"}
    out = tmp_path / "curve.png"
    sc.main(
        [
            str(CURVE),
            "--tasks",
            "120",
            "--target-tokens",
            "9.9e9",
            "--recipe",
            "base",
            "--recipe",
            "scale",
            "-o",
            str(out),
        ]
    )
    printed = capsys.readouterr().out
    assert printed.count("fit: score =") == 2 and out.stat().st_size > 1000
    for name in ("base", "scale"):  # each recipe's points, and only those, under its heading
        section = printed.split(f"{name}:\n", 1)[1].split("at 9.9e+09 tokens")[0]
        assert all((p["label"] in section) == (p["recipe"] == name) for p in points)


def test_an_unknown_recipe_is_one_line_and_exit_message(tmp_path):
    sc = bench_module("score_curve")
    with pytest.raises(SystemExit, match="score_curve: recipe 'tiny'"):
        sc.main([str(CURVE), "--target-tokens", "1e9", "--recipe", "tiny", "-o", str(tmp_path / "c.png")])
