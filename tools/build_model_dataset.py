"""Pack a trained model directory into the Kaggle dataset the submission notebook loads it from.

    python tools/build_model_dataset.py [MODEL_DIR] [--adapters DIR] [--config PIPELINE.yaml]
                                        [--out out/kaggle/arcsub-model] [--user U] [--slug arcsub-model]

MODEL_DIR (default: the embedded default model, arcsub.lm.pipeline.default_model_dir()) must be a Hugging Face
model directory with weights (arcsub.lm.models.check_model_dir). The dataset folder gets:

- the model's files, flat at the top (config.json, *.safetensors, tokenizer files, arcsub.json); training
  leftovers (optimizer / trainer state, checkpoints) are left out;
- adapters/ (optional): a trained LoRA (PEFT folder with adapter_config.json) that TTFT starts from;
- pipeline.yaml (optional): the pipeline config the notebook runs with;
- manifest.json: kind "arcsub-model", every file's size and sha256, the model's config.json, the tokenizer
  files, the training settings from arcsub.json; arcsub.kaggle.notebook finds the dataset by it and checks the files;
- dataset-metadata.json for the kaggle CLI.

Re-running copies only files whose content changed and removes files no longer part of the model, so an
unchanged model gives an unchanged folder (and `kaggle datasets version` uploads nothing new).
"""

from __future__ import annotations

import fnmatch
import json
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
from arcsub.core.data import ArcDataError
from arcsub.kaggle.datasets import MODEL_KIND, MODEL_MANIFEST

PROG = "build_model_dataset"
LEFTOVERS = (
    "trainer_state*",
    "optimizer*",
    "scheduler*",
    "rng_state*",
    "training_args.bin",
    "state.json",
    "*.tmp",
    ".*",
    MODEL_MANIFEST,
    "dataset-metadata.json",
    "pipeline.yaml",
)
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.json",
    "merges.txt",
    "tokenizer.model",
    "added_tokens.json",
    "chat_template.jinja",
)
ADAPTERS = "adapters"
PIPELINE_CONFIG = "pipeline.yaml"


def default_model() -> Path:
    try:
        from arcsub.lm.pipeline import default_model_dir
    except ImportError:
        raise ToolError(
            "no MODEL_DIR given and arcsub.lm.pipeline.default_model_dir is not available"
        ) from None
    return default_model_dir()


def model_files(model_dir: Path) -> list[Path]:
    """The model's own files (flat: HF model dirs have no sub-folders worth shipping)."""
    files = []
    for f in sorted(model_dir.iterdir()):
        if f.is_file() and not any(fnmatch.fnmatch(f.name, pat) for pat in LEFTOVERS):
            files.append(f)
    return files


def read_json_file(path: Path) -> dict[str, Any]:
    try:
        obj = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ToolError(f"{path}: unreadable JSON ({e})") from None
    if not isinstance(obj, dict):
        raise ToolError(f"{path}: expected a JSON object")
    return obj


def build(
    model_dir: Path,
    out: Path,
    *,
    user: str,
    slug: str,
    title: str,
    license_name: str,
    adapters: Path | None = None,
    config: Path | None = None,
) -> dict[str, Any]:
    from arcsub.core.modeldir import check_model_dir

    try:
        check_model_dir(model_dir)
    except ArcDataError as e:
        raise ToolError(str(e)) from None
    check_out_folder(out, model_dir, "model directory")
    if adapters is not None and not (adapters / "adapter_config.json").is_file():
        raise ToolError(f"{adapters}: not a PEFT adapter folder (no adapter_config.json)")
    if config is not None and not config.is_file():
        raise ToolError(f"{config}: pipeline config not found")
    meta = dataset_metadata(
        user,
        slug,
        title,
        license_name,
        description=f"arcsub model {model_dir.name} for ARC Prize notebooks "
        "(built by tools/build_model_dataset.py).",
    )

    plan: dict[str, Path] = {f.name: f for f in model_files(model_dir)}
    if adapters is not None:
        for f in tree_files(adapters):
            plan[f"{ADAPTERS}/{f.relative_to(adapters).as_posix()}"] = f
    if config is not None:
        plan[PIPELINE_CONFIG] = config
    cfg = read_json_file(model_dir / "config.json")
    info = read_json_file(model_dir / "arcsub.json") if (model_dir / "arcsub.json").is_file() else {}
    tokenizer = sorted(n for n in plan if n in TOKENIZER_FILES)
    if not tokenizer:
        raise ToolError(f"{model_dir}: no tokenizer files ({', '.join(TOKENIZER_FILES[:2])}, ...)")
    weights = sorted(n for n in plan if "/" not in n and (n.endswith(".safetensors") or n.endswith(".bin")))

    manifest = {
        "kind": MODEL_KIND,
        "arcsub": arcsub.__version__,
        "name": model_dir.name,
        "model_dir": ".",
        "adapters_dir": ADAPTERS if adapters is not None else None,
        "pipeline_config": PIPELINE_CONFIG if config is not None else None,
        "format": info.get("format"),
        "weights": weights,
        "tokenizer_files": tokenizer,
        "config": cfg,
        "settings": info,
    }
    res = publish_dataset(plan, out, manifest, meta)
    check_model_dir(out)  # the notebook loads the model from this folder
    return res


def main(argv: Sequence[str]) -> int:
    p = parser(PROG, __doc__.split("\n\n")[0])
    p.add_argument("model_dir", nargs="?", type=Path, help="model directory (default: the embedded default)")
    p.add_argument("--adapters", type=Path, help="a trained LoRA (PEFT folder) that TTFT starts from")
    p.add_argument("--config", type=Path, help="pipeline config (YAML) the notebook runs with")
    add_dataset_arguments(p, "model")
    args = p.parse_args(argv)
    model_dir = args.model_dir or default_model()
    res = build(
        model_dir,
        args.out,
        user=kaggle_user(args.user),
        slug=args.slug,
        title=args.title,
        license_name=args.license_name,
        adapters=args.adapters,
        config=args.config,
    )
    counts, state = describe_published(res)
    print(
        f"{rel(res['out'])}: model {model_dir.name} ({counts}, weights "
        f"{', '.join(res['manifest']['weights'])}"
        + (", with adapters" if args.adapters else "")
        + f"); {state}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(run_tool(PROG, main))
