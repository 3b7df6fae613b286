"""The always-available inference backend: PyTorch over any transformers causal LM, with our own decode loop.

Why not `model.generate`: one call per prompt wastes the GPU, and its logits processors cannot express the
grid grammar cheaply or branch a KV cache for DFS. This loop batches prompts of similar length (left
padding, one prefill, then one token per step with a DynamicCache), drops finished rows from the batch,
masks logits to well-formed grids with a vectorised state machine, and runs ARChitects' depth-first
sampling by cropping the cache back to the branching point instead of recomputing the prefix.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
from collections import OrderedDict
from collections.abc import Iterator, Sequence

import torch
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer

from arcsub.core.candidates import Candidate, SamplingSettings, group_indices, length_batches
from arcsub.core.device import default_device, pick_dtype
from arcsub.core.encode import Codec
from arcsub.core.grammar import SYNC_EVERY, GridConstraint, GridState, decoding_sdpa_backends
from arcsub.core.memory import halving_on_oom
from arcsub.lm.infer.base import AdapterList, Engine, resolve_adapters

log = logging.getLogger("arcsub.lm.infer")


# ------------------------------------------------------------------------------------------ device, dtype


def _cast_params(model: torch.nn.Module, device: torch.device, dtype: torch.dtype) -> None:
    """Move to `device` and cast floating parameters only: buffers such as RoPE's inv_freq keep fp32 precision."""
    model.to(device)
    for p in model.parameters():
        if p.is_floating_point() and p.dtype != dtype:
            p.data = p.data.to(dtype)


# ------------------------------------------------------------------------------------------- grid grammar


# ------------------------------------------------------------------------------------------------ KV cache


class GrowingLayer(DynamicLayer):
    """A DynamicLayer that writes into a buffer reserved for the whole generation instead of concatenating.

    transformers' DynamicLayer copies the entire cache at every decoded token (torch.cat); with long ARC
    prompts that copy costs as much as the step itself (measured 2x slower decoding on CPU). The keys and
    values handed to attention are views of the filled prefix; cropping (DFS) only moves the fill mark.
    """

    def __init__(self, reserve: int):
        super().__init__()
        self.reserve = reserve
        self._k: torch.Tensor | None = None
        self._v: torch.Tensor | None = None
        self._n = 0

    def _fill(self, n: int) -> None:
        self._n = n
        self.keys, self.values = self._k[..., :n, :], self._v[..., :n, :]

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        n = self._n + key_states.shape[-2]
        if self._k is None or n > self._k.shape[-2]:
            cap = max(n + self.reserve, 2 * (self._k.shape[-2] if self._k is not None else 0))
            k = key_states.new_empty(*key_states.shape[:-2], cap, key_states.shape[-1])
            v = value_states.new_empty(*value_states.shape[:-2], cap, value_states.shape[-1])
            if self._n:
                k[..., : self._n, :] = self._k[..., : self._n, :]
                v[..., : self._n, :] = self._v[..., : self._n, :]
            self._k, self._v = k, v
        self._k[..., self._n : n, :] = key_states
        self._v[..., self._n : n, :] = value_states
        self._fill(n)
        return self.keys, self.values

    def get_seq_length(self) -> int:
        return self._n

    def crop(self, tokens_to_remove: int) -> None:
        if tokens_to_remove < 0 and self._k is not None:
            self._fill(max(0, self._n + tokens_to_remove))

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        if self._k is not None:
            self._k, self._v = self._k[indices], self._v[indices]
            self._fill(self._n)

    def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
        self.batch_select_indices(beam_idx)

    def batch_repeat_interleave(self, repeats: int) -> None:
        if self._k is not None:
            self._k, self._v = self._k.repeat_interleave(repeats, 0), self._v.repeat_interleave(repeats, 0)
            self._fill(self._n)

    def reset(self) -> None:
        self._k = self._v = None
        self._n = 0
        super().reset()


def new_cache(config=None, reserve: int = 0) -> DynamicCache:
    """A DynamicCache whose plain full-attention layers are GrowingLayers reserving `reserve` extra tokens.

    Sliding-window or other special layers (from the model config) are left as transformers made them.
    """
    try:
        cache = DynamicCache(config=config) if config is not None else DynamicCache()
    except (TypeError, ValueError, AttributeError):
        cache = DynamicCache()
    if cache.layers:
        if all(type(layer) is DynamicLayer for layer in cache.layers):
            cache.layers = [GrowingLayer(reserve) for _ in cache.layers]
    elif getattr(cache, "layer_class_to_replicate", None) is DynamicLayer:
        cache.layer_class_to_replicate = functools.partial(GrowingLayer, reserve)
    return cache


