"""The ARC Prize competitions on Kaggle (slug, ARC version, hidden tasks, the GPUs their notebooks get), the
file names they use, the pipelines a notebook can run, and the public stand-in tasks Kaggle shows before the
hidden rerun.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from arcsub.core.data import ArcDataError, Task, read_json

TIME_LIMIT_S = 12 * 3600


MAX_MARGIN_S = 45 * 60


CHALLENGES_FILE = "arc-agi_test_challenges.json"


SUBMISSION_FILE = "submission.json"


# ARCSUB_PIPELINE: a name or "module:function"; the pre-0.2 flat module paths still work in old notebooks
PIPELINES = {
    "in-context": "arcsub.lm.pipeline:run_pipeline",
    "task": "arcsub.taskmodel.pipeline:run_pipeline",
}


LEGACY_PIPELINES = {
    "arcsub.pipeline": "arcsub.lm.pipeline",
    "arcsub.taskpipeline": "arcsub.taskmodel.pipeline",
}


DEFAULT_PIPELINE = PIPELINES["in-context"]


# The public stand-in tasks Kaggle shows before the hidden rerun (all public ARC tasks, so they are known).
_PUBLIC_2024 = """
007bbfb7 00d62c1b 017c7c7b 025d127b 045e512c 0520fde7 05269061 05f2a901 06df4c85 08ed6ac7 09629e4f
0962bcdd 0a938d79 0b148d64 0ca9ddb6 0d3d703e 0dfd9992 0e206a2e 10fcaaa3 11852cab 1190e5a7 137eaa0f
150deff5 178fcbfb 1a07d186 1b2d62fb 1b60fb0c 1bfc4729 1c786137 1caeab9d 1cf80156 1e0a9b12 1e32b0e9
1f0c79e5 1f642eb9 1f85a75f 1f876c06 1fad071e 2013d3e2 2204b7a8 22168020 22233c11 2281f1f4 228f6490
22eb0ac0 234bbc79 23581191 239be575 23b5c85d 253bf280 25d487eb 25d8a9c8 25ff71a9 264363fd 272f95fa
27a28665 28bf18c6 28e73c20 29623171 29c11459 29ec7d0e 2bcee788 2bee17df 2c608aff 2dc579da 2dd70a9a
2dee498d 31aa019c 321b1fc6 32597951 3345333e 3428a4f5 3618c87e 3631a71a 363442ee 36d67576 36fdfd69
3906de3d 39a8645d 39e1d7f9 3aa6fb7a 3ac3eb23 3af2c5a8 3bd67248 3bdb4ada 3befdf3e 3c9b0459 3de23699
3e980e27 3eda0437 3f7978a0 40853293 4093f84a 41e4d17e 4258a5f9 4290ef0e 42a50994 4347f46a 444801d8
445eab21
"""


_PUBLIC_2025 = """
0934a4d8 135a2760 136b0064 13e47133 142ca369 16b78196 16de56c4 1818057f 195c6913 1ae2feb7 20270e3b
20a9e565 21897d95 221dfab4 247ef758 269e22fb 271d71e2 28a6681f 291dc1e1 2b83f449 2ba387bc 2c181942
2d0172a1 31f7f899 332f06d7 35ab12c3 36a08778 38007db0 3a25b0d8 3dc255db 3e6067c3 409aa875 446ef5d2
45a5af55 4a21e3da 4c3d4a41 4c416de3 4c7dc4dd 4e34c42c 53fb4810 5545f144 581f7754 58490d8a 58f5dbd5
5961cc34 5dbc8537 62593bfd 64efde09 65b59efc 67e490f4 6e453dd6 6e4f6532 6ffbe589 71e489b6 7491f3cf
7666fa5d 78332cb0 7b0280bc 7b3084d4 7b5033c1 7b80bb43 7c66cb00 7ed72f31 800d221b 80a900e0 8698868d
88bcf3b4 88e364bc 89565ca0 898e7135 8b7bacbf 8b9c3697 8e5c0c38 8f215267 8f3a5a89 9385bd28 97d7923e
981571dc 9aaea919 9bbf930d a251c730 a25697e4 a32d8b75 a395ee82 a47bf94d a6f40cea aa4ec2a5 abc82100
b0039139 b10624e5 b5ca7ac4 b6f77b65 b99e7126 b9e38dc0 bf45cf4b c4d067a0 c7f57c3e cb2d8a2c cbebaa4b
d35bdbdc d59b0160 d8e07eb2 da515329 db0c5428 db695cfb dbff022c dd6b8c4b de809cff dfadab01 e12f9a14
e3721c99 e376de54 e8686506 e87109e9 edb79dae eee78d87 f560132c f931b4a8 faa9f03d fc7cae8d
"""


@dataclass(frozen=True)
class Competition:
    """One ARC Prize code competition on Kaggle and the machine its notebook gets."""

    slug: str
    arc: str  # which ARC-AGI version the hidden tasks are
    hidden_tasks: int
    gpus: int
    gpu: str
    gpu_memory_gb: int  # per GPU
    capability: tuple[int, int]
    public_ids: frozenset[str] = field(default_factory=frozenset, repr=False)


COMPETITIONS: dict[str, Competition] = {
    "arc-prize-2024": Competition(
        "arc-prize-2024", "ARC-AGI-1", 100, 2, "T4", 15, (7, 5), frozenset(_PUBLIC_2024.split())
    ),
    "arc-prize-2025": Competition(
        "arc-prize-2025", "ARC-AGI-2", 240, 4, "L4", 24, (8, 9), frozenset(_PUBLIC_2025.split())
    ),
    # ARC Prize 2026, ARC-AGI-2 track. Its public stand-in ids are not known here: the 2025 set stands in (the
    # public ARC-AGI-2 evaluation tasks); the hidden-task count and the machine are taken as 2025's too.
    "arc-prize-2026": Competition(
        "arc-prize-2026", "ARC-AGI-2", 240, 4, "L4", 24, (8, 9), frozenset(_PUBLIC_2025.split())
    ),
}


def is_public_standin(
    tasks: Mapping[str, Task], challenges: Path, competition: str | None = None
) -> tuple[bool, str]:
    """(True, why) when the challenges hold public tasks standing in for the hidden ones.

    Kaggle's public run shows public tasks (ARC Prize 2024: 100 training tasks) and swaps in the hidden ones
    for scoring. Signs: a solutions file next to the challenges, every id listed in a sibling challenges file
    (training / evaluation), or the ids of a known stand-in set.
    """
    ids = set(tasks)
    sib = challenges.with_name(challenges.name.replace("_challenges", "_solutions"))
    if "_challenges" in challenges.name and sib.is_file():
        return True, f"solutions next to the challenges ({sib.name})"
    for other in sorted(challenges.parent.glob("*_challenges.json")):
        if other == challenges:
            continue
        try:
            obj = read_json(other)
        except ArcDataError:
            continue
        if isinstance(obj, dict) and ids <= set(obj):
            return True, f"every task id is in {other.name}"
    comps = [COMPETITIONS[competition]] if competition in COMPETITIONS else list(COMPETITIONS.values())
    for comp in comps:
        if comp.public_ids and len(ids & comp.public_ids) >= 0.9 * len(ids):
            return True, f"the task ids are {comp.slug}'s public stand-in set"
    return False, "hidden tasks"


def find_solutions(task_ids: Sequence[str], challenges: Path) -> dict[str, Any] | None:
    """Solutions for `task_ids` from the *_solutions.json files next to the challenges, or None."""
    found: dict[str, Any] = {}
    for f in sorted(challenges.parent.glob("*_solutions.json")):
        try:
            obj = read_json(f)
        except ArcDataError:
            continue
        if isinstance(obj, dict):
            found.update({t: obj[t] for t in task_ids if t in obj and t not in found})
    return found if len(found) == len(task_ids) else None
