"""The datasets a notebook attaches (model, training data, wheels): found by their manifest below the input
folder, checked against it (sizes and sha256), unpacked where Kaggle zipped a folder.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from arcsub.core.data import ArcDataError, read_json
from arcsub.kaggle.paths import KagglePaths, env_value, walk_for

log = logging.getLogger("arcsub.kaggle")


MODEL_MANIFEST = "manifest.json"


MODEL_KIND = "arcsub-model"


DATA_KIND = "arcsub-data"  # a training-data dataset (tools/build_data_dataset.py): ARCSUB_DATA points at it


WHEELS_MANIFEST = "arcsub-wheels.json"


WHEELS_KIND = "arcsub-wheels"


@dataclass(frozen=True)
class ModelDataset:
    """A model dataset made by tools/build_model_dataset.py, as mounted under the input folder."""

    root: Path
    manifest: dict[str, Any]

    @property
    def model_dir(self) -> Path:
        return self.root / self.manifest.get("model_dir", ".")

    @property
    def adapters_dir(self) -> Path | None:
        sub = self.manifest.get("adapters_dir")
        return self.root / sub if sub else None

    @property
    def pipeline_config(self) -> Path | None:
        sub = self.manifest.get("pipeline_config")
        return self.root / sub if sub else None


def read_manifest(path: Path, kind: str) -> dict[str, Any] | None:
    """The manifest at `path` when it is a JSON object of that kind, else None (never raises)."""
    try:
        obj = read_json(path)
    except ArcDataError:
        return None
    return obj if isinstance(obj, dict) and obj.get("kind") == kind else None


def find_datasets(paths: KagglePaths, kind: str) -> list[tuple[Path, dict[str, Any]]]:
    """(folder, manifest) of every dataset of this kind under the input folder (found by its manifest)."""
    return [
        (m.parent, man)
        for m in walk_for(paths.input, MODEL_MANIFEST)
        if (man := read_manifest(m, kind)) is not None
    ]


def find_model_dataset(paths: KagglePaths, name: str | None = None) -> ModelDataset:
    """The model dataset under the input folder (the one called `name` when several are attached)."""
    found = find_datasets(paths, MODEL_KIND)
    if name:
        found = [f for f in found if f[0].name == name]
    if not found:
        what = f"model dataset {name!r}" if name else "model dataset"
        raise ArcDataError(
            f"{paths.input}: no {what} ({MODEL_MANIFEST} of kind {MODEL_KIND}; made by "
            "tools/build_model_dataset.py) - attach it to the notebook or set ARCSUB_MODEL_DIR"
        )
    if len(found) > 1:
        log.warning("several model datasets, using %s", found[0][0])
    return ModelDataset(*found[0])


def use_data_dataset(paths: KagglePaths, env: Mapping[str, str] | None = None) -> Path | None:
    """Point ARCSUB_DATA (what `data:` paths resolve to) at an attached data dataset, unless it is set; folders
    Kaggle left zipped are unpacked under the working folder first. Returns the folder used, or None."""
    if env_value("ARCSUB_DATA", env):
        return None
    found = find_datasets(paths, DATA_KIND)
    if not found:
        return None
    root, manifest = found[0]
    folders = [str(f) for f in manifest.get("folders", [])]
    zipped = [f for f in folders if not (root / f).is_dir()]
    moved = {f: unpack_folder(root / f, paths.working / "arcsub-data" / f) for f in zipped}
    verify_dataset_files(root, manifest, moved=moved)
    base = root
    if moved:  # one folder that holds every data folder, unpacked or not
        base = paths.working / "arcsub-data"
        for f in folders:
            if f not in moved and not (base / f).exists():
                (base / f).symlink_to(root / f, target_is_directory=True)
    os.environ["ARCSUB_DATA"] = str(base)
    log.info("data dataset %s (%s): ARCSUB_DATA=%s", root, ", ".join(folders), base)
    return base


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def verify_dataset_files(
    root: Path, manifest: Mapping[str, Any], full: bool = False, moved: Mapping[str, Path] | None = None
) -> int:
    """Check every file the manifest lists exists with its size (and sha256 when `full`); returns the count.

    `moved` maps a top folder of the dataset to where it really is (a folder Kaggle left as a .zip and
    that was unpacked elsewhere).
    """
    files = manifest.get("files")
    if not isinstance(files, dict) or not files:
        raise ArcDataError(f"{root / MODEL_MANIFEST}: manifest lists no files")
    for rel, info in files.items():
        top, _, rest = rel.partition("/")
        p = moved[top] / rest if moved and rest and top in moved else root / rel
        if not p.is_file():
            raise ArcDataError(f"{p}: listed in the manifest but missing (incomplete upload?)")
        if p.stat().st_size != info.get("size"):
            raise ArcDataError(f"{p}: {p.stat().st_size} bytes, the manifest says {info.get('size')}")
        if full and sha256_file(p) != info.get("sha256"):
            raise ArcDataError(f"{p}: sha256 differs from the manifest (corrupt copy)")
    return len(files)


def unpack_folder(folder: Path, dest: Path) -> Path:
    """A dataset sub-folder uploaded as FOLDER.zip (`kaggle datasets ... --dir-mode zip`) that Kaggle did not
    unpack: extract it to `dest` (the input folder is read-only) and return `dest`."""
    archive = folder.with_name(folder.name + ".zip")
    if not archive.is_file():
        raise ArcDataError(
            f"{folder}: listed in the manifest but neither the folder nor {archive.name} is there"
        )
    import zipfile

    with zipfile.ZipFile(archive) as z:
        for name in z.namelist():
            target = (dest / name).resolve()
            if not target.is_relative_to(dest.resolve()):
                raise ArcDataError(f"{archive}: unsafe path {name!r} in the archive")
        z.extractall(dest)
    log.info("unpacked %s to %s", archive, dest)
    return dest


def find_wheels(paths: KagglePaths) -> Path | None:
    """The wheel dataset's folder under the input folder, or None."""
    for m in walk_for(paths.input, WHEELS_MANIFEST):
        if read_manifest(m, WHEELS_KIND) is not None:
            return m.parent
    return None
