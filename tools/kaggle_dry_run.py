"""Run the generated Kaggle notebook on this machine, offline, against a fake /kaggle tree; check its submission.

    python tools/kaggle_dry_run.py [--competition arc-prize-2024] [--tasks 2] [--time-limit 900]
                                   [--model DIR] [--out out/kaggle/dry-run] [--network off|on]
                                   [--skip-install] [--kill-after-baseline [SECONDS]] [--overrides "k=v ..."]
                                   [--pipeline in-context|task] [--config PIPELINE.yaml]
                                   [--set arc-agi-1|arc-agi-2]

It builds, under --out:

- kaggle/input/<competition>/arc-agi_test_challenges.json: a few ARC-AGI-1 (--set arc-agi-2: ARC-AGI-2)
  *evaluation* tasks (the smallest, so a CPU finishes; --tasks 400 takes them all), their solutions kept
  outside the tree (solutions.json) for scoring afterwards; beside it the set's training challenges and
  solutions, as Kaggle's competition folder has them;
- kaggle/input/arcsub-model/: the model dataset (tools/build_model_dataset.py) of the embedded default model
  (or --model; a random tiny model, with a note, when neither exists);
- kaggle/input/arcsub-wheels/: the wheel dataset with arcsub's own wheel only (tools/build_wheels.py
  --no-download); the notebook's install cell pip-installs it offline into a scratch --target, so the run
  imports arcsub from the wheel, not from this checkout;
- kernel/: the notebook (tools/build_kernel.py),

then executes the notebook with nbclient, networking off (`unshare -n`, loopback only, checked by a failing
connection), with ARCSUB_KAGGLE_ROOT pointing at the fake tree and ARCSUB_TIME_LIMIT as the limit, and
checks kaggle/working/submission.json: valid for every task and scored against the solutions.
--kill-after-baseline SIGKILLs the run (notebook executor and kernel) SECONDS after the baseline appears and
checks that the submission left on disk is still valid.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import build_kernel
import build_model_dataset
import build_wheels
from kaggle_common import OUT, ToolError, parser, rel, run_tool

from arcsub.core.data import ArcDataError, dataset_files, load_tasks, read_json, write_json_atomic
from arcsub.kaggle.competitions import CHALLENGES_FILE, COMPETITIONS, SUBMISSION_FILE

PROG = "kaggle_dry_run"
USER = "dry-run"
SUMMARY = "arcsub-kaggle-summary.json"


# ------------------------------------------------------------------------------------------ network


# What the local notebook may see of this shell's environment: the system basics, the GPU and thread settings
# and arcsub's own switches. Everything else (KAGGLE_KEY, HF_TOKEN, cloud credentials) stays here: the
# notebook runs code from a model or data folder, and Kaggle's own kernel has no such secrets either.
ENV_ALLOWED = ("PATH", "PYTHONPATH", "HOME", "USER", "LANG", "TERM", "TMPDIR", "TZ", "LD_LIBRARY_PATH", "VIRTUAL_ENV",
               "CUDA_VISIBLE_DEVICES", "CUDA_HOME", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "XDG_CACHE_HOME",
               "TRITON_CACHE_DIR", "ARCSUB_DATA", "ARCSUB_DEBUG", "ARCSUB_CAPABILITY", "ARCSUB_GPU_MEMORY_GB")  # fmt: skip
ENV_ALLOWED_PREFIXES = ("LC_", "NVIDIA_")


def notebook_env(parent: Mapping[str, str]) -> dict[str, str]:
    """The allow-listed part of `parent` (the caller then adds the ARCSUB_* settings of the fake tree)."""
    return {k: v for k, v in parent.items() if k in ENV_ALLOWED or k.startswith(ENV_ALLOWED_PREFIXES)}


def unshare_works() -> tuple[bool, str]:
    """Whether `unshare -n` can make a network namespace here (root, or user namespaces allowed)."""
    if shutil.which("unshare") is None:
        return False, "unshare not found"
    try:
        proc = subprocess.run(["unshare", "-n", "true"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as e:
        return False, str(e)
    if proc.returncode != 0:
        return False, (proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"])[-1]
    return True, "ok"


def offline_wrapper() -> list[str]:
    """`unshare -n`: a network namespace with only a loopback device, which `execute` brings up (the
    notebook kernel talks to its client over 127.0.0.1)."""
    return ["unshare", "-n"]


def loopback_up() -> str:
    """Bring the loopback device up with an ioctl, as `ip link set lo up` does, without needing the `ip`
    tool (a GPU machine lacked it, and four notebook kernels then never answered their client). Returns a
    note; an error (no CAP_NET_ADMIN, not Linux) is reported, not raised: outside a namespace lo is up."""
    import fcntl
    import struct

    siocgifflags, siocsifflags, iff_up = 0x8913, 0x8914, 0x1
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            req = struct.pack("16sh", b"lo", 0)
            flags = struct.unpack("16sh", fcntl.ioctl(s, siocgifflags, req))[1]
            if not flags & iff_up:
                fcntl.ioctl(s, siocsifflags, struct.pack("16sh", b"lo", flags | iff_up))
                return "loopback brought up"
            return "loopback up"
    except OSError as e:
        return f"loopback unchanged ({e.strerror or type(e).__name__})"


def probe_network(host: str = "pypi.org", port: int = 443, timeout: float = 3.0) -> str:
    """'off (...)' when an outside connection fails, 'ON (...)' when it succeeds."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return f"ON (connected to {host}:{port})"
    except OSError as e:
        return f"off (connect to {host}:{port} failed: {e.strerror or type(e).__name__})"


# ---------------------------------------------------------------------------------------- fake tree


def pick_tasks(challenges: Path, n: int) -> list[str]:
    try:
        from arcsub.core.runs import pick_dry_run_tasks

        return pick_dry_run_tasks(challenges, n)
    except ImportError:
        return sorted(load_tasks(challenges))[:n]


def default_model(out: Path) -> tuple[Path, str]:
    """(model dir, note): the embedded default, else a random tiny model made here."""
    from arcsub.core.modeldir import check_model_dir

    try:
        from arcsub.lm.pipeline import default_model_dir

        model = default_model_dir()
        check_model_dir(model)
        return model, f"embedded default {model.name}"
    except (ImportError, ArcDataError) as e:
        reason = str(e)
    tiny = out / "tiny-model"
    if not (tiny / "config.json").is_file():
        from arcsub.core.modeldir import save_model
        from arcsub.lm.models import build_model

        net, tok = build_model("tiny", max_len=4096)
        save_model(
            net, tok, tiny, {"format": "compact", "preset": "tiny", "note": "random weights (dry run)"}
        )
    return tiny, f"random tiny model (no embedded default: {reason})"


def copy_training_set(arc_set: str, comp_dir: Path) -> None:
    """The set's training challenges and solutions beside the test file, under Kaggle's names, as the
    competition folder ships them (the task pipeline trains on them: beside_data). Never the evaluation
    solutions: here the evaluation tasks are the hidden test."""
    for kind, src in zip(("challenges", "solutions"), dataset_files(arc_set, "training"), strict=True):
        if not src.is_file():
            raise ToolError(f"{src}: {arc_set} training data not found (set ARCSUB_DATA)")
        shutil.copyfile(src, comp_dir / f"arc-agi_training_{kind}.json")


def build_tree(
    out: Path,
    competition: str,
    n_tasks: int,
    model: Path | None,
    install: bool,
    pipeline: str = "in-context",
    arc_set: str = "arc-agi-1",
) -> dict[str, Any]:
    challenges, solutions = dataset_files(arc_set, "evaluation")
    if not challenges.is_file() or not solutions.is_file():
        raise ToolError(f"{challenges}: {arc_set} evaluation data not found (set ARCSUB_DATA)")
    root = out / "kaggle"
    for d in (root / "input", root / "working", out / "site"):
        shutil.rmtree(d, ignore_errors=True)
    ids = pick_tasks(challenges, n_tasks)
    tasks = load_tasks(challenges, solutions)
    comp_dir = root / "input" / competition
    write_json_atomic(comp_dir / CHALLENGES_FILE, {t: tasks[t].to_json() for t in ids})
    write_json_atomic(out / "solutions.json", {t: [p.output.tolist() for p in tasks[t].test] for t in ids})
    copy_training_set(arc_set, comp_dir)
    note = "given"
    if model is None:
        model, note = default_model(out)
    build_model_dataset.build(
        model,
        root / "input" / "arcsub-model",
        user=USER,
        slug="arcsub-model",
        title="arcsub model",
        license_name="other",
    )
    if install:
        build_wheels.build(
            root / "input" / "arcsub-wheels",
            user=USER,
            slug="arcsub-wheels",
            title="arcsub wheels",
            license_name="other",
            target=build_wheels.Target(),
            extras=[],
            pins=[],
            skip=[],
            download=False,
        )
    kernel = build_kernel.build(
        out / "kernel",
        competition=competition,
        user=USER,
        pipeline=pipeline if pipeline in build_kernel.PIPELINES else "in-context",
    )
    (root / "working").mkdir(parents=True, exist_ok=True)
    return {
        "root": root,
        "ids": ids,
        "model": model,
        "model_note": note,
        "notebook": kernel["notebook"],
        "challenges": comp_dir / CHALLENGES_FILE,
        "solutions": out / "solutions.json",
    }


# ------------------------------------------------------------------------------------------- execute


def execute(notebook: Path, working: Path, executed: Path, timeout: float, pid_file: Path | None) -> int:
    """Run every cell with nbclient (inside the offline namespace); saves the executed notebook."""
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, DeadKernelError

    print(f"{PROG}: {loopback_up()}; network {probe_network()}", flush=True)
    nb = nbformat.read(str(notebook), as_version=4)

    def _started(**kwargs: Any) -> None:
        if pid_file is not None:
            prov = getattr(client.km, "provisioner", None)
            pid = getattr(getattr(prov, "process", None), "pid", None)
            if pid:
                pid_file.write_text(str(pid))

    client = NotebookClient(
        nb,
        timeout=int(timeout),
        kernel_name="python3",
        resources={"metadata": {"path": str(working)}},
        on_cell_start=_started,
    )
    rc = 0
    try:
        client.execute()
    except (CellExecutionError, DeadKernelError, TimeoutError, RuntimeError) as e:
        lines = [ln for ln in str(e).splitlines() if ln.strip()]
        print(f"{PROG}: notebook failed: {lines[-1] if lines else type(e).__name__}", file=sys.stderr)
        rc = 1
    finally:
        nbformat.write(nb, str(executed))
    for cell in nb.cells:
        for o in cell.get("outputs", []):
            text = o.get("text") or "".join(o.get("data", {}).get("text/plain", ""))
            if text:
                sys.stdout.write(text if text.endswith("\n") else text + "\n")
    return rc


def check_submission(tree: dict[str, Any]) -> dict[str, Any]:
    from arcsub.core.metrics import score_submission
    from arcsub.core.submission import load_submission

    sub_path = tree["root"] / "working" / SUBMISSION_FILE
    tasks = load_tasks(tree["challenges"])
    load_submission(sub_path, tasks)  # raises ArcDataError when invalid
    res = score_submission(read_json(sub_path), read_json(tree["solutions"]), sub_path)
    return {
        "valid": True,
        "score": res["score"],
        "tasks": res["tasks"],
        "solved": res["solved_outputs"],
        "outputs": res["test_outputs"],
    }


def build_parser():
    p = parser(PROG, __doc__.split("\n\n")[0])
    p.add_argument("--competition", default="arc-prize-2024", choices=sorted(COMPETITIONS))
    p.add_argument(
        "--tasks",
        type=int,
        default=2,
        help="evaluation tasks to run, the smallest first (default %(default)s; more than the set has: all)",
    )
    p.add_argument(
        "--set",
        dest="arc_set",
        choices=["arc-agi-1", "arc-agi-2"],
        default="arc-agi-1",
        help="whose evaluation tasks the fake competition holds (default %(default)s)",
    )
    p.add_argument(
        "--time-limit",
        type=float,
        default=900.0,
        help="seconds the notebook may run, in place of Kaggle's 12 h (default %(default)s)",
    )
    p.add_argument("--model", type=Path, help="model directory (default: the embedded default)")
    p.add_argument("--out", type=Path, default=OUT / "dry-run", help="work folder (default %(default)s)")
    p.add_argument("--network", choices=["off", "on"], default="off", help="off: run inside `unshare -n`")
    p.add_argument(
        "--skip-install", action="store_true", help="skip the pip cell (use this checkout's arcsub)"
    )
    p.add_argument("--overrides", default="", help="pipeline config overrides, space-separated key=value")
    p.add_argument(
        "--pipeline",
        default="in-context",
        help="the notebook's pipeline: in-context, task (tools/build_kernel.py --pipeline), or a module:function "
        "replacing it (tests)",
    )
    p.add_argument("--config", type=Path, help="pipeline config file for the notebook (ARCSUB_CONFIG)")
    p.add_argument(
        "--pythonpath", action="append", default=[], help="folder added to the kernel's PYTHONPATH"
    )
    p.add_argument("--mode", choices=["auto", "full", "selfcheck"], default="auto")
    p.add_argument(
        "--kill-after-baseline",
        type=float,
        nargs="?",
        const=0.0,
        metavar="SECONDS",
        help="SIGKILL the run this long after the baseline submission appears, then check the file",
    )
    p.add_argument("--timeout", type=float, default=1800.0, help="seconds before the run is abandoned")
    p.add_argument("--execute", type=Path, help=argparse_hidden())
    p.add_argument("--working", type=Path, help=argparse_hidden())
    p.add_argument("--pid-file", type=Path, help=argparse_hidden())
    return p


