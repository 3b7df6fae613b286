"""A thin vLLM backend (extra `arcsub[vllm]`) and the choice between it and the PyTorch engine.

vLLM batches continuously, caches shared prompt prefixes (all views of a task share the demonstrations
only up to the first augmented grid, but the n samples of one prompt share everything) and serves many
LoRA adapters in one batch, so it is the fast path on Ampere+ GPUs. vllm is imported only inside the
class; everything that turns our requests into vLLM's arguments is a pure function, tested without vllm.
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from arcsub.core.candidates import Candidate, SamplingSettings, safe_logprob
from arcsub.core.data import ArcDataError
from arcsub.core.device import capability
from arcsub.lm.infer.base import AdapterList, Engine, resolve_adapters

log = logging.getLogger("arcsub.lm.infer")

VLLM_MISSING = "vllm is not installed: pip install arcsub[vllm] or use --engine torch"
LORA_MIN_CAPABILITY = (8, 0)  # vLLM's LoRA kernels (Triton/punica) need Ampere or newer

LoraSpec = tuple[str, int, str]  # (name, int id, path): LoRARequest's positional arguments


def vllm_installed() -> bool:
    return importlib.util.find_spec("vllm") is not None


def cuda_capability() -> tuple[int, int] | None:
    """Compute capability of GPU 0, or None without CUDA (torch imported only here)."""
    try:
        import torch
    except ImportError:
        return None
    if not torch.cuda.is_available():
        return None
    return capability(0)


def choose_engine(
    requested: str,
    mode: str = "greedy",
    installed: bool | None = None,
    capability: tuple[int, int] | None | str = "detect",
) -> str:
    """'torch' or 'vllm' for a requested engine ('auto' | 'torch' | 'vllm').

    auto picks vLLM only when it is importable, the GPU is Ampere+ (LoRA kernels) and the mode is not DFS
    (which needs cache branching that vLLM does not expose); otherwise torch, with a one-line notice why.
    An explicit 'vllm' that cannot work is an error, not a silent fallback.
    """
    installed = vllm_installed() if installed is None else installed
    cap = cuda_capability() if capability == "detect" else capability
    if requested == "torch":
        return "torch"
    if requested == "vllm":
        if not installed:
            raise ArcDataError(VLLM_MISSING)
        if mode == "dfs":
            raise ArcDataError(
                "sampling mode dfs needs the torch engine: use --engine torch (or engine=torch)"
            )
        return "vllm"
    if requested != "auto":
        raise ArcDataError(f"unknown engine {requested!r} (known: auto, torch, vllm)")
    why = None
    if mode == "dfs":
        why = "dfs sampling runs on the torch engine"
    elif not installed:
        why = "vllm is not installed"
    elif cap is None:
        why = "no CUDA GPU for vllm"
    elif tuple(cap) < LORA_MIN_CAPABILITY:
        why = f"GPU compute capability {cap[0]}.{cap[1]} < 8.0 (vLLM LoRA kernels)"
    if why:
        log.warning("engine: using torch (%s)", why)
        return "torch"
    return "vllm"


# --------------------------------------------------------------------------------- pure request building


def build_requests(
    prompts: Sequence[Sequence[int]], adapters: Sequence[str | None]
) -> tuple[list[dict[str, list[int]]], list[LoraSpec | None]]:
    """Token prompts as vLLM TokensPrompt dicts, and one LoRA spec per prompt (same path, same int id >= 1)."""
    if len(prompts) != len(adapters):
        raise ValueError(f"{len(adapters)} adapters for {len(prompts)} prompts")
    ids: dict[str, int] = {}
    loras: list[LoraSpec | None] = []
    for path in adapters:
        if path is None:
            loras.append(None)
            continue
        if path not in ids:
            ids[path] = len(ids) + 1
        loras.append((f"{Path(path).name}-{ids[path]}", ids[path], str(path)))
    return [{"prompt_token_ids": [int(t) for t in p]} for p in prompts], loras


def sampling_kwargs(
    params: SamplingSettings, eos_id: int, allowed_ids: Sequence[int] | None = None
) -> dict[str, Any]:
    """SamplingParams arguments for greedy / sample (DFS has no vLLM equivalent).

    logprobs=0 makes vLLM return the chosen token's log-probability, hence `cumulative_logprob`.
    allowed_ids is the token-level part of the grid grammar (digits, newline, eos) that vLLM can enforce.
    """
    if params.mode == "dfs":
        raise ArcDataError("sampling mode dfs needs the torch engine: use --engine torch (or engine=torch)")
    kw: dict[str, Any] = {
        "n": 1 if params.mode == "greedy" else params.n,
        "temperature": 0.0 if params.mode == "greedy" else params.temperature,
        "max_tokens": params.max_new_tokens,
        "logprobs": 0,
        "seed": params.seed,
        "stop_token_ids": [eos_id],
        "detokenize": False,
    }
    if params.mode == "sample" and params.top_p is not None:
        kw["top_p"] = params.top_p
    if allowed_ids is not None:
        kw["allowed_token_ids"] = list(allowed_ids)
    return kw


def score_kwargs() -> dict[str, Any]:
    """SamplingParams for teacher-forced scoring: one throwaway token, log-probs of every prompt token."""
    return {"n": 1, "temperature": 0.0, "max_tokens": 1, "prompt_logprobs": 0, "detokenize": False}


def candidate_from_completion(
    token_ids: Sequence[int], cumulative_logprob: float | None, eos_id: int, finish_reason: str | None
) -> Candidate:
    """One vLLM completion as our Candidate (eos stripped; finished only when it stopped on eos)."""
    toks = [int(t) for t in token_ids]
    finished = finish_reason == "stop"
    n = len(toks)
    if toks and toks[-1] == eos_id:
        toks = toks[:-1]
    elif finished:
        n += 1  # vLLM left the stop token out of token_ids
    return Candidate(toks, safe_logprob(cumulative_logprob), n, finished)


# -------------------------------------------------------------------------------------------------- engine


class VllmEngine(Engine):
    """Generation and scoring through vLLM's offline `LLM`, LoRA adapters per request."""

    name = "vllm"

    def __init__(
        self,
        model_dir: str | Path,
        tokenizer,
        max_len: int = 8192,
        dtype: str = "auto",
        gpu_memory_utilization: float = 0.85,
        enable_lora: bool = False,
        max_lora_rank: int = 64,
        max_loras: int = 8,
        seed: int = 0,
        constrained_ids: Sequence[int] | None = None,
    ):
        try:
            from vllm import LLM
        except ImportError:
            raise ArcDataError(VLLM_MISSING) from None
        from arcsub.core.encode import Codec

        self.codec = Codec(tokenizer)
        self.constrained_ids = list(constrained_ids) if constrained_ids is not None else None
        kwargs: dict[str, Any] = dict(
            dtype={"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}.get(dtype, dtype),
            enable_prefix_caching=True,
            gpu_memory_utilization=gpu_memory_utilization,
            max_model_len=max_len,
            seed=seed,
            # prompts go in and answers come out as token ids; and vLLM's AutoTokenizer would load our compact
            # vocabulary with the architecture's own class (Qwen2Tokenizer drops the newline token)
            skip_tokenizer_init=self.codec.compact,
        )
        if enable_lora:
            kwargs.update(enable_lora=True, max_lora_rank=max_lora_rank, max_loras=max_loras)
        self.llm = LLM(model=str(model_dir), **kwargs)

    def _requests(self, prompts: Sequence[Sequence[int]], adapters: AdapterList):
        from vllm.lora.request import LoRARequest

        reqs, specs = build_requests(prompts, resolve_adapters(adapters, len(prompts)))
        loras = [LoRARequest(*s) if s is not None else None for s in specs]
        return reqs, (loras if any(x is not None for x in loras) else None)

    def generate(
        self, prompts: Sequence[Sequence[int]], params: SamplingSettings, adapters: AdapterList = None
    ) -> list[list[Candidate]]:
        from vllm import SamplingParams

        params.validate()
        allowed = self.constrained_ids if params.constrained else None
        sp = SamplingParams(**sampling_kwargs(params, self.codec.eos_id, allowed))
        reqs, loras = self._requests(prompts, adapters)
        outs = self.llm.generate(reqs, sp, use_tqdm=False, lora_request=loras)
        return [
            [
                candidate_from_completion(
                    c.token_ids, c.cumulative_logprob, self.codec.eos_id, c.finish_reason
                )
                for c in o.outputs
            ]
            for o in outs
        ]

    def score(
        self, prompts: Sequence[Sequence[int]], answers: Sequence[Sequence[int]], adapters: AdapterList = None
    ) -> list[float]:
        from vllm import SamplingParams

        seqs = [list(p) + list(a) for p, a in zip(prompts, answers, strict=True)]
        reqs, loras = self._requests(seqs, adapters)
        outs = self.llm.generate(reqs, SamplingParams(**score_kwargs()), use_tqdm=False, lora_request=loras)
        scores = []
        for o, p, seq in zip(outs, prompts, seqs, strict=True):
            plp = o.prompt_logprobs or []
            scores.append(sum(plp[j][seq[j]].logprob for j in range(len(p), len(seq))))
        return scores

    def close(self) -> None:
        del self.llm
