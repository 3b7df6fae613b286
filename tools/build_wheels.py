"""Build the wheel dataset the offline Kaggle notebook installs arcsub from.

    python tools/build_wheels.py [--out out/kaggle/arcsub-wheels] [--extras vllm] [--pin PKG==VER ...]
                                 [--skip PKG ...] [--python-version 3.11] [--glibc 2.35] [--no-download]

1. arcsub's own wheel, built from this checkout (`pip wheel --no-deps`, in a temporary copy so the repo stays
   clean); replaced only when its contents changed.
2. Unless --no-download: pip resolves arcsub[extras] plus the pins for Kaggle's Python and manylinux x86_64
   (`pip install --dry-run --report`, metadata only), drops the packages Kaggle already has (--skip; by default
   torch, torchvision, torchaudio, triton and nvidia-*: gigabytes, preinstalled), and `pip download --no-deps`
   fetches each remaining wheel that is not already in the folder with the right sha256 (re-running downloads
   nothing new). Wheels no longer in the plan are removed.
3. arcsub-wheels.json (the manifest the notebook finds the dataset by: wheels, sizes, sha256, what was
   skipped, the install command) and dataset-metadata.json (kaggle CLI format) are written, then the folder is
   validated: every wheel's tags fit the target Python and platform, every planned wheel is there.

The notebook then runs ``pip install --no-index --find-links /kaggle/input/<dataset> arcsub[extras]``.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kaggle_common import (
    REPO,
    ToolError,
    add_dataset_arguments,
    check_dataset_metadata,
    dataset_metadata,
    human,
    kaggle_user,
    parser,
    rel,
    run_tool,
    write_json_if_changed,
)

from arcsub.kaggle.datasets import WHEELS_KIND, WHEELS_MANIFEST

try:
    from packaging.utils import InvalidWheelFilename, canonicalize_name, parse_wheel_filename
except ImportError:  # pragma: no cover - pip vendors packaging
    from pip._vendor.packaging.utils import InvalidWheelFilename, canonicalize_name, parse_wheel_filename

PROG = "build_wheels"
DEFAULT_SKIP = ("torch", "torchvision", "torchaudio", "triton", "nvidia-*", "cuda-*")
SOURCE_FILES = ("pyproject.toml", "README.md", "LICENSE", "setup.cfg", "setup.py", "MANIFEST.in")


@dataclass
class Target:
    """The interpreter and platform the wheels are for (Kaggle: CPython 3.11, glibc 2.35, x86_64)."""

    python: str = "3.11"
    glibc: str = "2.35"
    arch: str = "x86_64"

    def __post_init__(self) -> None:
        if not re.fullmatch(r"3\.\d{1,2}", self.python):
            raise ToolError(f"--python-version {self.python!r}: expected 3.X, e.g. 3.11")
        if not re.fullmatch(r"2\.\d{1,2}", self.glibc) or int(self.glibc.split(".")[1]) < 17:
            raise ToolError(f"--glibc {self.glibc!r}: expected 2.X with X >= 17, e.g. 2.35")

    @property
    def cp(self) -> str:
        return "cp" + self.python.replace(".", "")

    @property
    def platforms(self) -> list[str]:
        """Every manylinux tag the target runs (pip does not widen manylinux_2_X tags by itself)."""
        top = int(self.glibc.split(".")[1])
        tags = [f"manylinux_2_{m}_{self.arch}" for m in range(top, 16, -1)]
        return tags + [
            f"manylinux2014_{self.arch}",
            f"manylinux2010_{self.arch}",
            f"manylinux1_{self.arch}",
            f"linux_{self.arch}",
        ]

    def pip_flags(self) -> list[str]:
        flags = [
            "--only-binary=:all:",
            "--python-version",
            self.python,
            "--implementation",
            "cp",
            "--abi",
            self.cp,
            "--abi",
            "abi3",
            "--abi",
            "none",
        ]
        for p in self.platforms:
            flags += ["--platform", p]
        return flags

    def fits(self, filename: str) -> bool:
        """Whether a wheel file's tags install on the target."""
        _, _, _, tags = parse_wheel_filename(filename)
        minor = int(self.python.split(".")[1])
        pythons = {"py3", f"py3{minor}", self.cp} | {f"cp3{m}" for m in range(2, minor + 1)}
        platforms = set(self.platforms) | {"any"}
        for t in tags:
            abi_ok = t.abi in ("none", self.cp) or (t.abi == "abi3" and t.interpreter in pythons)
            if t.interpreter in pythons and abi_ok and t.platform in platforms:
                return True
        return False


@dataclass
class Planned:
    name: str
    version: str
    filename: str
    sha256: str | None = None


@dataclass
class Result:
    out: Path
    own: Path | None = None
    own_changed: bool = False
    downloaded: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    commands: list[list[str]] = field(default_factory=list)


# ---------------------------------------------------------------------------------------- commands


def pip() -> list[str]:
    return [sys.executable, "-m", "pip"]


def own_wheel_command(src: Path, dest: Path, isolation: bool) -> list[str]:
    cmd = [*pip(), "wheel", "--no-deps", "--quiet", "--wheel-dir", str(dest)]
    if not isolation:
        cmd.append("--no-build-isolation")
    return [*cmd, str(src)]


def resolve_command(requirements: Sequence[str], target: Target, report: Path, scratch: Path) -> list[str]:
    """pip's resolver for the target platform, metadata only (PEP 658): the exact list of wheels, no download."""
    return [
        *pip(),
        "install",
        "--dry-run",
        "--ignore-installed",
        "--quiet",
        "--report",
        str(report),
        "--target",
        str(scratch),
        *target.pip_flags(),
        *requirements,
    ]


def download_command(items: Sequence[Planned], target: Target, dest: Path) -> list[str]:
    return [
        *pip(),
        "download",
        "--no-deps",
        "--quiet",
        "--dest",
        str(dest),
        *target.pip_flags(),
        *[f"{p.name}=={p.version}" for p in items],
    ]


def run(cmd: list[str], what: str) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        lines = [ln for ln in (proc.stderr or proc.stdout).splitlines() if ln.strip()]
        err = next((ln for ln in lines if "ERROR" in ln), lines[-1] if lines else f"exit {proc.returncode}")
        raise ToolError(f"{what} failed: {err.strip()}")


# -------------------------------------------------------------------------------------- own wheel


def _zip_signature(path: Path) -> list[tuple[str, int]]:
    with zipfile.ZipFile(path) as z:
        return sorted((i.filename, i.CRC) for i in z.infolist())


def build_own_wheel(out: Path, result: Result, dry_run: bool = False) -> Path | None:
    """arcsub's wheel from a temporary copy of the sources; the existing file is kept when identical."""
    with tempfile.TemporaryDirectory(prefix="arcsub-wheel-") as tmp:
        src, dest = Path(tmp) / "src", Path(tmp) / "dist"
        isolation = False
        try:
            import setuptools  # noqa: F401
        except ImportError:
            isolation = True
        cmd = own_wheel_command(src, dest, isolation)
        result.commands.append(cmd)
        if dry_run:
            return None
        src.mkdir()
        for name in SOURCE_FILES:
            if (REPO / name).is_file():
                shutil.copy2(REPO / name, src / name)
        shutil.copytree(
            REPO / "arcsub", src / "arcsub", ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
        )
        run(cmd, "pip wheel (arcsub)")
        built = sorted(dest.glob("arcsub-*.whl"))
        if len(built) != 1:
            raise ToolError(f"pip wheel made {len(built)} arcsub wheels, expected 1")
        new = built[0]
        final = out / new.name
        for old in out.glob("arcsub-*.whl"):
            if old.name != new.name:
                old.unlink()
                result.removed.append(old.name)
        if final.is_file() and _zip_signature(final) == _zip_signature(new):
            result.own_changed = False
        else:
            shutil.copy2(new, final)
            result.own_changed = True
        result.own = final
        return final


# ----------------------------------------------------------------------------------------- resolving


def requirement_list(own: Path | None, extras: Sequence[str], pins: Sequence[str]) -> list[str]:
    base = str(own) if own is not None else "arcsub"
    return [base + (f"[{','.join(extras)}]" if extras else ""), *pins]


def skipped(name: str, patterns: Sequence[str]) -> bool:
    n = canonicalize_name(name)
    return any(fnmatch.fnmatch(n, canonicalize_name(p) if "*" not in p else p.lower()) for p in patterns)


def plan_from_report(report: dict[str, Any], skip: Sequence[str]) -> tuple[list[Planned], list[str]]:
    """(wheels to have, names skipped) from pip's installation report; arcsub itself is not planned."""
    planned, dropped = [], []
    for item in report.get("install", []):
        meta = item.get("metadata", {})
        name, version = meta.get("name", ""), meta.get("version", "")
        if canonicalize_name(name) == "arcsub":
            continue
        if skipped(name, skip):
            dropped.append(f"{name}=={version}")
            continue
        info = item.get("download_info", {})
        url = info.get("url", "")
        filename = os.path.basename(url.split("#", 1)[0])
        from urllib.parse import unquote

        filename = unquote(filename)
        if not filename.endswith(".whl"):
            raise ToolError(
                f"{name}=={version}: no wheel for the target (only {filename or 'a source build'})"
            )
        digest = (info.get("archive_info", {}).get("hashes", {}) or {}).get("sha256")
        if digest is None:
            h = info.get("archive_info", {}).get("hash", "")
            digest = h.split("=", 1)[1] if h.startswith("sha256=") else None
        planned.append(Planned(name, version, filename, digest))
    return planned, dropped


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def have(out: Path, p: Planned) -> bool:
    f = out / p.filename
    return f.is_file() and (p.sha256 is None or sha256(f) == p.sha256)


# ----------------------------------------------------------------------------------------- manifest


def write_manifest(
    out: Path,
    target: Target,
    extras: Sequence[str],
    pins: Sequence[str],
    skip_patterns: Sequence[str],
    skipped_names: Sequence[str] | None,
) -> dict[str, Any]:
    wheels = {}
    for f in sorted(out.glob("*.whl")):
        name, version, _, _ = parse_wheel_filename(f.name)
        wheels[f.name] = {
            "name": str(name),
            "version": str(version),
            "size": f.stat().st_size,
            "sha256": sha256(f),
        }
    old = {}
    mf = out / WHEELS_MANIFEST
    if mf.is_file():
        try:
            old = json.loads(mf.read_text())
        except ValueError:
            old = {}
    extra = f"[{','.join(extras)}]" if extras else ""
    manifest = {
        "kind": WHEELS_KIND,
        "python": target.python,
        "platforms": target.platforms,
        "extras": list(extras),
        "pins": list(pins),
        "skip": list(skip_patterns),
        "skipped": list(skipped_names) if skipped_names is not None else old.get("skipped", []),
        "install": f"pip install --no-index --find-links /kaggle/input/<this dataset> arcsub{extra}",
        "wheels": wheels,
    }
    write_json_if_changed(mf, manifest)
    return manifest


def validate(out: Path, target: Target, planned: Sequence[Planned] | None) -> dict[str, Any]:
    """The folder as the notebook needs it; raises ToolError naming the first problem."""
    mf = out / WHEELS_MANIFEST
    manifest = json.loads(mf.read_text())
    if manifest.get("kind") != WHEELS_KIND:
        raise ToolError(f"{mf}: not an arcsub wheels manifest")
    check_dataset_metadata(out)
    own = [w for w in manifest["wheels"] if w.startswith("arcsub-")]
    if len(own) != 1:
        raise ToolError(f"{out}: {len(own)} arcsub wheels, expected exactly 1")
    for name, info in manifest["wheels"].items():
        f = out / name
        if not f.is_file() or f.stat().st_size != info["size"]:
            raise ToolError(f"{f}: missing or changed since the manifest was written")
        try:
            ok = target.fits(name)
        except InvalidWheelFilename:
            raise ToolError(f"{f}: not a valid wheel file name") from None
        if not ok:
            raise ToolError(f"{f}: does not install on CPython {target.python} manylinux {target.arch}")
    for p in planned or []:
        if p.filename not in manifest["wheels"]:
            raise ToolError(f"{out}: planned wheel {p.filename} is missing")
    return manifest


# ------------------------------------------------------------------------------------------------ main


