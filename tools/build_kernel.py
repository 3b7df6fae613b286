"""Generate the Kaggle submission notebook and its kernel-metadata.json from kernels/arcsub_submission.py.

    python tools/build_kernel.py [--competition arc-prize-2024|2025|2026] [--out kernels/build]
                                 [--user U] [--slug S] [--wheels-dataset U/arcsub-wheels]
                                 [--model-dataset U/arcsub-model] [--extras vllm]
    python tools/build_kernel.py --all   # every competition x pipeline into kernels/generated/ (committed)

The source is a plain Python file with `# %%` cells (`# %% [markdown]` for text); {{name}} placeholders are
filled in (competition, wheels_dataset, model_dataset, extras). The output folder is what
`kaggle kernels push -p DIR` uploads: arcsub-submission.ipynb and kernel-metadata.json (GPU on, internet
off, the competition and both datasets attached). Two variants:

- arc-prize-2024: ARC-AGI-1, 2x T4 (compute capability 7.5: fp16, torch engine);
- arc-prize-2025, arc-prize-2026: ARC-AGI-2, 4x L4 (8.9: bf16, vllm when the wheels include it: --extras vllm).

With --pipeline task on an ARC-AGI-2 competition the notebook carries configs/task-pipeline-arc2.yaml (the
measured recipe) as key=value settings in ARCSUB_RECIPE, which the notebook applies before ARCSUB_OVERRIDES
when no config file is given. The task pipeline's kernel is arcsub-submission-<year>-task, beside the
in-context one. --all writes the committed notebooks (kernels/generated/<competition>-<pipeline>/) under
the placeholder user, so they do not depend on who builds them; tests/test_tools.py fails when they are stale.

The output is deterministic (fixed cell ids, sorted keys), so an unchanged source gives unchanged files.
"""

from __future__ import annotations

import json
import re
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from kaggle_common import (
    KERNEL_METADATA,
    PLACEHOLDER_USER,
    REPO,
    ToolError,
    check_slug,
    check_user,
    kaggle_user,
    parser,
    rel,
    run_tool,
    write_json_if_changed,
)

from arcsub.kaggle.competitions import COMPETITIONS, PIPELINES

PROG = "build_kernel"
SOURCE = REPO / "kernels" / "arcsub_submission.py"
GENERATED = REPO / "kernels" / "generated"
NOTEBOOK = "arcsub-submission.ipynb"
# Kaggle's accelerator names (kaggle kernels push --accelerator); None leaves the default GPU
MACHINE_SHAPES: dict[str, str | None] = {"arc-prize-2024": "NvidiaTeslaT4"}
# the measured settings a (pipeline, ARC version) notebook carries (ARCSUB_RECIPE)
RECIPES: dict[tuple[str, str], Path] = {("task", "ARC-AGI-2"): REPO / "configs" / "task-pipeline-arc2.yaml"}
_PLACEHOLDER = re.compile(r"\{\{\s*([a-z_]+)\s*\}\}")


def split_cells(text: str) -> list[tuple[str, str]]:
    """[(cell type, source)] of a `# %%` percent-format script (text before the first marker is dropped)."""
    cells: list[tuple[str, list[str]]] = []
    for line in text.splitlines():
        m = re.match(r"^# %%(.*)$", line)
        if m:
            kind = "markdown" if "[markdown]" in m.group(1) else "code"
            cells.append((kind, []))
        elif cells:
            cells[-1][1].append(line)
    out = []
    for kind, lines in cells:
        if kind == "markdown":
            lines = [ln[2:] if ln.startswith("# ") else ln.lstrip("#") for ln in lines]
        src = "\n".join(lines).strip("\n")
        if src.strip():
            out.append((kind, src))
    if not out:
        raise ToolError("notebook source has no '# %%' cells")
    return out


def fill(text: str, values: dict[str, str]) -> str:
    unknown = sorted({m.group(1) for m in _PLACEHOLDER.finditer(text)} - set(values))
    if unknown:
        raise ToolError(
            f"notebook source: unknown placeholder {{{{{unknown[0]}}}}} (known: {', '.join(values)})"
        )
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], text)


def notebook(cells: list[tuple[str, str]]) -> dict[str, Any]:
    """An nbformat 4.5 notebook with fixed cell ids (deterministic output)."""
    nb_cells = []
    for i, (kind, src) in enumerate(cells):
        lines = src.splitlines(keepends=True)
        cell: dict[str, Any] = {"cell_type": kind, "id": f"cell-{i}", "metadata": {}, "source": lines}
        if kind == "code":
            cell.update(execution_count=None, outputs=[])
        nb_cells.append(cell)
    return {
        "cells": nb_cells,
        "metadata": {
            "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
            "language_info": {"name": "python"},
        },
        "nbformat": 4,
        "nbformat_minor": 5,
    }


