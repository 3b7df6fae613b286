"""Score against training tokens: a log-linear fit of runs of one recipe, extrapolated with its uncertainty to a
larger budget (e.g. the Kaggle notebook's), and drawn as a PNG. Usage, from the repository root:

    python bench/score_curve.py docs/experiments/arc2-h200/curve.json --tasks 120 --target-tokens 9.9e9 -o curve.png \
        [--recipe base --recipe scale]

The points file is a JSON list of {"label", "steps", "rows", "seq_len", "score", "recipe"} (rows = the global
batch in packed rows): tokens = steps x rows x seq_len, which compares runs on different GPU counts at the same
batch. With --recipe each named recipe's points get their own fit and line in one plot (a change of recipe can
move both the level and the slope, so one line through both would describe neither); without, one fit of all.
Why log-linear: score against log(compute) is what the task-model length study showed on ARC-AGI-1 (0.25 ->
0.40 -> 0.52 at 150 / 360 / 1000 s); with few, noisy points (one seed, 120 tasks) a straight line in log
tokens is the most the data support, and the band says how little that is.
"""

from __future__ import annotations

import argparse
import itertools
import math
import sys
from pathlib import Path

import numpy as np

from arcsub.core.data import ArcDataError, read_json
from arcsub.core.viz import curves_image, save_png

# a group's runs and fit in one colour, its band in a lighter one
GROUP_COLOURS = (
    ("#0074D9", "#8CC4F2"),
    ("#FF4136", "#FFA8A3"),
    ("#2ECC40", "#9BE8A3"),
    ("#B10DC9", "#E09AEA"),
)


def tokens(point: dict) -> float:
    return float(point["steps"]) * point["rows"] * point["seq_len"]


def fit(points: list[dict], tasks: int = 0) -> dict:
    """score = a + b * ln(tokens), least squares; the parameter covariance from the residuals (n - 2 dof), or
    from the scores' sampling noise over `tasks` tasks when that is larger (a handful of points can sit closer
    to a line than their noise allows: one seed, one task set)."""
    x = np.log([tokens(p) for p in points])
    y = np.array([p["score"] for p in points], dtype=float)
    design = np.stack([np.ones_like(x), x], axis=1)
    coef, *_ = np.linalg.lstsq(design, y, rcond=None)
    dof = max(1, len(points) - 2)
    sigma2 = float(((y - design @ coef) ** 2).sum() / dof)
    if tasks:
        mean = float(y.mean())
        sigma2 = max(sigma2, mean * (1 - mean) / tasks)
    cov = sigma2 * np.linalg.inv(design.T @ design)
    return {"a": float(coef[0]), "b": float(coef[1]), "cov": cov.tolist(), "sigma": math.sqrt(sigma2)}


def predict(f: dict, n_tokens: float) -> tuple[float, float]:
    """(score, 1-sigma of the fitted line) at n_tokens; the band widens away from the points."""
    v = np.array([1.0, math.log(n_tokens)])
    return f["a"] + f["b"] * v[1], float(math.sqrt(v @ np.array(f["cov"]) @ v))


def by_recipe(points: list[dict], recipes: list[str]) -> dict[str, list[dict]]:
    """The points of each named recipe, or all points as "runs" when none is named; a recipe with fewer than
    two points cannot be fitted and is an error naming it."""
    if not recipes:
        return {"runs": points}
    groups = {r: [p for p in points if p.get("recipe") == r] for r in recipes}
    for r, pts in groups.items():
        if len({tokens(p) for p in pts}) < 2:
            raise ArcDataError(f"recipe {r!r}: {len(pts)} point(s) at under two lengths, nothing to fit")
    return groups


def draw(groups: dict[str, list[dict]], fits: dict[str, dict], target: float, out: Path) -> Path:
    """Each group's runs as dots, its fitted line and the line's 1-sigma band, out to the target tokens."""
    lo = math.log10(min(tokens(p) for pts in groups.values() for p in pts))
    xs = list(np.linspace(lo, math.log10(target), 24))
    series, dots, colours = {}, set(), {}
    for (name, pts), (main, light) in zip(groups.items(), itertools.cycle(GROUP_COLOURS)):
        mid = [predict(fits[name], 10**x) for x in xs]
        series[name] = ([math.log10(tokens(p)) for p in pts], [p["score"] for p in pts])
        series[f"{name}: fit"] = (xs, [m for m, _ in mid])
        series[f"{name}: fit + 1 sigma"] = (xs, [m + s for m, s in mid])
        series[f"{name}: fit - 1 sigma"] = (xs, [m - s for m, s in mid])
        dots.add(name)
        colours |= {
            name: main,
            f"{name}: fit": main,
            f"{name}: fit + 1 sigma": light,
            f"{name}: fit - 1 sigma": light,
        }
    img = curves_image(series, "log10(training tokens)", "Kaggle score", dots=dots, colours=colours)
    return save_png(img, out)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("points", type=Path)
    p.add_argument("--target-tokens", type=float, required=True)
    p.add_argument("--tasks", type=int, default=0, help="tasks each score is over: a noise floor for the fit")
    p.add_argument(
        "--recipe", action="append", default=[], help="fit this recipe's points alone (repeatable)"
    )
    p.add_argument("-o", "--out", type=Path, required=True)
    args = p.parse_args(argv)
    try:
        groups = by_recipe(read_json(args.points), args.recipe)
    except ArcDataError as e:
        sys.exit(f"score_curve: {e}")
    fits = {name: fit(pts, args.tasks) for name, pts in groups.items()}
    for name, pts in groups.items():
        f = fits[name]
        print(f"{name}:")
        for q in pts:
            print(f"{q['label']:>14}: {tokens(q):.3g} tokens, score {q['score']:.4f}")
        print(
            f"  fit: score = {f['a']:.4f} + {f['b']:.4f} ln(tokens) ({f['b'] * math.log(2):+.4f} a doubling); "
            f"residual sigma {f['sigma']:.4f}"
        )
        s, band = predict(f, args.target_tokens)
        print(f"  at {args.target_tokens:.3g} tokens: {s:.3f} +- {band:.3f} (1 sigma of the line)")
    print(f"plot: {draw(groups, fits, args.target_tokens, args.out)}")


if __name__ == "__main__":
    main()
