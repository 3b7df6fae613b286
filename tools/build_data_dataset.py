"""Pack training data into the Kaggle dataset the task-model notebook trains on (RE-ARC by default).

    python tools/build_data_dataset.py [DATA_DIR] [--folders re-arc,arc-agi-1] [--out out/kaggle/arcsub-data]
                                       [--user U] [--slug arcsub-data]

Why: the task-model pipeline (`PIPELINE=task`) trains on the hidden tasks' demonstrations plus solved tasks.
The competition folder brings its own training and evaluation sets (the pipeline's `beside_data`), but not
RE-ARC's generated pairs, which the measured recipe also trains on (configs/task-transductive.yaml). This
dataset carries them: the notebook finds it by its manifest and points `ARCSUB_DATA` at it, so the config's
`data:re-arc` resolves there, unchanged.

DATA_DIR (default: where `data:` paths resolve, $ARCSUB_DATA or ../shared/data) holds the folders; the dataset
gets each chosen folder as it is, the data README (sources and licences) when there is one, manifest.json
(kind "arcsub-data": every file's size and sha256) and dataset-metadata.json. Re-running copies only what
changed.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from kaggle_common import (
    ToolError,
    add_dataset_arguments,
    check_out_folder,
    dataset_metadata,
    describe_published,
    kaggle_user,
    parser,
    publish_dataset,
    rel,
    run_tool,
    tree_files,
)

import arcsub
from arcsub.core.data import data_dir
from arcsub.kaggle.datasets import DATA_KIND

PROG = "build_data_dataset"
README = "README.md"


def build(
    source: Path, folders: Sequence[str], out: Path, *, user: str, slug: str, title: str, license_name: str
) -> dict[str, Any]:
    if not folders:
        raise ToolError("--folders: name at least one folder")
    missing = [f for f in folders if not (source / f).is_dir()]
    if missing:
        raise ToolError(f"{source / missing[0]}: data folder not found")
    check_out_folder(out, source, "data folder")
    meta = dataset_metadata(
        user,
        slug,
        title,
        license_name,
        description=f"ARC training data ({', '.join(folders)}) for arcsub's task-model notebook "
        "(built by tools/build_data_dataset.py; sources and licences in README.md).",
    )
    plan = {f.relative_to(source).as_posix(): f for folder in folders for f in tree_files(source / folder)}
    if not plan:
        raise ToolError(f"{source}: the folders {', '.join(folders)} hold no files")
    if (source / README).is_file():
        plan[README] = source / README
    manifest = {"kind": DATA_KIND, "arcsub": arcsub.__version__, "folders": list(folders)}
    return publish_dataset(plan, out, manifest, meta)


def main(argv: Sequence[str]) -> int:
    p = parser(PROG, __doc__.split("\n\n")[0])
    p.add_argument("data_dir", nargs="?", type=Path, help="folder holding the data folders (default: data:)")
    p.add_argument(
        "--folders", default="re-arc", help="comma-separated folders to pack (default %(default)s)"
    )
    add_dataset_arguments(p, "data")
    args = p.parse_args(argv)
    folders = [f.strip() for f in args.folders.split(",") if f.strip()]
    res = build(
        args.data_dir or data_dir(),
        folders,
        args.out,
        user=kaggle_user(args.user),
        slug=args.slug,
        title=args.title,
        license_name=args.license_name,
    )
    counts, state = describe_published(res)
    print(f"{rel(res['out'])}: data {', '.join(folders)} ({counts}); {state}")
    return 0


if __name__ == "__main__":
    sys.exit(run_tool(PROG, main))
