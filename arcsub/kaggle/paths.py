"""Where things are in a Kaggle notebook (/kaggle/input, /kaggle/working, the competition files), each movable
by an environment variable so that a fake /kaggle tree works on any machine.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from arcsub.core.data import ArcDataError
from arcsub.kaggle.competitions import CHALLENGES_FILE, COMPETITIONS, SUBMISSION_FILE

log = logging.getLogger("arcsub.kaggle")

SEARCH_DEPTH = 3  # how deep below the input folder datasets are looked for (Kaggle nests some mounts)


def env_value(name: str, env: Mapping[str, str] | None = None, default: str | None = None) -> str | None:
    value = (os.environ if env is None else env).get(name)
    return value if value not in (None, "") else default


def env_float(name: str, default: float, env: Mapping[str, str] | None = None) -> float:
    raw = env_value(name, env)
    if raw is None:
        return default
    try:
        return float(raw)
    except ValueError:
        raise ArcDataError(f"{name}={raw!r} is not a number") from None


@dataclass(frozen=True)
class KagglePaths:
    root: Path
    input: Path
    working: Path

    @property
    def submission(self) -> Path:
        return self.working / SUBMISSION_FILE


def kaggle_paths(env: Mapping[str, str] | None = None) -> KagglePaths:
    """/kaggle, /kaggle/input and /kaggle/working, each movable by its environment variable."""
    root = Path(env_value("ARCSUB_KAGGLE_ROOT", env, "/kaggle"))
    inp = Path(env_value("ARCSUB_KAGGLE_INPUT", env) or root / "input")
    working = Path(env_value("ARCSUB_KAGGLE_WORKING", env) or root / "working")
    return KagglePaths(root, inp, working)


def on_kaggle(env: Mapping[str, str] | None = None) -> bool:
    """True inside a Kaggle notebook (or a fake /kaggle tree named by ARCSUB_KAGGLE_ROOT)."""
    if env_value("KAGGLE_KERNEL_RUN_TYPE", env) or env_value("ARCSUB_KAGGLE_ROOT", env):
        return True
    return kaggle_paths(env).input.is_dir()


def walk_for(base: Path, name: str, depth: int = SEARCH_DEPTH) -> list[Path]:
    """Files called `name` at most `depth` folders below `base`, sorted (no symlink loops, no errors)."""
    found: list[Path] = []
    level = [base]
    for _ in range(depth + 1):
        nxt: list[Path] = []
        for d in level:
            try:
                entries = sorted(d.iterdir())
            except OSError:
                continue
            for e in entries:
                if e.name == name and e.is_file():
                    found.append(e)
                elif e.is_dir() and not e.is_symlink():
                    nxt.append(e)
        level = nxt
    return found


def find_challenges(
    paths: KagglePaths, competition: str | None = None, env: Mapping[str, str] | None = None
) -> tuple[Path, str | None]:
    """(the hidden challenges file, its competition slug or None); one clear line when it is not there."""
    explicit = env_value("ARCSUB_CHALLENGES", env)
    competition = competition or env_value("ARCSUB_COMPETITION", env)
    if competition is not None and competition not in COMPETITIONS:
        raise ArcDataError(f"unknown competition {competition!r} (known: {', '.join(COMPETITIONS)})")
    if explicit:
        p = Path(explicit)
        if not p.is_file():
            raise ArcDataError(f"{p}: challenges file not found (ARCSUB_CHALLENGES)")
        return p, competition or competition_of(p)
    if competition:
        p = paths.input / competition / CHALLENGES_FILE
        if p.is_file():
            return p, competition
        hits = [h for h in walk_for(paths.input, CHALLENGES_FILE) if h.parent.name == competition]
        if hits:
            return hits[0], competition
        raise ArcDataError(f"{p}: challenges file not found (is the competition {competition} attached?)")
    hits = walk_for(paths.input, CHALLENGES_FILE)
    if not hits:
        raise ArcDataError(f"{paths.input}: no {CHALLENGES_FILE} found (attach the competition data)")
    known = [h for h in hits if h.parent.name in COMPETITIONS]
    best = (known or hits)[-1]  # the newest competition when both are attached
    if len(hits) > 1:
        log.warning("several challenges files, using %s (set ARCSUB_COMPETITION to choose)", best)
    return best, competition_of(best)


def competition_of(path: Path) -> str | None:
    for part in reversed(path.parts):
        if part in COMPETITIONS:
            return part
    return None
