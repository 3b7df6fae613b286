"""Copy a trained model directory in a smaller dtype (bf16 by default): the embedded default ships this way.

python tools/export_model.py runs/<run>/model models/arcsub-small --dtype bf16
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import torch

from arcsub.core.data import ArcDataError
from arcsub.core.modeldir import read_model_info, save_model
from arcsub.lm.models import load_model


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("src")
    ap.add_argument("dst")
    ap.add_argument("--dtype", choices=("bf16", "fp16", "fp32"), default="bf16")
    a = ap.parse_args(argv)
    try:
        model, tok, _ = load_model(a.src)
    except ArcDataError as e:
        print(f"export_model: error: {e}", file=sys.stderr)
        return 2
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[a.dtype]
    dst = Path(a.dst)
    shutil.rmtree(dst, ignore_errors=True)
    save_model(model.to(dtype), tok, dst, read_model_info(a.src) | {"exported_dtype": a.dtype})
    print(f"exported {a.src} -> {dst} ({a.dtype})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