def build(
    out: Path,
    *,
    user: str,
    slug: str,
    title: str,
    license_name: str,
    target: Target,
    extras: Sequence[str],
    pins: Sequence[str],
    skip: Sequence[str],
    download: bool,
    dry_run: bool = False,
) -> Result:
    result = Result(out)
    if not dry_run:
        out.mkdir(parents=True, exist_ok=True)
        meta = dataset_metadata(
            user,
            slug,
            title,
            license_name,
            description="Offline wheels of arcsub and its dependencies for ARC Prize "
            "notebooks (built by tools/build_wheels.py).",
        )
        write_json_if_changed(out / "dataset-metadata.json", meta)
    own = build_own_wheel(out, result, dry_run)
    planned: list[Planned] | None = None
    dropped: list[str] | None = None
    if download:
        reqs = requirement_list(own, extras, pins)
        with tempfile.TemporaryDirectory(prefix="arcsub-resolve-") as tmp:
            report = Path(tmp) / "report.json"
            cmd = resolve_command(reqs, target, report, Path(tmp) / "target")
            result.commands.append(cmd)
            if not dry_run:
                run(cmd, "pip resolve (pip install --dry-run --report)")
                planned, dropped = plan_from_report(json.loads(report.read_text()), skip)
        if planned is not None:
            result.skipped = dropped or []
            todo = [p for p in planned if not have(out, p)]
            result.kept = [p.filename for p in planned if p not in todo]
            if todo:
                cmd = download_command(todo, target, out)
                result.commands.append(cmd)
                run(cmd, "pip download")
                result.downloaded = [p.filename for p in todo]
                bad = [p.filename for p in todo if not have(out, p)]
                if bad:
                    raise ToolError(f"{out / bad[0]}: missing or sha256 mismatch after download")
            wanted = {p.filename for p in planned} | ({own.name} if own else set())
            for f in sorted(out.glob("*.whl")):
                if f.name not in wanted:
                    f.unlink()
                    result.removed.append(f.name)
        elif dry_run:
            result.commands.append(
                download_command([Planned("<each resolved package>", "<version>", "")], target, out)
            )
    if dry_run:
        return result
    write_manifest(out, target, extras, pins, skip, dropped)
    validate(out, target, planned)
    return result


def main(argv: Sequence[str]) -> int:
    p = parser(PROG, __doc__.split("\n\n")[0])
    add_dataset_arguments(p, "wheels")
    p.add_argument("--extras", default="", help="arcsub extras to include, comma-separated (e.g. vllm)")
    p.add_argument(
        "--pin",
        action="append",
        default=[],
        metavar="REQ",
        help="extra pinned requirement, e.g. transformers==5.20.2 (repeatable)",
    )
    p.add_argument(
        "--skip",
        action="append",
        default=[],
        metavar="PATTERN",
        help="package (glob) Kaggle already has, not bundled (repeatable; added to the defaults: "
        + ", ".join(DEFAULT_SKIP)
        + ")",
    )
    p.add_argument("--no-default-skips", action="store_true", help="bundle torch and the CUDA wheels too")
    p.add_argument("--python-version", default="3.11", help="Kaggle's Python (default %(default)s)")
    p.add_argument("--glibc", default="2.35", help="Kaggle image's glibc (default %(default)s)")
    p.add_argument("--no-download", action="store_true", help="only arcsub's own wheel (no network)")
    p.add_argument("--dry-run", action="store_true", help="print the commands, build nothing")
    args = p.parse_args(argv)

    target = Target(args.python_version, args.glibc)
    extras = [e.strip() for e in args.extras.split(",") if e.strip()]
    for e in extras:
        if not re.fullmatch(r"[a-z0-9][a-z0-9_-]*", e):
            raise ToolError(f"--extras: bad extra name {e!r}")
    for pin in args.pin:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*\s*(==|>=|<=|~=|!=|<|>)\s*[A-Za-z0-9.*+!_-]+", pin):
            raise ToolError(f"--pin {pin!r}: expected NAME==VERSION (or another comparison)")
    skip = ([] if args.no_default_skips else list(DEFAULT_SKIP)) + args.skip
    if "vllm" in extras and any(skipped("torch", [s]) for s in skip):
        print(
            f"{PROG}: note: vllm pins an exact torch; if Kaggle's preinstalled torch differs, rebuild with "
            "--no-default-skips",
            file=sys.stderr,
        )
    user = kaggle_user(args.user)
    out = args.out
    if out.exists() and not out.is_dir():
        raise ToolError(f"{out}: exists and is not a folder")
    result = build(
        out,
        user=user,
        slug=args.slug,
        title=args.title,
        license_name=args.license_name,
        target=target,
        extras=extras,
        pins=args.pin,
        skip=skip,
        download=not args.no_download,
        dry_run=args.dry_run,
    )
    if args.dry_run:
        for cmd in result.commands:
            print(" ".join(cmd))
        return 0
    total = sum(f.stat().st_size for f in out.glob("*.whl"))
    n = len(list(out.glob("*.whl")))
    own_state = "rebuilt" if result.own_changed else "unchanged"
    print(
        f"{rel(out)}: {n} wheel(s), {human(total)} for CPython {target.python} manylinux x86_64; "
        f"{result.own.name if result.own else 'arcsub'} {own_state}; {len(result.downloaded)} downloaded, "
        f"{len(result.kept)} already there, {len(result.removed)} removed"
        + (f"; skipped (on Kaggle): {', '.join(result.skipped)}" if result.skipped else "")
        + ("" if not args.no_download else " (--no-download: dependencies not bundled)")
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(run_tool(PROG, main))
