"""Copy a trained model directory in a smaller dtype (bf16 by default): the embedded default ships this way,
and a task model travels so (29M parameters: 58 MB in bf16 against 116 MB in fp32; bench/gpu_stages.sh pack).

python tools/export_model.py runs/<run>/model models/arcsub-small --dtype bf16
python tools/export_model.py runs/<task run>/model /tmp/task-bf16 --dtype bf16   # a task model (format "task")
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from arcsub.core.data import ArcDataError
from arcsub.core.modeldir import read_model_info, save_model
from arcsub.lm.models import load_model
from arcsub.taskmodel.model import load_task_model, save_task_model


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("src")
    ap.add_argument("dst")
    ap.add_argument("--dtype", choices=("bf16", "fp16", "fp32"), default="bf16")
    a = ap.parse_args(argv)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[a.dtype]
    dst = Path(a.dst)
    try:
        info = read_model_info(a.src) | {"exported_dtype": a.dtype}
        # both saves are atomic: an earlier export at dst stays until the new one is complete
        if info.get("format") == "task":  # task-train's models: weights, config and task_index.json
            model, index = load_task_model(a.src)
            save_task_model(model.to(dtype), index, dst, info)
        else:
            model, tok, _ = load_model(a.src)
            save_model(model.to(dtype), tok, dst, info)
    except ArcDataError as e:
        print(f"export_model: error: {e}", file=sys.stderr)
        return 2
    print(f"exported {a.src} -> {dst} ({a.dtype})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
