"""Held-out ARC-like sets that are not in ../shared: gather them into one folder, and score a run on each.

Why: every lever here was chosen on the public evaluation sets; a recipe that only fits those shows when it is
scored on ARC-like tasks made by other people (issue 18). The sets are public GitHub repositories, cloned by
hand (the build machine has no internet but package registries; the sources below say where):

    ConceptARC  github.com/victorvikram/ConceptARC   MIT         corpus/<concept>/<task>.json (160 tasks)
    MiniARC     github.com/KSB21ST/MINI-ARC          Apache-2.0  data/MiniARC/<task>.json (149 tasks, 5x5)
    1D-ARC      github.com/khalil-research/1D-ARC    MIT         dataset/<concept>/<task>.json (18 x 50, one row)

Every task ships its test outputs inline, so the folder scores with no solutions file (`arcsub dry-run
--challenges DIR/tasks`, README). 1D-ARC is cut to its first `--per-concept` tasks of each concept (default 5), so
that one set does not outweigh the others in a joint test-time training run; tasks with a grid over 30x30
are left out (ARC's limit). Usage, from the repository root:

    python bench/heldout_sets.py build --conceptarc CLONE --miniarc CLONE --1d-arc CLONE -o DIR
    python bench/heldout_sets.py scores DIR RUN [RUN ...]     # RUN: a scored summary.json or run__*.json

`build` writes DIR/tasks/<set>/<task>.json and DIR/manifest.json (set -> source, licence, task ids); `scores`
prints, per set and run, the Kaggle score over that set's tasks.
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
from pathlib import Path

from task_overlap import task_scores

from arcsub.core.data import ArcDataError, json_stem, parse_task, read_json, write_json_atomic

SOURCES = {
    "ConceptARC": ("github.com/victorvikram/ConceptARC", "MIT", "corpus/*/*.json"),
    "MiniARC": ("github.com/KSB21ST/MINI-ARC", "Apache-2.0", "data/MiniARC/*.json"),
    "1D-ARC": ("github.com/khalil-research/1D-ARC", "MIT", "dataset/*/*.json"),
}


def natural_key(path: Path) -> tuple:
    """Sort 'task_10' after 'task_9' (1D-ARC numbers its tasks 0..49)."""
    return tuple(int(s) if s.isdigit() else s for s in re.split(r"(\d+)", path.stem))


def fits_arc(path: Path) -> bool:
    """Whether the file is an ARC task within ARC's limits (arcsub refuses grids over 30x30)."""
    try:
        parse_task(json_stem(path), read_json(path), path)
    except ArcDataError as e:
        print(f"left out: {e}", file=sys.stderr)
        return False
    return True


def pick(root: Path, pattern: str, per_folder: int | None) -> list[Path]:
    """The set's task files that fit ARC, at most `per_folder` from each folder (in natural order)."""
    files = sorted(root.glob(pattern), key=lambda p: (p.parent.name, natural_key(p)))
    if not files:
        raise ArcDataError(f"{root}: no {pattern}: not a clone of this set")
    kept, per = [], {}
    for f in files:
        if per_folder is not None and per.get(f.parent, 0) >= per_folder:
            continue
        if fits_arc(f):
            kept.append(f)
            per[f.parent] = per.get(f.parent, 0) + 1
    return kept


def build(clones: dict[str, Path], out: Path, per_concept: int) -> dict:
    """Copy each set's picked tasks to out/tasks/<set>/ and write out/manifest.json (beside, not inside, the
    task folder, which must hold only tasks); ids must be unique across sets."""
    if (out / "tasks").exists() or (out / "manifest.json").exists():
        raise ArcDataError(f"{out}: holds an earlier build: name a new folder (a build never mixes into one)")
    manifest, seen = {}, {}
    for name, root in clones.items():
        source, licence, pattern = SOURCES[name]
        files = pick(root, pattern, per_concept if name == "1D-ARC" else None)
        (out / "tasks" / name).mkdir(parents=True, exist_ok=True)
        ids = []
        for f in files:
            tid = json_stem(f)
            if tid in seen:
                raise ArcDataError(f"{f}: task id {tid} also in {seen[tid]}")
            seen[tid] = name
            ids.append(tid)
            shutil.copyfile(f, out / "tasks" / name / f.name)
        manifest[name] = {"source": source, "licence": licence, "tasks": ids}
    write_json_atomic(out / "manifest.json", manifest)
    return manifest


def set_scores(manifest: dict, runs: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
    """{set: {run: score over the set's tasks}}; a run that lacks one of the set's tasks is an error."""
    out = {}
    for name, entry in manifest.items():
        ids = entry["tasks"]
        out[name] = {}
        for run, scores in runs.items():
            missing = [t for t in ids if t not in scores]
            if missing:
                raise ArcDataError(f"{run}: no score for {len(missing)} {name} tasks (e.g. {missing[0]})")
            out[name][run] = sum(scores[t] for t in ids) / len(ids)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="gather the cloned sets into one folder")
    b.add_argument("--conceptarc", type=Path)
    b.add_argument("--miniarc", type=Path)
    b.add_argument("--1d-arc", dest="one_d", type=Path)
    b.add_argument("--per-concept", type=int, default=5)
    b.add_argument("-o", "--out", type=Path, required=True)
    s = sub.add_parser("scores", help="per-set scores of scored runs")
    s.add_argument("folder", type=Path)
    s.add_argument("runs", type=Path, nargs="+")
    s.add_argument("-o", "--output", type=Path)
    a = ap.parse_args(argv)
    try:
        if a.cmd == "build":
            return run_build(a)
        return run_scores(a)
    except (ArcDataError, OSError) as e:
        print(f"heldout_sets: {e}", file=sys.stderr)
        return 2


def run_build(a: argparse.Namespace) -> int:
    clones = {
        n: p for n, p in (("ConceptARC", a.conceptarc), ("MiniARC", a.miniarc), ("1D-ARC", a.one_d)) if p
    }
    if not clones:
        raise ArcDataError("build: name at least one clone (--conceptarc, --miniarc, --1d-arc)")
    manifest = build(clones, a.out, a.per_concept)
    for name, entry in manifest.items():
        print(f"{name}: {len(entry['tasks'])} tasks ({entry['licence']}, {entry['source']})")
    return 0


def run_label(path: Path) -> str:
    """A run's short name: its folder for a competition run's summary.json, else the file's name."""
    return path.parent.name if path.name == "summary.json" else path.name


def run_scores(a: argparse.Namespace) -> int:
    manifest = read_json(a.folder / "manifest.json")
    runs = {str(p): task_scores(p) for p in a.runs}
    table = set_scores(manifest, runs)
    for name, per_run in table.items():
        cells = ", ".join(f"{run_label(Path(r))} {v:.4f}" for r, v in per_run.items())
        print(f"{name} ({len(manifest[name]['tasks'])} tasks): {cells}")
    if a.output:
        write_json_atomic(a.output, table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
