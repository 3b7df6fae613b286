"""Publish to Kaggle: build the wheel and model datasets and the notebook, then upload them with the kaggle CLI.

    python tools/kaggle_push.py [--dry-run] [--competition arc-prize-2024] [MODEL options] [--extras vllm]
    make kaggle-push [DRY_RUN=1] [COMPETITION=arc-prize-2025] [MODEL=dir] [EXTRAS=vllm] [PIPELINE=task]

COMPETITION defaults to arc-prize-2026 (ARC-AGI-2) with PIPELINE=task, else to arc-prize-2024.

Steps: check credentials (~/.kaggle/kaggle.json, or KAGGLE_USERNAME and KAGGLE_KEY) and the kaggle package;
build out/kaggle/arcsub-wheels (tools/build_wheels.py), out/kaggle/arcsub-model (tools/build_model_dataset.py),
with --pipeline task out/kaggle/arcsub-data (tools/build_data_dataset.py: RE-ARC), and kernels/build
(tools/build_kernel.py) under the credentials' user; then for each dataset `kaggle datasets status` decides
between `kaggle datasets version -p DIR -m MSG` (it exists) and `kaggle datasets create -p DIR` (new); it waits
until every dataset is ready and runs
`kaggle kernels push -p kernels/build`. --dry-run does everything but the upload and prints the commands.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import build_data_dataset
import build_kernel
import build_model_dataset
import build_wheels
from kaggle_common import (
    OUT,
    PLACEHOLDER_USER,
    REPO,
    ToolError,
    check_dataset_metadata,
    check_user,
    kaggle_credentials,
    parser,
    rel,
    run_tool,
)

import arcsub

PROG = "kaggle_push"
NO_CREDENTIALS = (
    "no Kaggle credentials: save your API token as ~/.kaggle/kaggle.json (chmod 600) or set "
    "KAGGLE_USERNAME and KAGGLE_KEY"
)
NO_CLIENT = (
    "the kaggle package is not installed: .venv/bin/pip install 'arcsub[kaggle]' (or pip install kaggle)"
)


def kaggle_cli() -> list[str]:
    return [sys.executable, "-m", "kaggle"]


def status_command(ref: str) -> list[str]:
    return [*kaggle_cli(), "datasets", "status", ref]


def _dir_mode(folder: Path) -> list[str]:
    """Folders inside a dataset (the model's adapters/) are uploaded zipped; Kaggle unpacks them."""
    return ["--dir-mode", "zip"] if any(p.is_dir() for p in folder.iterdir()) else []


def version_command(folder: Path, message: str) -> list[str]:
    return [*kaggle_cli(), "datasets", "version", "-p", str(folder), "-m", message, *_dir_mode(folder)]


def create_command(folder: Path, public: bool = False) -> list[str]:
    return [
        *kaggle_cli(),
        "datasets",
        "create",
        "-p",
        str(folder),
        *(["--public"] if public else []),
        *_dir_mode(folder),
    ]


def push_command(folder: Path) -> list[str]:
    return [*kaggle_cli(), "kernels", "push", "-p", str(folder)]


def show(cmd: Sequence[str]) -> str:
    """A command as the user would type it (`kaggle ...` rather than `python -m kaggle ...`)."""
    parts = list(cmd)
    if parts[:3] == kaggle_cli():
        parts = ["kaggle", *parts[3:]]
    return " ".join(f"'{p}'" if (" " in p or not p) else p for p in parts)


def call(cmd: Sequence[str], what: str, capture: bool = False) -> subprocess.CompletedProcess:
    print(f"$ {show(cmd)}", flush=True)
    proc = subprocess.run(list(cmd), capture_output=capture, text=True)
    return proc


def dataset_exists(ref: str) -> bool:
    proc = subprocess.run(status_command(ref), capture_output=True, text=True)
    return proc.returncode == 0


def wait_ready(refs: Sequence[str], seconds: float, interval: float = 15.0) -> None:
    """Poll `kaggle datasets status` until every dataset is ready (a new version takes a while to process)."""
    deadline = time.time() + seconds
    pending = list(refs)
    while pending:
        proc = subprocess.run(status_command(pending[0]), capture_output=True, text=True)
        if proc.returncode == 0 and "ready" in proc.stdout.lower():
            print(f"{pending[0]}: ready", flush=True)
            pending.pop(0)
            continue
        if time.time() > deadline:
            raise ToolError(
                f"{pending[0]}: not ready after {seconds:.0f} s ({(proc.stdout or proc.stderr).strip()}); "
                "push the kernel later with: kaggle kernels push -p kernels/build"
            )
        time.sleep(interval)


def default_competition(pipeline: str) -> str:
    """The task pipeline's measured recipe is ARC-AGI-2's (ARC Prize 2026); the in-context one stays 2024's
    (as the Makefile's COMPETITION default)."""
    return "arc-prize-2026" if pipeline == "task" else "arc-prize-2024"


def main(argv: Sequence[str]) -> int:
    p = parser(PROG, __doc__.split("\n\n")[0])
    p.add_argument(
        "--dry-run", action="store_true", help="build everything, upload nothing, print the commands"
    )
    p.add_argument(
        "--competition",
        choices=sorted(build_kernel.COMPETITIONS),
        help="default: arc-prize-2026 (ARC-AGI-2) with --pipeline task, else arc-prize-2024",
    )
    p.add_argument("--user", help="Kaggle user (default: from the credentials)")
    p.add_argument("--model", type=Path, help="model directory (default: the embedded default)")
    p.add_argument("--adapters", type=Path, help="trained LoRA folder for the model dataset")
    p.add_argument("--config", type=Path, help="pipeline config (YAML) shipped with the model")
    p.add_argument("--extras", default="", help="arcsub extras bundled and installed (e.g. vllm)")
    p.add_argument(
        "--pipeline",
        default="in-context",
        choices=sorted(build_kernel.PIPELINES),
        help="the notebook's pipeline (tools/build_kernel.py --pipeline)",
    )
    p.add_argument("--overrides", default="", help="pipeline config overrides baked into the notebook")
    p.add_argument(
        "--wheel-arg",
        action="append",
        default=[],
        metavar="ARG",
        help="extra argument for tools/build_wheels.py (repeatable), e.g. --wheel-arg=--no-download",
    )
    p.add_argument("--message", "-m", help="dataset version notes (default: arcsub version and model)")
    p.add_argument("--public", action="store_true", help="create new datasets as public")
    p.add_argument("--out", type=Path, default=OUT, help="where the datasets are built (default %(default)s)")
    p.add_argument("--kernel-out", type=Path, default=REPO / "kernels" / "build")
    p.add_argument("--wait", type=float, default=900.0, help="seconds to wait for the datasets to be ready")
    args = p.parse_args(argv)
    args.competition = args.competition or default_competition(args.pipeline)

    creds = kaggle_credentials()
    have_client = importlib.util.find_spec("kaggle") is not None
    if not args.dry_run:
        if creds is None:
            raise ToolError(NO_CREDENTIALS)
        if not have_client:
            raise ToolError(NO_CLIENT)
    user = args.user or (creds[0] if creds else None)
    if user is None:
        if not args.dry_run:
            raise ToolError("an API token does not name its user: set KAGGLE_USERNAME or pass --user")
        user = PLACEHOLDER_USER
    check_user(user)
    if creds and creds[0] and args.user and args.user != creds[0]:
        print(f"{PROG}: note: uploading as {args.user} with {creds[0]}'s credentials", file=sys.stderr)

    wheels_dir, model_dir = args.out / "arcsub-wheels", args.out / "arcsub-model"
    data_ds = args.out / "arcsub-data"  # the task pipeline's training data (RE-ARC)
    folders = [wheels_dir, model_dir] + ([data_ds] if args.pipeline == "task" else [])
    steps = [
        (
            build_wheels.main,
            ["--out", str(wheels_dir), "--user", user, "--extras", args.extras, *args.wheel_arg],
        ),
        (
            build_model_dataset.main,
            [
                *([str(args.model)] if args.model else []),
                "--out",
                str(model_dir),
                "--user",
                user,
                *(["--adapters", str(args.adapters)] if args.adapters else []),
                *(["--config", str(args.config)] if args.config else []),
            ],
        ),
        *([(build_data_dataset.main, ["--out", str(data_ds), "--user", user])] if data_ds in folders else []),
        (
            build_kernel.main,
            [
                "--competition",
                args.competition,
                "--out",
                str(args.kernel_out),
                "--user",
                user,
                "--extras",
                args.extras,
                "--pipeline",
                args.pipeline,
                "--overrides",
                args.overrides,
            ],
        ),
    ]
    for fn, fn_args in steps:
        rc = fn(fn_args)
        if rc:
            return rc
    refs = [check_dataset_metadata(d)["id"] for d in folders]
    manifest_name = build_model_dataset.read_json_file(model_dir / "manifest.json").get("name", "model")
    message = args.message or f"arcsub {arcsub.__version__}, model {manifest_name}"

    if args.dry_run:
        print(f"{PROG}: dry run - these commands would upload (nothing was sent):")
        for ref, folder in zip(refs, folders, strict=True):
            print(f"  {show(status_command(ref))}   # exists? then")
            print(f"    {show(version_command(folder, message))}")
            print(f"  # else\n    {show(create_command(folder, args.public))}")
        print(f"  # wait until {' and '.join(refs)} are ready, then")
        print(f"  {show(push_command(args.kernel_out))}")
        notes = []
        if creds is None:
            notes.append(NO_CREDENTIALS)
        if not have_client:
            notes.append(NO_CLIENT)
        for n in notes:
            print(f"{PROG}: note: {n}", file=sys.stderr)
        return 0

    for ref, folder in zip(refs, folders, strict=True):
        exists = dataset_exists(ref)
        cmd = version_command(folder, message) if exists else create_command(folder, args.public)
        proc = call(cmd, "upload")
        if proc.returncode != 0:
            raise ToolError(f"{show(cmd)} failed (exit {proc.returncode}); see the kaggle output above")
    wait_ready(refs, args.wait)
    cmd = push_command(args.kernel_out)
    proc = call(cmd, "kernel push")
    if proc.returncode != 0:
        raise ToolError(f"{show(cmd)} failed (exit {proc.returncode}); see the kaggle output above")
    print(f"{PROG}: pushed {', '.join(refs)} and the {args.competition} notebook ({rel(args.kernel_out)})")
    return 0


if __name__ == "__main__":
    sys.exit(run_tool(PROG, main))
