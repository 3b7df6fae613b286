"""The scripts of bench/ as modules, for the tests that run them on kept real files (bench/ is not a package:
its scripts run from the repository root)."""

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

BENCH = Path(__file__).resolve().parents[1] / "bench"


def bench_module(name: str) -> ModuleType:
    """bench/<name>.py, loaded afresh, with bench/ importable as when the script runs (its sys.path[0]), since
    scripts reuse each other's functions (e.g. heldout_sets reads run files with task_overlap's reader)."""
    if str(BENCH) not in sys.path:
        sys.path.append(str(BENCH))
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod  # as an import would: dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod
