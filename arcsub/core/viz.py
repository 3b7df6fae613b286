"""Pictures of tasks and predictions: one task as a PNG (Pillow), a whole predictions file as an HTML report.

Colours are the standard ARC palette. Wrong cells of a candidate with the right shape are crossed out;
a candidate of the wrong shape gets a red frame. Files are written atomically (temp file + rename).
"""

from __future__ import annotations

import html
import io
import os
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from arcsub.core.data import ArcDataError, Grid, Task, write_bytes_atomic
from arcsub.core.metrics import (
    Candidates,
    compute_metrics,
    format_metrics_table,
    group_candidates,
    normalize_predictions,
)

PALETTE_HEX = (
    "#000000",  # 0 black
    "#0074D9",  # 1 blue
    "#FF4136",  # 2 red
    "#2ECC40",  # 3 green
    "#FFDC00",  # 4 yellow
    "#AAAAAA",  # 5 grey
    "#F012BE",  # 6 magenta
    "#FF851B",  # 7 orange
    "#7FDBFF",  # 8 sky
    "#870C25",  # 9 maroon
)
PALETTE = np.array([[int(h[i : i + 2], 16) for i in (1, 3, 5)] for h in PALETTE_HEX], dtype=np.uint8)
_LIGHT = {3, 4, 5, 7, 8}  # colours on which a white mark is hard to see

BG = (255, 255, 255)
INK = (30, 30, 30)
GRIDLINE = (85, 85, 85)
OK_COLOUR = (20, 140, 40)
BAD_COLOUR = (210, 20, 20)
MUTED = (110, 110, 110)
PAD = 10


def _font(size: int = 12) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # Pillow without FreeType
        return ImageFont.load_default()


def _task_predictions(task: Task, predictions: Any) -> list[Candidates] | None:
    """This task's candidates per test input, normalized, from its own list or a whole predictions mapping."""
    if predictions is None:
        return None
    if isinstance(predictions, Mapping):
        if task.id not in predictions:
            return None
        predictions = predictions[task.id]
    per_test = normalize_predictions({task.id: predictions})[task.id]
    if len(per_test) != len(task.test):
        raise ArcDataError(
            f"task {task.id}: {len(per_test)} candidate list(s) for {len(task.test)} test input(s)"
        )
    return per_test


def _wrong_cells(grid: Grid, truth: Grid | None) -> np.ndarray | None:
    if truth is None or grid.shape != truth.shape:
        return None
    return np.asarray(grid) != np.asarray(truth)


# ---------------------------------------------------------------- PNG