def validate_notebook(nb: dict[str, Any]) -> None:
    try:
        import nbformat
    except ImportError:  # nbformat is in the [kaggle] extra; the notebook is plain JSON anyway
        return
    try:
        nbformat.validate(nbformat.from_dict(nb))
    except nbformat.ValidationError as e:
        raise ToolError(f"generated notebook is not valid nbformat: {str(e).splitlines()[0]}") from None


def flat_settings(tree: dict[str, Any], prefix: str = "") -> list[str]:
    """A nested config mapping as key=value overrides (values as JSON, which the YAML parser reads back)."""
    out = []
    for key, value in tree.items():
        if isinstance(value, dict):
            out += flat_settings(value, f"{prefix}{key}.")
        else:
            out.append(f"{prefix}{key}={json.dumps(value)}")
    return out


def recipe(competition: str, pipeline: str) -> str:
    """The recipe's settings as one shell-quoted string ("" when this competition x pipeline has none)."""
    path = RECIPES.get((pipeline, COMPETITIONS[competition].arc))
    if path is None:
        return ""
    import yaml

    return shlex.join(flat_settings(yaml.safe_load(path.read_text()) or {}))


def kernel_metadata(
    user: str, slug: str, title: str, competition: str, datasets: Sequence[str], machine_shape: str | None
) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "id": f"{user}/{slug}",
        "title": title,
        "code_file": NOTEBOOK,
        "language": "python",
        "kernel_type": "notebook",
        "is_private": True,
        "enable_gpu": True,
        "enable_tpu": False,
        "enable_internet": False,
        "dataset_sources": list(datasets),
        "competition_sources": [competition],
        "kernel_sources": [],
        "model_sources": [],
    }
    if machine_shape:
        meta["machine_shape"] = machine_shape
    return meta


# the notebook's pipeline (ARCSUB_PIPELINE): the in-context model with per-task TTFT, or a task-embedding model
# trained at run time on the hidden tasks' demonstrations (docs/task-model.md)


def build(
    out: Path,
    *,
    competition: str,
    user: str,
    slug: str | None = None,
    title: str | None = None,
    wheels_dataset: str | None = None,
    model_dataset: str | None = None,
    data_dataset: str | None = None,
    extras: str = "",
    source: Path = SOURCE,
    machine_shape: str | None = "default",
    pipeline: str = "in-context",
    overrides: str = "",
) -> dict[str, Any]:
    if competition not in COMPETITIONS:
        raise ToolError(f"--competition {competition!r}: known {', '.join(COMPETITIONS)}")
    year = competition.rsplit("-", 1)[-1]
    tail = "-task" if pipeline == "task" else ""
    slug = check_slug(slug or f"arcsub-submission-{year}{tail}", "kernel")
    title = title or f"arcsub submission {year}{tail.replace('-', ' ')}"
    if re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-") != slug:
        raise ToolError(
            f"kernel title {title!r} does not give the slug {slug!r} (Kaggle derives one from the other)"
        )
    datasets = [wheels_dataset or f"{user}/arcsub-wheels", model_dataset or f"{user}/arcsub-model"]
    if pipeline == "task":  # its training data (RE-ARC): tools/build_data_dataset.py
        datasets.append(data_dataset or f"{user}/arcsub-data")
    for d in datasets:
        if d.count("/") != 1:
            raise ToolError(f"dataset {d!r}: expected <user>/<slug>")
        check_user(d.split("/")[0])
        check_slug(d.split("/")[1])
    extras_list = [e.strip() for e in extras.split(",") if e.strip()]
    if any(not re.fullmatch(r"[a-z0-9][a-z0-9_-]*", e) for e in extras_list):
        raise ToolError(f"--extras {extras!r}: comma-separated extra names")
    if not source.is_file():
        raise ToolError(f"{source}: notebook source not found")
    if pipeline not in PIPELINES:
        raise ToolError(f"--pipeline {pipeline!r}: known {', '.join(PIPELINES)}")
    values = {
        "pipeline": PIPELINES[pipeline],
        "overrides": json.dumps(overrides)[1:-1],  # escaped for the "..." string literal it fills
        "recipe": json.dumps(recipe(competition, pipeline))[1:-1],
        "competition": competition,
        "wheels_dataset": datasets[0],
        "model_dataset": datasets[1],
        "extras": f"[{','.join(extras_list)}]" if extras_list else "",
    }
    cells = split_cells(fill(source.read_text(), values))
    for kind, src in cells:
        if kind == "code":
            try:
                compile(src, str(source), "exec")
            except SyntaxError as e:
                raise ToolError(f"{source}: cell does not compile: {e.msg} (line {e.lineno})") from None
    nb = notebook(cells)
    validate_notebook(nb)
    shape = MACHINE_SHAPES.get(competition) if machine_shape == "default" else machine_shape
    meta = kernel_metadata(user, slug, title, competition, datasets, shape)
    out.mkdir(parents=True, exist_ok=True)
    changed = write_json_if_changed(out / NOTEBOOK, nb)
    changed |= write_json_if_changed(out / KERNEL_METADATA, meta)
    return {"out": out, "notebook": out / NOTEBOOK, "metadata": meta, "changed": changed, "cells": len(cells)}