def check_args(args) -> None:
    """Refuse bad arguments and a missing notebook runner before anything is built."""
    if args.tasks < 1:
        raise ToolError("--tasks must be at least 1")
    if args.time_limit <= 0:
        raise ToolError("--time-limit must be positive")
    for mod in ("nbclient", "nbformat", "ipykernel"):
        if __import__("importlib").util.find_spec(mod) is None:
            raise ToolError(f"{mod} is not installed: .venv/bin/pip install 'arcsub[kaggle]'")


def kernel_env(args, tree: dict, out: Path) -> dict[str, str]:
    """The notebook's environment: the allow-listed variables, the fake /kaggle tree and the run's knobs."""
    env = {
        **notebook_env(os.environ),
        "ARCSUB_KAGGLE_ROOT": str(tree["root"]),
        "ARCSUB_TIME_LIMIT": str(args.time_limit),
        "ARCSUB_KAGGLE_STRICT": "1",
        "ARCSUB_T0": str(time.time()),
        "ARCSUB_KAGGLE_MODE": args.mode,
        "PYTHONUNBUFFERED": "1",
    }
    pypath = [str(Path(x).resolve()) for x in args.pythonpath]
    if args.skip_install:
        env["ARCSUB_SKIP_INSTALL"] = "1"
    else:
        site = out / "site"
        site.mkdir(parents=True, exist_ok=True)
        env["ARCSUB_PIP_ARGS"] = f"--target {site} --no-deps --quiet --disable-pip-version-check"
        pypath.insert(0, str(site))
    if pypath:
        env["PYTHONPATH"] = os.pathsep.join([*pypath, env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    if args.pipeline not in build_kernel.PIPELINES:
        env["ARCSUB_PIPELINE"] = args.pipeline
    if args.config:
        env["ARCSUB_CONFIG"] = str(args.config.resolve())
    if args.overrides:
        env["ARCSUB_OVERRIDES"] = args.overrides
    return env


def kernel_command(args, tree: dict, out: Path, pid_file: Path) -> tuple[list[str], str]:
    """The inner command that executes the notebook (inside `unshare -n` when asked and possible), and a
    note saying whether the network was really off."""
    inner = [sys.executable, str(Path(__file__).resolve()), "--execute", str(tree["notebook"])]
    inner += ["--working", str(tree["root"] / "working"), "--out", str(out), "--timeout", str(args.timeout)]
    inner += ["--pid-file", str(pid_file)]
    if args.network != "off":
        return inner, "on (--network on)"
    ok, why = unshare_works()
    if ok:
        return [*offline_wrapper(), *inner], "off (unshare -n)"
    print(f"{PROG}: note: networking NOT disabled: `unshare -n` failed here ({why})", file=sys.stderr)
    return inner, f"ON - could not disable it: unshare -n failed ({why}); ran with the network"


def kill_after_baseline(
    proc, sub_path: Path, pid_file: Path, delay: float, timeout: float, t0: float
) -> float:
    """Wait for the baseline submission, wait `delay` more, SIGKILL the run and its kernel; returns when."""
    while not sub_path.is_file() and proc.poll() is None and time.time() - t0 < timeout:
        time.sleep(0.05)
    if proc.poll() is not None:
        raise ToolError(f"the run ended (exit {proc.returncode}) before the kill; nothing to test")
    if not sub_path.is_file():
        raise ToolError(f"no baseline submission after {timeout:.0f} s")
    time.sleep(delay)
    kernel_pid = int(pid_file.read_text()) if pid_file.is_file() else None
    for pgid in (proc.pid, kernel_pid):
        if pgid:
            try:
                os.killpg(pgid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    killed_at = time.time() - t0
    proc.wait()
    return killed_at


def run_kernel(
    args, inner: list[str], env: dict, working: Path, pid_file: Path
) -> tuple[int, float, float | None]:
    """(exit code, seconds, seconds into the run of the kill or None) of one notebook run."""
    t0 = time.time()
    proc = subprocess.Popen(inner, env=env, start_new_session=True)
    if args.kill_after_baseline is not None:
        sub_path = working / SUBMISSION_FILE
        killed_at = kill_after_baseline(proc, sub_path, pid_file, args.kill_after_baseline, args.timeout, t0)
        return 0, time.time() - t0, killed_at
    try:
        rc = proc.wait(timeout=args.timeout + 60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        raise ToolError(f"the run took longer than {args.timeout:.0f} s: killed") from None
    return rc, time.time() - t0, None


def report_run(out: Path, tree: dict, summary: dict, check: dict, network: str, run: tuple) -> dict:
    """Write report.json and print the one-line verdict of a notebook run."""
    rc, seconds, killed_at = run
    report = {
        "network": network,
        "seconds": round(seconds, 1),
        "notebook_exit": rc,
        "killed_after_s": round(killed_at, 1) if killed_at is not None else None,
        **check,
        "mode": summary.get("mode"),
        "predicted": summary.get("predicted"),
        "error": summary.get("error"),
        "interrupted": summary.get("interrupted", False),
        "stage_seconds": summary.get("stage_seconds"),
        "peak_gpu_gb": summary.get("peak_gpu_gb"),
        "arcsub_from": summary.get("arcsub_path"),
        "model": tree["model_note"],
    }
    write_json_atomic(out / "report.json", report, indent=2)
    what = (
        f"killed {killed_at:.1f} s into the run (after the baseline): submission still valid"
        if killed_at is not None
        else f"notebook {'ran' if rc == 0 else 'FAILED'} in {seconds:.0f} s"
    )
    run_info = (
        f"; mode {summary.get('mode')}; arcsub from {summary.get('arcsub_path')}"
        + (f"; pipeline error: {summary['error']}" if summary.get("error") else "")
        if summary
        else ""
    )
    print(
        f"{PROG}: {what}; network {network}; {check['tasks']} task(s), score {check['score']:.3f} "
        f"({check['solved']}/{check['outputs']} outputs){run_info}; report {rel(out / 'report.json')}"
    )
    return report


def main(argv: Sequence[str]) -> int:
    args = build_parser().parse_args(argv)
    if args.execute:  # inner: inside the namespace
        return execute(args.execute, args.working, args.out / "executed.ipynb", args.timeout, args.pid_file)
    check_args(args)
    out = args.out.resolve()
    tree = build_tree(
        out, args.competition, args.tasks, args.model, not args.skip_install, args.pipeline, args.arc_set
    )
    working = tree["root"] / "working"
    print(
        f"{PROG}: fake tree {rel(tree['root'])}: {len(tree['ids'])} task(s) {', '.join(tree['ids'])}; "
        f"model {tree['model_note']}"
    )
    pid_file = out / "kernel.pid"
    pid_file.unlink(missing_ok=True)
    inner, network = kernel_command(args, tree, out, pid_file)
    run = run_kernel(args, inner, kernel_env(args, tree, out), working, pid_file)
    summary = read_json(working / SUMMARY) if (working / SUMMARY).is_file() else {}
    try:
        check = check_submission(tree)
    except ArcDataError as e:
        print(f"{PROG}: FAILED: submission invalid: {e}", file=sys.stderr)
        return 1
    report_run(out, tree, summary, check, network, run)
    rc, _, killed_at = run
    if killed_at is None and (rc != 0 or summary.get("error") or not summary):
        return 1
    return 0


def argparse_hidden() -> str:
    import argparse

    return argparse.SUPPRESS


if __name__ == "__main__":
    sys.exit(run_tool(PROG, main))
