"""One markdown row per task-model run from the files a run leaves (bench/gpu_stages.sh copies them out): the
training log (`*_log.jsonl`), the `task-predict` run files (`run__*.json`, the evaluation and/or the training
set, told apart by the challenges they scored) and a views x selection table (bench/task_selection.py); other
files are ignored. Optionally plots scores against training seconds (a length study). Usage, from the repository root:

    python bench/runs_table.py docs/experiments/task-ablations-h200/{base,1d,notask}
    python bench/runs_table.py b150=DIR 1000s=LOG,RUN,RUN,SELECTION --plot length.png

An argument is a folder of one run's files, or NAME=FILE,FILE,... (files kept elsewhere).
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from arcsub.core.data import ArcDataError


def run_files(arg: str) -> tuple[str, list[Path]]:
    """(name, files) of one argument: a folder's files, or NAME=FILE,FILE,..."""
    if "=" in arg:
        name, files = arg.split("=", 1)
        return name, [Path(f) for f in files.split(",")]
    folder = Path(arg)
    if not folder.is_dir():
        raise ArcDataError(f"{arg}: not a folder (or NAME=FILE,FILE,...)")
    return folder.name, sorted(folder.iterdir())


def _training_seconds(recs: list[dict]) -> float:
    """Training-loop seconds summed over calls: a resumed run's log starts its clock again."""
    total = last = 0.0
    for r in recs:
        t = float(r.get("elapsed_s", 0.0))
        if t < last:
            total += last
        last = t
    return total + last


def summarize(name: str, files: list[Path]) -> dict:
    """Steps, throughput, training seconds and final loss from the log; score and candidate metrics per set.
    A views x selection table (bench/task_selection.py) beside an evaluation run made with another selection
    gives the likelihood score at the run's views, so rows compare under one selection."""
    row: dict = {"run": name}
    tables = []
    for f in files:
        if f.name.endswith("_log.jsonl"):
            recs = [json.loads(x) for x in f.read_text().splitlines() if x.strip()]
            row.update(
                steps=recs[-1]["step"],
                train_s=_training_seconds(recs),
                loss=recs[-1]["loss"],
                tok_s=statistics.median(r["tokens_per_s"] for r in recs[1:] or recs),
            )
        elif f.suffix == ".json":
            obj = json.loads(f.read_text())
            if "rows" in obj:
                tables.append(obj["rows"])
            elif "challenges" in obj:
                which = "train" if "training" in Path(obj["challenges"]).name else "eval"
                cfg = obj["config"]
                row[which] = {
                    "score": obj["score"],
                    **obj["metrics"],
                    "views": cfg["views"],
                    "sel": cfg["selection"],
                }
    for rows in tables:
        if "eval" in row and (hit := rows.get(f"{row['eval']['views']} views, likelihood")):
            row["eval"].update(score=hit["score"], sel="likelihood")
    return row


def _pct(row: dict, which: str, key: str) -> str:
    return f"{100 * row[which][key]:.2f} %" if which in row else ""


def markdown(rows: list[dict]) -> str:
    lines = [
        "| run | steps | train s | tok/s | final loss | eval score | eval vote_2 | eval pass_n | eval accuracy "
        "| train vote_2 | train score |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        cells = [
            r["run"],
            str(r.get("steps", "")),
            f"{r.get('train_s', 0):.0f}",
            f"{r.get('tok_s', 0) / 1e6:.2f}M",
            str(r.get("loss", "")),
            f"{r['eval']['score']:.4f} ({r['eval']['views']} views, {r['eval']['sel']})",
            _pct(r, "eval", "vote_2"),
            _pct(r, "eval", "pass_n"),
            _pct(r, "eval", "accuracy"),
            _pct(r, "train", "vote_2"),
            f"{r['train']['score']:.4f} ({r['train']['sel']})" if "train" in r else "",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(rows: list[dict], out: Path) -> None:
    """Evaluation score and vote_2 (and training-set vote_2 where measured) against training seconds."""
    from arcsub.core.viz import curves_image, save_png

    rows = sorted((r for r in rows if "eval" in r), key=lambda r: r["train_s"])
    series = {
        "evaluation Kaggle score": ([r["train_s"] for r in rows], [r["eval"]["score"] for r in rows]),
        "evaluation vote_2": ([r["train_s"] for r in rows], [r["eval"]["vote_2"] for r in rows]),
    }
    trained = [r for r in rows if "train" in r]
    if trained:
        series["training-set vote_2"] = (
            [r["train_s"] for r in trained],
            [r["train"]["vote_2"] for r in trained],
        )
    save_png(curves_image(series, "training seconds", "fraction"), out)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="+", help="a run's folder, or NAME=FILE,FILE,...")
    p.add_argument("--plot", type=Path, help="PNG: scores against training seconds")
    args = p.parse_args(argv)
    rows = [summarize(*run_files(a)) for a in args.runs]
    missing = [r["run"] for r in rows if "eval" not in r]
    if missing:
        raise SystemExit(f"runs_table: no evaluation run file for {', '.join(missing)}")
    print(markdown(rows))
    if args.plot:
        plot(rows, args.plot)
        print(f"plot: {args.plot}")


if __name__ == "__main__":
    main()