def build_all(out: Path = GENERATED) -> list[dict[str, Any]]:
    """Every competition x pipeline notebook into out/<competition>-<pipeline>/, under the placeholder user
    and with no extras or overrides: what `make kaggle-push` builds for each, bar the user."""
    return [
        build(out / f"{c}-{p}", competition=c, user=PLACEHOLDER_USER, pipeline=p)
        for c in sorted(COMPETITIONS)
        for p in sorted(PIPELINES)
    ]


def main(argv: Sequence[str]) -> int:
    p = parser(PROG, __doc__.split("\n\n")[0])
    p.add_argument(
        "--all",
        action="store_true",
        help=f"every competition x pipeline into {rel(GENERATED)}/<competition>-<pipeline> (the committed "
        "notebooks; the placeholder user; other options ignored)",
    )
    p.add_argument(
        "--competition",
        default="arc-prize-2024",
        choices=sorted(COMPETITIONS),
        help="which competition's notebook (default %(default)s)",
    )
    p.add_argument(
        "--out", type=Path, default=REPO / "kernels" / "build", help="output folder (default %(default)s)"
    )
    p.add_argument("--user", help="Kaggle user owning the kernel (default: KAGGLE_USERNAME or kaggle.json)")
    p.add_argument("--slug", help="kernel slug (default arcsub-submission-<year>)")
    p.add_argument("--title", help="kernel title (default 'arcsub submission <year>'; must give the slug)")
    p.add_argument(
        "--wheels-dataset", help="<user>/<slug> of the wheel dataset (default <user>/arcsub-wheels)"
    )
    p.add_argument("--model-dataset", help="<user>/<slug> of the model dataset (default <user>/arcsub-model)")
    p.add_argument(
        "--data-dataset",
        help="<user>/<slug> of the data dataset, --pipeline task (default <user>/arcsub-data)",
    )
    p.add_argument("--extras", default="", help="arcsub extras the notebook installs (e.g. vllm)")
    p.add_argument(
        "--machine-shape",
        default="default",
        help="Kaggle accelerator (default: NvidiaTeslaT4 for 2024, Kaggle's default GPU for 2025 and 2026)",
    )
    p.add_argument("--source", type=Path, default=SOURCE, help="notebook source (default %(default)s)")
    p.add_argument(
        "--pipeline",
        default="in-context",
        choices=sorted(PIPELINES),
        help="in-context: the model dataset's model + per-task TTFT (default); task: train a task-embedding "
        "model on the hidden tasks' demonstrations in the notebook",
    )
    p.add_argument(
        "--overrides",
        default="",
        help="pipeline config key=value overrides baked into the notebook (ARCSUB_OVERRIDES), space-separated",
    )
    args = p.parse_args(argv)
    if args.all:
        for res in build_all():
            print(f"{rel(res['notebook'])}: " + ("written" if res["changed"] else "unchanged"))
        return 0
    shape = None if args.machine_shape in ("", "none") else args.machine_shape
    res = build(
        args.out,
        competition=args.competition,
        user=kaggle_user(args.user),
        slug=args.slug,
        title=args.title,
        wheels_dataset=args.wheels_dataset,
        model_dataset=args.model_dataset,
        data_dataset=args.data_dataset,
        extras=args.extras,
        source=args.source,
        machine_shape=shape,
        pipeline=args.pipeline,
        overrides=args.overrides,
    )
    m = res["metadata"]
    print(
        f"{rel(res['notebook'])}: {res['cells']} cells, kernel {m['id']} for {args.competition} "
        f"(GPU on, internet off, datasets {', '.join(m['dataset_sources'])}); "
        + ("written" if res["changed"] else "unchanged")
    )
    return 0


if __name__ == "__main__":
    sys.exit(run_tool(PROG, main))
