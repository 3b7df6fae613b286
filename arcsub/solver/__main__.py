"""`python -m arcsub.solver CHALLENGES OUT_DIR`: the background solver process the pipelines start."""

from __future__ import annotations

import argparse
import logging

from arcsub.solver.run import SolverSettings, lower_priority, write_answers


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m arcsub.solver", description=__doc__)
    p.add_argument("challenges")
    p.add_argument("out_dir")
    p.add_argument("--seconds-per-task", type=float, default=SolverSettings.seconds_per_task)
    p.add_argument("--depth", type=int, default=SolverSettings.depth)
    a = p.parse_args()
    lower_priority()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    write_answers(a.challenges, a.out_dir, SolverSettings(True, a.seconds_per_task, a.depth))


if __name__ == "__main__":
    main()
