"""Shared pieces of the Kaggle tools: one-line errors, Kaggle identities and dataset metadata, idempotent files.

Every tool's `main(argv) -> int` runs through `run_tool`, which turns bad input (ToolError, ArcDataError,
OSError, argument errors) into one line on stderr and exit code 2 - never a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # the tools import arcsub from this checkout when run as scripts
    sys.path.insert(0, str(REPO))

from arcsub.core.data import ArcDataError, write_bytes_atomic  # noqa: E402

OUT = REPO / "out" / "kaggle"  # /out/ is git-ignored
DATASET_METADATA = "dataset-metadata.json"
KERNEL_METADATA = "kernel-metadata.json"
DEFAULT_LICENSE = "other"  # wheels bundle third-party licences; pick your own with --license
PLACEHOLDER_USER = "your-kaggle-username"

_USER_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{1,49}$")
_SLUG_RE = re.compile(r"^[a-z0-9][a-z0-9-]{4,48}[a-z0-9]$")


class ToolError(Exception):
    """Bad input to a tool: printed as one line, exit code 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise ToolError(message)


def parser(prog: str, description: str) -> argparse.ArgumentParser:
    """An ArgumentParser whose errors are ToolErrors (one line, exit 2) instead of usage dumps."""
    return _Parser(prog=prog, description=description, formatter_class=argparse.RawDescriptionHelpFormatter)


def add_dataset_arguments(p: argparse.ArgumentParser, name: str) -> None:
    """--out, --user, --slug, --title, --license of a dataset builder whose dataset is called arcsub-<name>."""
    p.add_argument(
        "--out", type=Path, default=OUT / f"arcsub-{name}", help="dataset folder (default %(default)s)"
    )
    p.add_argument("--user", help="Kaggle user owning the dataset (default: KAGGLE_USERNAME or kaggle.json)")
    p.add_argument("--slug", default=f"arcsub-{name}", help="dataset slug (default %(default)s)")
    p.add_argument("--title", default=f"arcsub {name}", help="dataset title (default %(default)s)")
    p.add_argument(
        "--license", dest="license_name", default="other", help="dataset licence name (default other)"
    )


def run_tool(name: str, fn: Callable[[Sequence[str]], int], argv: Sequence[str] | None = None) -> int:
    """Run a tool's main; bad input is one line on stderr and exit 2, a bug one line and exit 1."""
    try:
        return int(fn(list(sys.argv[1:] if argv is None else argv)) or 0)
    except SystemExit as e:  # --help
        return e.code if isinstance(e.code, int) else 0
    except (ToolError, ArcDataError) as e:
        print(f"{name}: error: {e}", file=sys.stderr)
    except OSError as e:
        where = e.filename if e.filename is not None else type(e).__name__
        print(f"{name}: error: {where}: {e.strerror or e}", file=sys.stderr)
    except KeyboardInterrupt:
        print(f"{name}: interrupted", file=sys.stderr)
        return 130
    except Exception as e:
        if os.environ.get("ARCSUB_DEBUG"):
            raise
        msg = " ".join(str(e).split())
        print(
            f"{name}: internal error: {type(e).__name__}: {msg} (ARCSUB_DEBUG=1 shows the traceback)",
            file=sys.stderr,
        )
        return 1
    return 2


# ------------------------------------------------------------------------------------------ identities


def kaggle_config_file(env: dict[str, str] | None = None) -> Path:
    env = dict(os.environ) if env is None else env
    base = env.get("KAGGLE_CONFIG_DIR") or str(Path(env.get("HOME", str(Path.home()))) / ".kaggle")
    return Path(base) / "kaggle.json"