def grid_image(grid: Grid, cell: int = 16, truth: Grid | None = None) -> Image.Image:
    """One grid as an RGB image: `cell` pixels a cell, grid lines, wrong cells (vs `truth`) crossed out,
    and a red frame when the shape differs from `truth`."""
    g = np.asarray(grid, dtype=np.uint8)
    h, w = g.shape
    rgb = PALETTE[g].repeat(cell, axis=0).repeat(cell, axis=1)
    img = np.empty((h * cell + 1, w * cell + 1, 3), dtype=np.uint8)
    img[:] = GRIDLINE
    img[: h * cell, : w * cell] = rgb
    img[::cell, :] = GRIDLINE
    img[:, ::cell] = GRIDLINE
    im = Image.fromarray(img, "RGB")
    draw = ImageDraw.Draw(im)
    wrong = _wrong_cells(g, truth)
    if wrong is not None:
        lw = max(1, cell // 6)
        m = max(1, cell // 5)
        for y, x in zip(*np.nonzero(wrong), strict=True):
            colour = (0, 0, 0) if int(g[y, x]) in _LIGHT else (255, 255, 255)
            x0, y0, x1, y1 = x * cell + m, y * cell + m, (x + 1) * cell - m, (y + 1) * cell - m
            draw.line([(x0, y0), (x1, y1)], fill=colour, width=lw)
            draw.line([(x0, y1), (x1, y0)], fill=colour, width=lw)
    elif truth is not None:
        frame = Image.new("RGB", (im.width + 6, im.height + 6), BAD_COLOUR)
        frame.paste(im, (3, 3))
        im = frame
    return im


def _cell_size(task: Task, per_test: list[Candidates] | None) -> int:
    grids = [p.input for p in task.train + task.test] + [p.output for p in task.train + task.test]
    if per_test:
        grids += [c for cands in per_test for c in cands]
    side = max(max(np.asarray(g).shape) for g in grids if g is not None)
    return int(np.clip(240 // side, 5, 24))


def _panel(grid: Grid, label: str, colour: tuple, cell: int, font, truth: Grid | None = None) -> Image.Image:
    gi = grid_image(grid, cell, truth)
    th = font.getbbox("Ag")[3] + 4
    tw = int(font.getlength(label)) if hasattr(font, "getlength") else len(label) * 7
    im = Image.new("RGB", (max(gi.width, tw), gi.height + th), BG)
    ImageDraw.Draw(im).text((0, 0), label, fill=colour, font=font)
    im.paste(gi, (0, th))
    return im


def _arrow(height: int, width: int = 28) -> Image.Image:
    im = Image.new("RGB", (width, height), BG)
    d = ImageDraw.Draw(im)
    y = height // 2
    d.line([(4, y), (width - 6, y)], fill=INK, width=2)
    d.polygon([(width - 4, y), (width - 11, y - 5), (width - 11, y + 5)], fill=INK)
    return im


def _hstack(parts: Sequence[Image.Image], gap: int = 12) -> Image.Image:
    w = sum(p.width for p in parts) + gap * (len(parts) - 1)
    h = max(p.height for p in parts)
    im = Image.new("RGB", (w, h), BG)
    x = 0
    for p in parts:
        im.paste(p, (x, 0))
        x += p.width + gap
    return im


def _row(label: str, colour: tuple, panels: Sequence[Image.Image], font, arrow_after: int = 0) -> Image.Image:
    parts: list[Image.Image] = []
    grid_h = max(p.height for p in panels)
    for i, p in enumerate(panels):
        parts.append(p)
        if i + 1 == arrow_after:
            parts.append(_arrow(grid_h))
    body = _hstack(parts)
    th = font.getbbox("Ag")[3] + 6
    im = Image.new("RGB", (body.width, body.height + th), BG)
    ImageDraw.Draw(im).text((0, 0), label, fill=colour, font=font)
    im.paste(body, (0, th))
    return im


def candidate_label(rank: int, count: int, grid: Grid, truth: Grid | None) -> tuple[str, tuple]:
    """Header text and colour of one candidate: rank, votes, and correct / wrong cells / wrong size."""
    head = f"#{rank} x{count}"
    if truth is None:
        return head, INK
    if grid.shape != truth.shape:
        return f"{head} WRONG size {grid.shape[0]}x{grid.shape[1]}", BAD_COLOUR
    bad = int((grid != truth).sum())
    return (f"{head} OK", OK_COLOUR) if bad == 0 else (f"{head} WRONG {bad} cell(s)", BAD_COLOUR)


def _shown_groups(cands: Candidates, truth: Grid | None, k: int) -> list[tuple[int, Grid, int]]:
    """(rank, grid, count) of the top `k` distinct candidates, swapping the right one in if ranked lower."""
    groups = [(i + 1, g, n) for i, (g, n) in enumerate(group_candidates(cands))]
    shown = groups[:k]
    if truth is not None:
        right = [x for x in groups[k:] if x[1].shape == truth.shape and (x[1] == truth).all()]
        if right and k > 0:
            shown = shown[: k - 1] + right[:1]
    return shown


def task_image(
    task: Task, predictions: Any = None, max_candidates: int = 4, cell: int | None = None
) -> Image.Image:
    """The whole task as one image: train pairs, then each test input -> truth and the top candidates."""
    per_test = _task_predictions(task, predictions)
    cell = cell or _cell_size(task, per_test)
    font, big = _font(12), _font(16)
    rows: list[Image.Image] = []
    n_right = 0
    for i, p in enumerate(task.train):
        panels = [_panel(p.input, "input", MUTED, cell, font), _panel(p.output, "output", MUTED, cell, font)]
        rows.append(_row(f"train {i}", INK, panels, font, arrow_after=1))
    for i, p in enumerate(task.test):
        panels = [_panel(p.input, "input", MUTED, cell, font)]
        if p.output is not None:
            panels.append(_panel(p.output, "truth", MUTED, cell, font))
        label, colour = f"test {i}", INK
        if per_test is not None:
            cands = per_test[i]
            invalid = sum(c is None for c in cands)
            for rank, g, count in _shown_groups(cands, p.output, max_candidates):
                text, col = candidate_label(rank, count, g, p.output)
                panels.append(_panel(g, text, col, cell, font, p.output))
            right = p.output is not None and any(
                c is not None and c.shape == p.output.shape and (c == p.output).all() for c in cands
            )
            n_right += right
            label = f"test {i}: {len(cands)} candidate(s), {invalid} unparsable"
            if p.output is not None:
                label += ", solved" if right else ", NOT solved"
                colour = OK_COLOUR if right else BAD_COLOUR
        rows.append(_row(label, colour, panels, font, arrow_after=1))
    title = f"task {task.id}: {len(task.train)} train pair(s), {len(task.test)} test input(s)"
    title_colour = INK
    if per_test is not None and task.has_solutions:
        title += f" - {n_right}/{len(task.test)} test output(s) solved by a candidate"
        title_colour = OK_COLOUR if n_right == len(task.test) else BAD_COLOUR
    th = big.getbbox("Ag")[3] + 10
    width = max(max(r.width for r in rows), int(big.getlength(title)) if hasattr(big, "getlength") else 0)
    height = th + sum(r.height for r in rows) + PAD * len(rows)
    im = Image.new("RGB", (width + 2 * PAD, height + 2 * PAD), BG)
    d = ImageDraw.Draw(im)
    d.text((PAD, PAD), title, fill=title_colour, font=big)
    y = PAD + th
    for r in rows:
        d.line([(PAD, y - PAD // 2), (im.width - PAD, y - PAD // 2)], fill=(220, 220, 220))
        im.paste(r, (PAD, y))
        y += r.height + PAD
    return im


def save_png(image: Image.Image, path: str | os.PathLike, optimize: bool = False) -> Path:
    """Write `image` as a PNG at `path` atomically (a reader never sees half a file). Returns the path."""
    buf = io.BytesIO()
    image.save(buf, format="PNG", optimize=optimize)
    return write_bytes_atomic(path, buf.getvalue())


def render_task_png(
    task: Task,
    path: str | os.PathLike,
    predictions: Any = None,
    max_candidates: int = 4,
    cell: int | None = None,
) -> Path:
    """Draw `task` (and its candidates: the task's list per test input, or a whole predictions mapping)
    to a PNG at `path`, written atomically. Returns the path."""
    return save_png(task_image(task, predictions, max_candidates, cell), path, optimize=True)


# ---------------------------------------------------------------- HTML

_CSS = """
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}
h1{font-size:1.4em} h2{font-size:1.1em;margin-top:2em;border-top:1px solid #ccc;padding-top:.6em}
table.g{border-collapse:collapse;display:inline-table;margin:2px}
table.g td{width:10px;height:10px;padding:0;border:1px solid #555}
td.x{box-shadow:inset 0 0 0 2px #fff;background-image:linear-gradient(45deg,transparent 42%,#fff 42%,#fff 58%,transparent 58%)}
.fig{display:inline-block;vertical-align:top;margin:0 10px 8px 0}
.cap{font-size:.8em;color:#555} .ok{color:#148c28;font-weight:600} .bad{color:#d21414;font-weight:600}
.badsize table.g{outline:3px solid #d21414}
table.m{border-collapse:collapse;font-size:.9em} table.m td,table.m th{border:1px solid #ccc;padding:2px 8px;text-align:right}
pre{background:#f6f6f6;padding:.6em}
""" + "".join(f".c{i}{{background:{h}}}" for i, h in enumerate(PALETTE_HEX))


def grid_html(grid: Grid, truth: Grid | None = None) -> str:
    """A grid as an HTML table; cells that differ from `truth` (same shape) get class "x"."""
    g = np.asarray(grid)
    wrong = _wrong_cells(g, truth)
    rows = []
    for y in range(g.shape[0]):
        cells = "".join(
            f"<td class='c{int(v)}{' x' if wrong is not None and wrong[y, x] else ''}'></td>"
            for x, v in enumerate(g[y])
        )
        rows.append(f"<tr>{cells}</tr>")
    return f"<table class='g'>{''.join(rows)}</table>"


def _fig(inner: str, caption: str, cls: str = "") -> str:
    return f"<div class='fig {cls}'><div class='cap'>{caption}</div>{inner}</div>"


def _task_html(
    task: Task, per_test: list[Candidates] | None, metrics: Mapping[str, float] | None, k: int
) -> str:
    tid = html.escape(task.id)
    head = f"<h2 id='{tid}'>task {tid}</h2>"
    if metrics is not None:
        head += (
            "<div class='cap'>"
            + ", ".join(
                f"{key} {metrics[key]:.0%}"
                for key in ("accuracy", "correct_pixels", "pass_n", "vote_2", "unanswered")
            )
            + "</div>"
        )
    train = "".join(
        f"<div>{_fig(grid_html(p.input), f'train {i} input')}{_fig(grid_html(p.output), 'output')}</div>"
        for i, p in enumerate(task.train)
    )
    parts = [head, f"<details><summary>{len(task.train)} train pair(s)</summary>{train}</details>"]
    for i, p in enumerate(task.test):
        figs = [_fig(grid_html(p.input), f"test {i} input")]
        if p.output is not None:
            figs.append(_fig(grid_html(p.output), "truth"))
        if per_test is not None:
            cands = per_test[i]
            for rank, g, count in _shown_groups(cands, p.output, k):
                text, colour = candidate_label(rank, count, g, p.output)
                cls = "ok" if colour == OK_COLOUR else ("bad" if colour == BAD_COLOUR else "")
                size_cls = "badsize" if p.output is not None and g.shape != p.output.shape else ""
                figs.append(
                    _fig(grid_html(g, p.output), f"<span class='{cls}'>{html.escape(text)}</span>", size_cls)
                )
            invalid = sum(c is None for c in cands)
            figs.append(f"<div class='cap'>{len(cands)} candidate(s), {invalid} unparsable</div>")
        parts.append(f"<div>{''.join(figs)}</div>")
    return "\n".join(parts)


def render_html(
    tasks: Mapping[str, Task],
    predictions: Any,
    path: str | os.PathLike,
    max_candidates: int = 4,
    title: str = "arcsub predictions report",
) -> Path:
    """An HTML report of a predictions mapping over `tasks` (with their test outputs when known).

    Shows the tasks of `predictions` (all of `tasks` when predictions is None): summary metrics at the top,
    an index, then per task its train pairs (folded), each test input, truth and the top candidates with
    their counts, wrong cells crossed out. Written atomically; returns the path.
    """
    preds = normalize_predictions(predictions) if predictions is not None else None
    ids = [t for t in tasks if preds is None or t in preds]
    unknown = [t for t in preds if t not in tasks] if preds is not None else []
    scored = preds is not None and bool(ids) and all(tasks[t].has_solutions for t in ids)
    metrics = compute_metrics({t: preds[t] for t in ids}, {t: tasks[t] for t in ids}) if scored else None
    out = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
        f"<style>{_CSS}</style></head><body><h1>{html.escape(title)}</h1>",
    ]
    if metrics is not None:
        out.append(f"<pre>{html.escape(format_metrics_table(metrics))}</pre>")
        out.append(
            f"<p>{metrics['tasks']} task(s), {metrics['test_outputs']} test output(s), "
            f"up to {metrics['n']} candidate(s) per output; vote_1 {metrics['vote_1']:.1%}</p>"
        )
        rows = "".join(
            f"<tr><td style='text-align:left'><a href='#{html.escape(t)}'>{html.escape(t)}</a></td>"
            + "".join(f"<td>{metrics['per_task'][t][k]:.0%}</td>" for k in ("pass_n", "vote_2", "accuracy"))
            + "</tr>"
            for t in ids
        )
        out.append(
            f"<table class='m'><tr><th>task</th><th>pass_n</th><th>vote_2</th><th>accuracy</th></tr>{rows}</table>"
        )
    else:
        out.append(f"<p>{len(ids)} task(s)</p>")
    if unknown:
        out.append(f"<p class='bad'>{len(unknown)} predicted task(s) not in the tasks file, not shown</p>")
    for t in ids:
        per_test = _task_predictions(tasks[t], preds) if preds is not None else None
        out.append(
            _task_html(tasks[t], per_test, metrics["per_task"][t] if metrics else None, max_candidates)
        )
    out.append("</body></html>\n")
    return write_bytes_atomic(path, "\n".join(out).encode("utf-8"))


# ------------------------------------------------------------------------------------------ curves

CURVE_COLOURS = ("#0074D9", "#FF4136", "#2ECC40", "#FF851B", "#F012BE", "#870C25", "#AAAAAA", "#111111")


def _ticks(lo: float, hi: float, log: bool, n: int = 5) -> list[float]:
    if log:
        return [10.0**e for e in range(int(np.floor(lo)), int(np.ceil(hi)) + 1) if lo <= e <= hi] or [
            10.0**lo
        ]
    return list(np.linspace(lo, hi, n))


def curves_image(
    series: Mapping[str, tuple[Sequence[float], Sequence[float]]],
    x_label: str,
    y_label: str,
    log_y: bool = False,
    size: tuple[int, int] = (720, 420),
    dots: Collection[str] = (),
    colours: Mapping[str, str] | None = None,
) -> Image.Image:
    """Line chart of named (xs, ys) series, e.g. training loss against steps of several runs. Series named in
    `dots` are drawn as points: separate measurements (runs at several lengths), which a line would order.
    `colours` fixes some series' colours (e.g. a fit and its band in its runs' colour); the rest cycle."""
    if not series or not any(len(xs) for xs, _ in series.values()):
        raise ArcDataError("plot: nothing to draw (no points)")
    w, h = size
    left, right, top, bottom = 70, 20, 20, 50
    tr = (lambda v: np.log10(max(v, 1e-12))) if log_y else float
    xs_all = [float(x) for xs, _ in series.values() for x in xs]
    ys_all = [tr(y) for _, ys in series.values() for y in ys]
    x0, x1 = min(xs_all), max(xs_all) or 1.0
    y0, y1 = min(ys_all), max(ys_all)
    x1, y1 = (x1 if x1 > x0 else x0 + 1), (y1 if y1 > y0 else y0 + 1)
    img = Image.new("RGB", size, "white")
    d, font = ImageDraw.Draw(img), _font(12)

    def px(x: float, y: float) -> tuple[float, float]:
        return (
            left + (x - x0) / (x1 - x0) * (w - left - right),
            h - bottom - (y - y0) / (y1 - y0) * (h - top - bottom),
        )

    d.rectangle([left, top, w - right, h - bottom], outline="#444444")
    for x in _ticks(x0, x1, False):
        d.text(
            (px(x, y0)[0] - 12, h - bottom + 4),
            f"{x:.0f}" if x1 - x0 > 20 else f"{x:.3g}",
            fill="#444444",
            font=font,
        )
    for y in _ticks(y0, y1, log_y):
        yy = px(x0, tr(y) if log_y else y)[1]
        d.line([left, yy, w - right, yy], fill="#E5E5E5")
        d.text((4, yy - 6), f"{y:.3g}", fill="#444444", font=font)
    d.text(((w - left) // 2, h - 20), x_label, fill="black", font=font)
    d.text((4, 2), y_label + (" (log)" if log_y else ""), fill="black", font=font)
    for i, (name, (xs, ys)) in enumerate(series.items()):
        colour = (colours or {}).get(name, CURVE_COLOURS[i % len(CURVE_COLOURS)])
        pts = [px(float(x), tr(y)) for x, y in zip(xs, ys, strict=True)]
        if len(pts) > 1 and name not in dots:
            d.line(pts, fill=colour, width=2)
        else:
            r = 4 if name in dots else 2
            for x, y in pts:
                d.ellipse([x - r, y - r, x + r, y + r], fill=colour)
        lx, ly = w - right - 270, top + 8 + 16 * i
        d.line([lx, ly + 7, lx + 18, ly + 7], fill=colour, width=2)
        d.text((lx + 24, ly), name, fill=colour, font=font)
    return img


def read_log_series(path: str | Path, x: str, y: str) -> tuple[list[float], list[float]]:
    """(xs, ys) of two keys of a JSONL training log (arcsub train / task-train `log.jsonl`).

    A resumed run logs again from its checkpoint: a record whose x is not past the previous one cuts the
    series back to before that x, so the curve shows the run that went on, not a line back in time."""
    import json

    xs: list[float] = []
    ys: list[float] = []
    try:
        text = Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ArcDataError(f"{path}: not UTF-8 text (a JSONL log?)") from None
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except (json.JSONDecodeError, RecursionError):
            raise ArcDataError(f"{path}: line {n}: not JSON") from None
        if isinstance(rec, dict) and x in rec and y in rec:
            try:
                px, py = float(rec[x]), float(rec[y])
            except (TypeError, ValueError):
                raise ArcDataError(f"{path}: line {n}: {x} and {y} must be numbers") from None
            while xs and xs[-1] >= px:
                xs.pop(), ys.pop()
            xs.append(px)
            ys.append(py)
    if not xs:
        raise ArcDataError(f"{path}: no record has both {x!r} and {y!r}")
    return xs, ys


def render_curves_png(
    logs: Sequence[str | Path],
    out: str | Path,
    x: str = "step",
    y: str = "loss",
    labels: Sequence[str] | None = None,
    log_y: bool = False,
) -> Path:
    names = list(labels) if labels else [Path(p).parent.name or Path(p).stem for p in logs]
    if len(names) != len(logs):
        raise ArcDataError(f"plot: {len(names)} label(s) for {len(logs)} log(s)")
    series = {name: read_log_series(p, x, y) for name, p in zip(names, logs, strict=True)}
    return save_png(curves_image(series, x, y, log_y), out)