# ---------------------------------------------------------------------------------------------- helpers


def _crop(cache, length: int) -> None:
    """Cut a DynamicCache back to `length` tokens (negative crop works on every transformers we support)."""
    extra = cache.get_seq_length() - length
    if extra > 0:
        cache.crop(-extra)


def _top_p_filter(logits: torch.Tensor, top_p: float) -> torch.Tensor:
    """Keep the smallest set of tokens whose probability reaches top_p (always the most likely one)."""
    sorted_logits, order = logits.sort(dim=-1, descending=True)
    probs = sorted_logits.softmax(-1)
    drop = probs.cumsum(-1) - probs > top_p
    sorted_logits = sorted_logits.masked_fill(drop, float("-inf"))
    return torch.full_like(logits, float("-inf")).scatter(-1, order, sorted_logits)


# ------------------------------------------------------------------------------------------------ engine


class TorchEngine(Engine):
    """Batched greedy / sampling / DFS generation and scoring over a transformers (or PEFT) causal LM.

    `model` may already be a PeftModel (e.g. after in-process fine-tuning): prompts without an adapter then
    use it as given. Adapter directories are loaded on first use under their own names and kept in an LRU of
    `max_loaded_adapters`, so a run over hundreds of per-task adapters does not grow without bound.
    """

    name = "torch"

    def __init__(
        self,
        model: torch.nn.Module,
        tokenizer,
        device: str | torch.device | None = None,
        dtype: torch.dtype | None = None,
        batch_tokens: int = SamplingSettings.batch_tokens,
        max_loaded_adapters: int = 16,
    ):
        self.device = torch.device(device) if device is not None else default_device()
        self.dtype = dtype or pick_dtype("auto", self.device)
        self.codec = Codec(tokenizer)
        self.batch_tokens = batch_tokens or SamplingSettings.batch_tokens  # 0 (auto): the default budget
        self.max_loaded_adapters = max(1, max_loaded_adapters)
        _cast_params(model, self.device, self.dtype)
        self.model = model.eval()
        self._given_adapter: str | None = getattr(model, "active_adapter", None) if self._is_peft() else None
        self._loaded: OrderedDict[str, str] = OrderedDict()  # adapter path -> adapter name, LRU order
        self._next_adapter = 0
        self._valid: torch.Tensor | None = None
        self._constraints: dict[str, GridConstraint | None] = {}

    # --- model plumbing ------------------------------------------------------------------------------

    def _is_peft(self) -> bool:
        try:
            from peft import PeftModel
        except ImportError:
            return False
        return isinstance(self.model, PeftModel)

    def _new_cache(self, reserve: int):
        return new_cache(getattr(self.model, "config", None), reserve)

    def _forward(
        self,
        ids: torch.Tensor,
        mask: torch.Tensor,
        pos: torch.Tensor,
        cache,
        keep: int,
        names: list[str] | None = None,
    ) -> torch.Tensor:
        """Logits (float32) of the last `keep` positions; `names`: each row's LoRA adapter (a mixed batch)."""
        extra = {"adapter_names": names} if names is not None else {}
        with decoding_sdpa_backends(self.device):
            out = self.model(
                input_ids=ids,
                attention_mask=mask,
                position_ids=pos,
                past_key_values=cache,
                use_cache=cache is not None,
                logits_to_keep=keep,
                **extra,
            )
        return out.logits[:, -keep:].float()

    def _left_pad(self, seqs: Sequence[Sequence[int]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Left-padded ids, attention mask and position ids (positions count real tokens only)."""
        longest = max(len(s) for s in seqs)
        ids = torch.full((len(seqs), longest), self.codec.pad_id, dtype=torch.long)
        mask = torch.zeros((len(seqs), longest), dtype=torch.long)
        for i, s in enumerate(seqs):
            if len(s):
                ids[i, longest - len(s) :] = torch.as_tensor(list(s), dtype=torch.long)
                mask[i, longest - len(s) :] = 1
        pos = (mask.cumsum(-1) - 1).clamp(min=0)
        return ids.to(self.device), mask.to(self.device), pos.to(self.device)

    def _valid_tokens(self, vocab_size: int) -> torch.Tensor:
        """Ids a real answer may contain: the tokenizer's (not the embedding's padding), minus pad and bos."""
        if self._valid is None or self._valid.numel() != vocab_size:
            valid = torch.arange(vocab_size, device=self.device) < len(self.codec.tokenizer)
            for special in (self.codec.pad_id, self.codec.bos_id):
                if special is not None and special != self.codec.eos_id and special < vocab_size:
                    valid[special] = False
            self._valid = valid
        return self._valid

    def _constraint(
        self, params: SamplingSettings, vocab_size: int, device: torch.device
    ) -> GridConstraint | None:
        if not params.constrained:
            return None
        key = f"{device}:{vocab_size}"
        if key not in self._constraints:
            c = GridConstraint.for_codec(self.codec, vocab_size, device)
            if c is None:
                log.info("constrained decoding needs the compact tokenizer: generating unconstrained")
            self._constraints[key] = c
        return self._constraints[key]

    @contextlib.contextmanager
    def _adapter(self, path: str | None) -> Iterator[None]:
        """Run the body with adapter `path` active (None: the model as given, without engine adapters)."""
        if path is None:
            if self._given_adapter is not None:
                self.model.set_adapter(self._given_adapter)
                yield
            elif self._is_peft():
                with self.model.disable_adapter():
                    yield
            else:
                yield
            return
        name = self._load_adapter(path)  # may wrap self.model in a PeftModel: look the method up after
        self.model.set_adapter(name)
        self._evict()
        yield

    def _load_adapter(self, path: str) -> str:
        if path in self._loaded:
            self._loaded.move_to_end(path)
            return self._loaded[path]
        from peft import PeftModel

        name = f"arcsub_{self._next_adapter}"
        self._next_adapter += 1
        if self._is_peft():
            self.model.load_adapter(
                path, adapter_name=name, autocast_adapter_dtype=False, local_files_only=True
            )
        else:  # adapters are the per-task folders TTFT wrote: never a hub id
            self.model = PeftModel.from_pretrained(
                self.model, path, adapter_name=name, autocast_adapter_dtype=False, local_files_only=True
            )
        _cast_params(self.model, self.device, self.dtype)
        self.model.eval()
        self._loaded[path] = name
        return name

    def _row_adapter_names(self, paths: list[str | None]) -> list[str] | None:
        """PEFT adapter names per prompt, for one mixed batch across several adapters (per-task LoRAs decode
        together instead of task by task); None when grouping by adapter is as good (one adapter, or more
        distinct adapters than may stay loaded)."""
        distinct = {p for p in paths if p is not None}
        if len(set(paths)) < 2 or len(distinct) > self.max_loaded_adapters:
            return None
        names = {p: self._load_adapter(p) for p in distinct}
        self._evict()
        base = self._given_adapter if self._given_adapter is not None else "__base__"  # PEFT: no adapter
        return [names[p] if p is not None else base for p in paths]

    def _evict(self) -> None:
        while len(self._loaded) > self.max_loaded_adapters:
            _, name = self._loaded.popitem(last=False)
            self.model.delete_adapter(name)

    # --- generation ----------------------------------------------------------------------------------

    def generate(
        self, prompts: Sequence[Sequence[int]], params: SamplingSettings, adapters: AdapterList = None
    ) -> list[list[Candidate]]:
        params.validate()
        paths = resolve_adapters(adapters, len(prompts))
        out: list[list[Candidate]] = [[] for _ in prompts]
        generator = torch.Generator(device=self.device).manual_seed(params.seed)
        reps = params.n if params.mode == "sample" else 1
        names = self._row_adapter_names(paths) if params.mode != "dfs" else None
        budget = params.batch_tokens or self.batch_tokens  # 0 (auto): the engine's budget
        if names is not None:
            with torch.inference_mode():
                lengths = [len(p) for p in prompts]
                for batch in length_batches(lengths, reps, params.max_new_tokens, budget):
                    cands = halving_on_oom(
                        lambda b: self._decode(
                            [prompts[i] for i in b], reps, params, generator, [names[i] for i in b]
                        ),
                        batch,
                        "LM decoding",
                    )
                    for i, c in zip(batch, cands, strict=True):
                        out[i] = c
            return out
        for path, idx in group_indices(paths).items():
            with self._adapter(path), torch.inference_mode():
                if params.mode == "dfs":
                    for i in idx:
                        out[i] = self._dfs(prompts[i], params)
                    continue
                lengths = [len(prompts[i]) for i in idx]
                for batch in length_batches(lengths, reps, params.max_new_tokens, budget):
                    rows = [idx[j] for j in batch]
                    cands = halving_on_oom(
                        lambda b: self._decode([prompts[i] for i in b], reps, params, generator),
                        rows,
                        "LM decoding",
                    )
                    for i, c in zip(rows, cands, strict=True):
                        out[i] = c
        return out

    def _choose(
        self, logits: torch.Tensor, params: SamplingSettings, generator: torch.Generator
    ) -> torch.Tensor:
        if params.mode == "greedy":
            return logits.argmax(-1)
        logits = logits / params.temperature
        if params.top_p is not None and params.top_p < 1:
            logits = _top_p_filter(logits, params.top_p)
        return torch.multinomial(logits.softmax(-1), 1, generator=generator)[:, 0]

    def _decode(
        self,
        prompts: list[Sequence[int]],
        reps: int,
        params: SamplingSettings,
        generator: torch.Generator,
        names: list[str] | None = None,
    ) -> list[list[Candidate]]:
        """One batch: prefill once, repeat the cache `reps` times (samples), then one token per step.
        `names`: each prompt's adapter in a mixed-adapter batch (None: the active adapter for all).
        One function (~60 lines) on purpose: the decode loop's state (cache, finished rows, grammar state) is
        shared by every step, and splitting it would pass all of it back and forth each token."""
        eos, pad = self.codec.eos_id, self.codec.pad_id
        ids, mask, pos = self._left_pad(prompts)
        cache = self._new_cache(params.max_new_tokens)
        logits = self._forward(ids, mask, pos, cache, 1, names)[:, -1]
        next_pos = pos[:, -1] + 1
        if reps > 1:
            cache.batch_repeat_interleave(reps)
            logits, mask, next_pos = (t.repeat_interleave(reps, 0) for t in (logits, mask, next_pos))
            names = [n for n in names for _ in range(reps)] if names is not None else None
        rows, vocab = logits.shape
        max_new = params.max_new_tokens
        valid = self._valid_tokens(vocab)
        constraint = self._constraint(params, vocab, self.device)
        state = constraint.start(rows) if constraint is not None else None
        slot = torch.arange(rows, device=self.device)  # output row of each live batch row
        done = torch.zeros(rows, dtype=torch.bool, device=self.device)  # live rows that wrote eos
        out_tokens = torch.full((rows, max_new), pad, dtype=torch.long, device=self.device)
        out_logprob = torch.zeros(rows, dtype=torch.float32, device=self.device)
        out_len = torch.zeros(rows, dtype=torch.long, device=self.device)
        out_done = torch.zeros(rows, dtype=torch.bool, device=self.device)
        prompt_len = mask.shape[1]
        mask = torch.cat([mask, mask.new_ones(rows, max_new)], dim=1)  # views of it grow one column a step
        for step in range(max_new):
            raw = logits.log_softmax(-1)
            allowed = valid[None] if state is None else valid[None] & constraint.allowed(state)
            masked = logits.masked_fill(~allowed, float("-inf")).masked_fill(done[:, None], 0.0)
            tok = self._choose(masked, params, generator).masked_fill(done, pad)
            live = ~done
            out_tokens[slot, step] = tok
            out_logprob[slot] += torch.where(live, raw.gather(1, tok[:, None])[:, 0], 0.0)
            out_len[slot] += live.long()
            newly = live & (tok == eos)
            out_done[slot] |= newly
            done = done | newly
            if state is not None:
                state = constraint.advance(state, tok)
            if step + 1 == max_new:
                break
            if (step + 1) % SYNC_EVERY == 0:  # the only host sync: lets the CPU queue steps ahead of the GPU
                n_done = int(done.sum())
                if n_done == len(done):
                    break
                if n_done >= max(1, len(done) // 8):  # compact: finished rows stop costing compute
                    keep = (~done).nonzero()[:, 0]
                    cache.batch_select_indices(keep)
                    slot, mask, next_pos, tok, done = (t[keep] for t in (slot, mask, next_pos, tok, done))
                    state = state.select(keep) if state is not None else None
                    names = [names[k] for k in keep.tolist()] if names is not None else None
            step_mask = mask[:, : prompt_len + step + 1]
            logits = self._forward(tok[:, None], step_mask, next_pos[:, None], cache, 1, names)[:, -1]
            next_pos = next_pos + 1
        return self._collect(out_tokens, out_logprob, out_len, out_done, reps)

    @staticmethod
    def _collect(
        tokens: torch.Tensor, logprob: torch.Tensor, length: torch.Tensor, finished: torch.Tensor, reps: int
    ) -> list[list[Candidate]]:
        tokens, logprob, length, finished = (t.cpu().tolist() for t in (tokens, logprob, length, finished))
        cands = [
            Candidate(toks[: n - 1] if fin else toks[:n], lp, n, fin)
            for toks, lp, n, fin in zip(tokens, logprob, length, finished, strict=True)
        ]
        return [cands[i : i + reps] for i in range(0, len(cands), reps)]

    # --- depth-first sampling ------------------------------------------------------------------------

    def _dfs(self, prompt: Sequence[int], params: SamplingSettings) -> list[Candidate]:
        """Every answer with probability >= dfs_threshold, best first (ARChitects' DFS sampling).

        The stack holds unexpanded nodes; the cache always holds the path to the last expanded node, which
        is an ancestor-sharing path of the next one popped, so cropping it to the parent's length is enough.
        The branch test runs on CPU: one small device-to-host copy per expanded node.
        """
        eos, max_new = self.codec.eos_id, params.max_new_tokens
        min_logprob = math.log(params.dfs_threshold)
        n = len(prompt)
        ids = torch.as_tensor([list(prompt)], dtype=torch.long, device=self.device)
        cache = self._new_cache(max_new)
        logits = self._forward(
            ids, torch.ones_like(ids), torch.arange(n, device=self.device)[None], cache, 1
        )[0, -1]
        vocab = logits.shape[-1]
        valid = self._valid_tokens(vocab).cpu()
        constraint = self._constraint(params, vocab, torch.device("cpu"))
        found: list[Candidate] = []
        stack: list[tuple[list[int], float, GridState | None]] = []

        def expand(logits: torch.Tensor, toks: list[int], logprob: float, state: GridState | None) -> None:
            total = logits.log_softmax(-1).cpu().double() + logprob
            ok = valid & (total >= min_logprob)
            if state is not None:
                ok &= constraint.allowed(state)[0]
            idx = ok.nonzero()[:, 0]
            vals = total[idx]
            order = vals.argsort()  # pushed worst first, so the best child is expanded first
            for t, v in zip(idx[order].tolist(), vals[order].tolist(), strict=True):
                if t == eos:
                    found.append(Candidate(list(toks), v, len(toks) + 1, True))
                elif len(toks) + 2 <= max_new:  # room for this token and a closing eos
                    child = constraint.advance(state, torch.tensor([t])) if state is not None else None
                    stack.append((toks + [t], v, child))

        expand(logits, [], 0.0, constraint.start(1) if constraint is not None else None)
        while stack:
            toks, logprob, state = stack.pop()
            length = n + len(toks)
            _crop(cache, length - 1)
            step_ids = torch.tensor([[toks[-1]]], device=self.device)
            mask = torch.ones((1, length), dtype=torch.long, device=self.device)
            pos = torch.tensor([[length - 1]], device=self.device)
            expand(self._forward(step_ids, mask, pos, cache, 1)[0, -1], toks, logprob, state)
        found.sort(key=lambda c: -c.logprob)
        return found

    # --- scoring -------------------------------------------------------------------------------------

    def score(
        self, prompts: Sequence[Sequence[int]], answers: Sequence[Sequence[int]], adapters: AdapterList = None
    ) -> list[float]:
        if len(prompts) != len(answers):
            raise ValueError(f"{len(prompts)} prompts for {len(answers)} answers")
        paths = resolve_adapters(adapters, len(prompts))
        out = [0.0] * len(prompts)
        for path, idx in group_indices(paths).items():
            with self._adapter(path), torch.inference_mode():
                lengths = [len(prompts[i]) + len(answers[i]) for i in idx]
                for batch in length_batches(lengths, 1, 0, self.batch_tokens):
                    rows = [idx[j] for j in batch if len(answers[idx[j]])]
                    if rows:
                        scores = halving_on_oom(
                            lambda b: self._score_batch([prompts[i] for i in b], [answers[i] for i in b]),
                            rows,
                            "LM scoring",
                        )
                        for i, s in zip(rows, scores, strict=True):
                            out[i] = s
        return out

    def _score_batch(self, prompts: list[Sequence[int]], answers: list[Sequence[int]]) -> list[float]:
        """Left padding puts every answer at the right end, so only the last A+1 positions need logits."""
        ids, mask, pos = self._left_pad([list(p) + list(a) for p, a in zip(prompts, answers, strict=True)])
        longest = max(len(a) for a in answers)
        logp = self._forward(ids, mask, pos, None, longest + 1)[:, :-1].log_softmax(-1)
        token_logp = logp.gather(-1, ids[:, -longest:, None])[..., 0]
        lens = torch.tensor([len(a) for a in answers], device=self.device)
        in_answer = torch.arange(longest, device=self.device)[None] >= (longest - lens)[:, None]
        return token_logp.masked_fill(~in_answer, 0.0).sum(-1).tolist()