def kaggle_credentials(env: dict[str, str] | None = None) -> tuple[str | None, str] | None:
    """(username or None, secret) the kaggle CLI would authenticate with, else None.

    KAGGLE_USERNAME + KAGGLE_KEY, or kaggle.json (in KAGGLE_CONFIG_DIR or ~/.kaggle), or an API token
    (KAGGLE_API_TOKEN, ~/.kaggle/access_token) - a token does not name its user (KAGGLE_USERNAME or --user).
    """
    env = dict(os.environ) if env is None else env
    if env.get("KAGGLE_USERNAME") and env.get("KAGGLE_KEY"):
        return env["KAGGLE_USERNAME"], env["KAGGLE_KEY"]
    f = kaggle_config_file(env)
    if f.is_file():
        try:
            obj = json.loads(f.read_text())
        except (OSError, ValueError):
            raise ToolError(f'{f}: not valid JSON (expected {{"username": ..., "key": ...}})') from None
        if isinstance(obj, dict) and obj.get("username") and obj.get("key"):
            return str(obj["username"]), str(obj["key"])
        raise ToolError(f'{f}: needs both "username" and "key"')
    token = env.get("KAGGLE_API_TOKEN")
    token_file = f.parent / "access_token"
    if not token and token_file.is_file():
        token = token_file.read_text().strip()
    if token:
        return env.get("KAGGLE_USERNAME") or None, token
    return None


def kaggle_user(explicit: str | None = None, env: dict[str, str] | None = None) -> str:
    """The Kaggle user owning the datasets: --user, KAGGLE_USERNAME, kaggle.json, else a placeholder."""
    env = dict(os.environ) if env is None else env
    user = explicit or env.get("KAGGLE_USERNAME")
    if not user:
        creds = kaggle_credentials(env)
        user = (creds[0] if creds else None) or PLACEHOLDER_USER
    check_user(user)
    return user


def check_user(user: str) -> str:
    if not _USER_RE.match(user):
        raise ToolError(f"Kaggle user {user!r}: letters, digits, '-' and '_' only, 2-50 characters")
    return user


def check_slug(slug: str, what: str = "dataset") -> str:
    """Kaggle's slug rules: 6-50 characters, lower-case letters, digits and '-'."""
    if not _SLUG_RE.match(slug):
        raise ToolError(
            f"{what} slug {slug!r}: 6-50 characters of lower-case letters, digits and '-' (not at the ends)"
        )
    return slug


def dataset_metadata(
    user: str,
    slug: str,
    title: str,
    license_name: str = DEFAULT_LICENSE,
    subtitle: str | None = None,
    description: str | None = None,
) -> dict[str, Any]:
    """dataset-metadata.json in the kaggle CLI's format, checked as `kaggle datasets create` checks it."""
    check_user(user)
    check_slug(slug)
    if not 6 <= len(title) <= 50:
        raise ToolError(f"dataset title {title!r}: 6-50 characters")
    if subtitle is not None and not 20 <= len(subtitle) <= 80:
        raise ToolError(f"dataset subtitle {subtitle!r}: 20-80 characters")
    if not license_name:
        raise ToolError("dataset licence: give one (e.g. other, CC0-1.0)")
    meta: dict[str, Any] = {"title": title, "id": f"{user}/{slug}", "licenses": [{"name": license_name}]}
    if subtitle:
        meta["subtitle"] = subtitle
    if description:
        meta["description"] = description
    return meta


def check_dataset_metadata(folder: Path) -> dict[str, Any]:
    """Read and check a folder's dataset-metadata.json (id, title, exactly one licence)."""
    f = folder / DATASET_METADATA
    if not f.is_file():
        raise ToolError(f"{f}: missing")
    try:
        meta = json.loads(f.read_text())
    except ValueError as e:
        raise ToolError(f"{f}: malformed JSON ({e})") from None
    ident = meta.get("id", "") if isinstance(meta, dict) else ""
    if "/" not in ident:
        raise ToolError(f'{f}: id must be "<user>/<slug>"')
    user, slug = ident.split("/", 1)
    lic = meta.get("licenses")
    if not isinstance(lic, list) or len(lic) != 1 or not isinstance(lic[0], dict) or not lic[0].get("name"):
        raise ToolError(f'{f}: needs exactly one licence ({{"name": ...}})')
    dataset_metadata(user, slug, str(meta.get("title", "")), lic[0]["name"], meta.get("subtitle"))
    return meta


# ------------------------------------------------------------------------------------------- files


def write_json_if_changed(path: Path, obj: Any) -> bool:
    """Write pretty JSON atomically unless the file already holds exactly it; True when written."""
    data = (json.dumps(obj, indent=2, sort_keys=False) + "\n").encode()
    if path.is_file() and path.read_bytes() == data:
        return False
    write_bytes_atomic(path, data)
    return True


def human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"


