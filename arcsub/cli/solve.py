"""`arcsub solve`: the symbolic solver on a challenge file, alone or merged into a model's submission (no torch)."""

from __future__ import annotations

import argparse
import json
import time

from arcsub.cli.app import EXIT_OK, Command, register, warn
from arcsub.core.data import (
    check_output_path,
    load_tasks,
    load_truth,
    read_json,
    write_json_atomic,
)
from arcsub.core.submission import ATTEMPT_KEYS, build_submission, load_submission, write_submission


def _add_solve(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "challenges", help="challenges JSON (Kaggle's form), a task file or a folder of task files"
    )
    p.add_argument("-o", "--out", required=True, help="the submission to write (atomically)")
    p.add_argument(
        "--merge",
        metavar="SUBMISSION",
        help="a model's submission for the same challenges: the solver's answer takes attempt_1 where a "
        "program explains the task, the model's best different guess attempt_2",
    )
    p.add_argument("--solutions", help="score the written submission against these solutions")
    # no defaults here: SolverSettings's apply (the pipelines'), imported only when the command runs
    p.add_argument(
        "--seconds-per-task", type=float, help="cap on one task's search (default: the pipelines')"
    )
    p.add_argument("--depth", type=int, help="most transformations in one program (default: the pipelines')")
    p.add_argument("--json", action="store_true", help="print one JSON object")


def _run_solve(args: argparse.Namespace) -> int:
    from arcsub.core.combine import answers_of, combine
    from arcsub.core.metrics import score_submission
    from arcsub.solver.run import SolverSettings, programs_path, solve_tasks

    out = check_output_path(args.out)
    tasks = load_tasks(args.challenges)  # a 'data:' path too
    model = {}
    if args.merge:
        sub = load_submission(args.merge, tasks)
        model = {t: [[e[k] for k in ATTEMPT_KEYS] for e in entries] for t, entries in sub.items()}
    t0 = time.monotonic()
    given = {"seconds_per_task": args.seconds_per_task, "depth": args.depth}
    found = solve_tasks(tasks, SolverSettings(**{k: v for k, v in given.items() if v is not None}))
    seconds = time.monotonic() - t0
    write_submission(out, build_submission(tasks, combine(answers_of(found), model)))
    write_json_atomic(programs_path(out), {t: item["program"] for t, item in found.items()}, indent=1)
    res = {"tasks": len(tasks), "explained": len(found), "seconds": round(seconds, 1), "submission": str(out)}
    if args.solutions:
        scored = score_submission(read_json(out), load_truth(args.solutions), out)
        for w in scored["warnings"]:
            warn(w)
        res["score"] = scored["score"]
    if args.json:
        print(json.dumps(res))
    else:
        line = f"solver: {res['explained']} of {res['tasks']} tasks explained in {seconds:.0f} s; wrote {out}"
        print(line + (f"; score {res['score']:.4f}" if "score" in res else ""))
    return EXIT_OK


register(
    Command(
        "solve",
        "symbolic solver: short programs that reproduce every demonstration (CPU, no model)",
        _add_solve,
        _run_solve,
        "Search programs of up to DEPTH whole-grid transformations (geometry, crops, scaling, tiling,\n"
        "halves overlaid, objects, gravity, lines, symmetry completion, periodic patterns continued,\n"
        "objects slid to an anchor, the odd object out cropped), then a learned colour map, local rule\n"
        "(a cell from its neighbourhood or what it sees far off), object rule (an object recoloured by\n"
        "its size, shape or holes), stamps around cells or a rule over the fewest cell features; keep\n"
        "those that reproduce every demonstration exactly, and answer each test input with the simplest\n"
        "ones. Writes a Kaggle submission (fallback attempts where nothing explains a task; with --merge\n"
        "the model's attempts) and OUT.programs.json (the program found per task).",
    )
)