def rel(path: Path) -> str:
    """A path relative to the repo when inside it (shorter messages)."""
    try:
        return str(Path(path).resolve().relative_to(REPO))
    except ValueError:
        return str(path)


def tree_files(root: Path) -> list[Path]:
    return sorted(
        f
        for f in root.rglob("*")
        if f.is_file() and "__pycache__" not in f.parts and not f.name.startswith(".")
    )


def copy_if_changed(src: Path, dest: Path, digest: str) -> bool:
    """Copy unless `dest` already has this content; True when copied."""
    from arcsub.kaggle.datasets import sha256_file

    if dest.is_file() and dest.stat().st_size == src.stat().st_size and sha256_file(dest) == digest:
        return False
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.tmp")
    shutil.copyfile(src, tmp)
    tmp.replace(dest)
    return True


def sync_files(
    plan: dict[str, Path], out: Path, keep: set[str]
) -> tuple[dict[str, dict[str, Any]], list[str], list[str]]:
    """Make `out` hold exactly `plan` ({name in out: source file}) plus the `keep` names: copy what changed,
    remove what is no longer planned. Returns (files {name: size, sha256}, copied names, removed names), so an
    unchanged source gives an unchanged folder (and the kaggle CLI uploads nothing new)."""
    from arcsub.kaggle.datasets import sha256_file

    out.mkdir(parents=True, exist_ok=True)
    files: dict[str, dict[str, Any]] = {}
    copied: list[str] = []
    for name, src in plan.items():
        digest = sha256_file(src)
        if copy_if_changed(src, out / name, digest):
            copied.append(name)
        files[name] = {"size": src.stat().st_size, "sha256": digest}
    removed = []
    for f in tree_files(out):
        name = f.relative_to(out).as_posix()
        if name not in files and name not in keep:
            f.unlink()
            removed.append(name)
    for d in sorted((p for p in out.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
        if not any(d.iterdir()):
            d.rmdir()
    return files, copied, removed


def write_manifest(out: Path, manifest: dict[str, Any], meta: dict[str, Any]) -> bool:
    """Write a dataset's manifest.json and dataset-metadata.json, then check the folder as the kaggle CLI and the
    notebook will read it (metadata valid, every listed file there with its size and sha256). True if changed."""
    from arcsub.kaggle.datasets import MODEL_MANIFEST, verify_dataset_files

    changed = write_json_if_changed(out / MODEL_MANIFEST, manifest)
    changed |= write_json_if_changed(out / DATASET_METADATA, meta)
    check_dataset_metadata(out)
    verify_dataset_files(out, manifest, full=True)
    return changed


def check_out_folder(out: Path, source: Path, what: str) -> None:
    """A dataset builder's --out: not the `source` folder or inside it (syncing would delete from it), and a
    folder if it exists."""
    if out.resolve() == source.resolve() or source.resolve() in out.resolve().parents:
        raise ToolError(f"--out {out}: must not be the {what} or inside it")
    if out.exists() and not out.is_dir():
        raise ToolError(f"{out}: exists and is not a folder")


def publish_dataset(
    plan: dict[str, Path], out: Path, manifest: dict[str, Any], meta: dict[str, Any]
) -> dict[str, Any]:
    """The end of every file dataset builder: `out` synced to `plan`, then `manifest` (with each file's size and
    sha256 added as "files") and the metadata written and checked. Returns out, files, copied, removed, changed
    and the manifest."""
    from arcsub.kaggle.datasets import MODEL_MANIFEST

    files, copied, removed = sync_files(plan, out, {MODEL_MANIFEST, DATASET_METADATA})
    manifest = {**manifest, "files": dict(sorted(files.items()))}
    changed = write_manifest(out, manifest, meta)
    return {
        "out": out,
        "files": files,
        "copied": copied,
        "removed": removed,
        "changed": bool(copied or removed or changed),
        "manifest": manifest,
    }


def describe_published(res: dict[str, Any]) -> tuple[str, str]:
    """("N files, size", what the run changed) of a publish_dataset result, for the builders' one-line report."""
    total = sum(f["size"] for f in res["files"].values())
    state = f"{len(res['copied'])} copied, {len(res['removed'])} removed" if res["changed"] else "unchanged"
    return f"{len(res['files'])} files, {human(total)}", state
