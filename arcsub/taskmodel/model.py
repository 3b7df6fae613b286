"""A small transformer that learns one embedding per ARC task and maps a test input straight to its output.

After mdlARC (github mvakde/mdlARC, MIT): no demonstrations in context. Each sequence is one (input, output)
pair (arcsub.taskmodel.data); a learned task embedding and a D8-view embedding are added to every token; rotary
positions are 3-D grid coordinates (x = column, y = row, z = which grid), so cell (r, c) of the input and
cell (r, c) of the output share x and y. Test-time training adds rows for new tasks (`add_tasks`) and learns
them from the demonstrations; inference feeds the test input with its task's row and decodes the output.

Pre-norm blocks with RMSNorm, SwiGLU and causal attention: torch SDPA (dense masks for padding, the KV cache
and packed rows on CPU) or flex_attention with a block-sparse document mask for packed rows on CUDA. It is a
plain transformers model (ArcTaskConfig / ArcTaskForCausalLM, registered with the Auto classes on import), so
save_pretrained / from_pretrained work with safetensors and no remote code.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoConfig, AutoModelForCausalLM, PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import CausalLMOutput

from arcsub.core.data import NUM_COLOURS, ArcDataError
from arcsub.taskmodel.data import BOS, EOS, IGNORE, NL, PAD, SEP, TaskIndex

MODEL_TYPE = "arcsub-task"
VOCAB_SIZE = 32  # the compact vocabulary (19 ids) padded for tensor-core friendly shapes

PRESETS: dict[str, dict[str, Any]] = {
    "tiny": dict(
        hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4
    ),  # CPU tests
    "small": dict(hidden_size=256, intermediate_size=1024, num_hidden_layers=8, num_attention_heads=8),  # ~8M
    "base": dict(
        hidden_size=768, intermediate_size=2048, num_hidden_layers=4, num_attention_heads=12, dropout=0.1
    ),  # ~29M, mdlARC v1-like
    "large": dict(
        hidden_size=768, intermediate_size=3072, num_hidden_layers=8, num_attention_heads=12, dropout=0.1
    ),  # ~76M, mdlARC's 44 % shape
}


class ArcTaskConfig(PretrainedConfig):
    model_type = MODEL_TYPE

    def __init__(
        self,
        vocab_size: int = VOCAB_SIZE,
        hidden_size: int = 256,
        intermediate_size: int = 1024,
        num_hidden_layers: int = 4,
        num_attention_heads: int = 4,
        num_tasks: int = 1,
        num_views: int = 8,
        rope_theta: float = 10000.0,
        positions: str = "3d",
        task_embedding: bool = True,
        rms_norm_eps: float = 1e-6,
        dropout: float = 0.0,
        initializer_range: float = 0.02,
        sep_token_id: int = SEP,
        newline_token_id: int = NL,
        bos_token_id: int = BOS,
        eos_token_id: int = EOS,
        pad_token_id: int = PAD,
        **kwargs,
    ):
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.intermediate_size = intermediate_size
        self.num_hidden_layers = num_hidden_layers
        self.num_attention_heads = num_attention_heads
        self.num_tasks = num_tasks
        self.num_views = num_views
        self.rope_theta = rope_theta
        # ablations: "1d" rotary positions (the token's index) instead of "3d" (column, row, grid); no task rows
        self.positions = positions
        self.task_embedding = task_embedding
        self.rms_norm_eps = rms_norm_eps
        self.dropout = dropout
        self.initializer_range = initializer_range
        self.sep_token_id = sep_token_id
        self.newline_token_id = newline_token_id
        kwargs.setdefault("tie_word_embeddings", False)
        super().__init__(
            bos_token_id=bos_token_id, eos_token_id=eos_token_id, pad_token_id=pad_token_id, **kwargs
        )

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads


def preset_config(preset: str, num_tasks: int, **overrides: Any) -> ArcTaskConfig:
    if preset not in PRESETS:
        raise ArcDataError(f"unknown task-model preset {preset!r} (known: {', '.join(PRESETS)})")
    cfg = ArcTaskConfig(**(PRESETS[preset] | {"num_tasks": max(1, num_tasks)} | overrides))
    if cfg.hidden_size % cfg.num_attention_heads or cfg.head_dim % 2 or cfg.head_dim < 6:
        raise ArcDataError(f"preset {preset}: head size {cfg.head_dim} must be even and at least 6")
    if cfg.positions not in POSITIONS:
        raise ArcDataError(f"positions {cfg.positions!r}: expected one of {', '.join(POSITIONS)}")
    return cfg


# ------------------------------------------------------------------------------------ grid positions


def grid_positions(ids: torch.Tensor, bos: int = BOS, sep: int = SEP, newline: int = NL) -> torch.Tensor:
    """(..., seq) token ids -> (..., seq, 3) integer (x, y, z) coordinates, computed from the stream alone.

    A cell or a row's newline gets x = its column (the newline: the row's width), y = its row, z = 1 in the
    input grid and 3 in the output grid; bos is (0, 0, 0), the separator (0, 0, 2) and anything else (eos,
    padding) (0, 0, 4). Every bos restarts the count, so packed rows need nothing else; a stream that starts at
    a separator (the decoder's output buffer) is an output grid.
    """
    idx = torch.arange(ids.shape[-1], device=ids.device).expand_as(ids)
    none = torch.full_like(idx, -1)
    is_nl, is_sep, is_bos = ids == newline, ids == sep, ids == bos
    starts = is_bos | is_sep
    grid_start = torch.where(starts, idx, none).cummax(-1).values.clamp(min=0)  # last bos/sep at or before t
    row_break = torch.where(starts | is_nl, idx, none).cummax(-1).values
    prev_break = F.pad(row_break, (1, 0), value=-1)[..., :-1]  # last break strictly before t
    nl_upto = is_nl.long().cumsum(-1)
    x = idx - prev_break - 1
    y = nl_upto - is_nl.long() - nl_upto.gather(-1, grid_start)
    z = 1 + 2 * is_sep.long().gather(-1, grid_start)
    cell = (ids < NUM_COLOURS) | is_nl
    zero = torch.zeros_like(x)
    special_z = torch.where(is_bos, zero, torch.where(is_sep, zero + 2, zero + 4))
    return torch.stack(
        [torch.where(cell, x, zero), torch.where(cell, y, zero), torch.where(cell, z, special_z)], -1
    )


def next_output_position(
    tok: torch.Tensor, col: torch.Tensor, row: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """grid_positions of one more output-grid token, from the running (column, row): O(1) per decoded token.

    Returns the token's (batch, 1, 3) position and the updated column and row, exactly as grid_positions
    would number the token at the end of an output stream (which holds no bos or separator after its start)."""
    cell = (tok < NUM_COLOURS) | (tok == NL)
    zero = torch.zeros_like(col)
    pos = torch.stack(
        [torch.where(cell, col, zero), torch.where(cell, row, zero), torch.where(cell, zero + 3, zero + 4)],
        -1,
    )
    is_nl = tok == NL
    col = torch.where(is_nl, zero, col + 1)  # any other token moves the column on, as in grid_positions
    return pos[:, None], col, row + is_nl.long()


def sequence_positions(ids: torch.Tensor, bos: int = BOS) -> torch.Tensor:
    """(..., seq) -> (..., seq, 1): each token's index since the last bos, plain 1-D RoPE (the ablation of
    grid_positions); left padding before a bos gets 0."""
    idx = torch.arange(ids.shape[-1], device=ids.device).expand_as(ids)
    start = torch.where(ids == bos, idx, torch.full_like(idx, -1)).cummax(-1).values
    return torch.where(start >= 0, idx - start, torch.zeros_like(idx)).unsqueeze(-1)


POSITIONS = ("3d", "1d")  # ArcTaskConfig.positions: grid_positions or sequence_positions


def token_positions(ids: torch.Tensor, config: ArcTaskConfig) -> torch.Tensor:
    """The rotary coordinates the model's config asks for, from the token stream alone."""
    if config.positions == "1d":
        return sequence_positions(ids, config.bos_token_id)
    return grid_positions(ids, config.bos_token_id, config.sep_token_id, config.newline_token_id)


def rotary_tables(grid_pos: torch.Tensor, head_dim: int, theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """cos/sin of shape (batch, 1, seq, head_dim/2): the rotary pairs split evenly over the position's axes
    (three for grid positions: x, y, z, the last getting the remainder; one for sequence positions)."""
    pairs, n_axes = head_dim // 2, grid_pos.shape[-1]
    sizes = [pairs // n_axes] * (n_axes - 1) + [pairs - (n_axes - 1) * (pairs // n_axes)]
    dev = grid_pos.device
    axis = torch.cat([torch.full((n,), a, device=dev) for a, n in enumerate(sizes)])
    freq = torch.cat([theta ** (-torch.arange(n, device=dev, dtype=torch.float32) / n) for n in sizes])
    angles = grid_pos[..., axis].float() * freq
    return angles.cos().unsqueeze(1), angles.sin().unsqueeze(1)


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.float().chunk(2, dim=-1)
    return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1).to(x.dtype)


# ---------------------------------------------------------------------------------- attention masks


class KVCache:
    """Preallocated keys/values of every layer for batched decoding; `valid` masks left padding."""

    def __init__(
        self,
        n_layers: int,
        batch: int,
        heads: int,
        max_len: int,
        head_dim: int,
        device: torch.device | str,
        dtype: torch.dtype,
    ):
        shape = (n_layers, batch, heads, max_len, head_dim)
        self.k = torch.zeros(shape, device=device, dtype=dtype)
        self.v = torch.zeros(shape, device=device, dtype=dtype)
        self.valid = torch.zeros(batch, max_len, dtype=torch.bool, device=device)
        self.length = 0

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store the new keys/values after the cached ones; returns all keys/values so far."""
        end = self.length + k.shape[2]
        if end > self.k.shape[3]:
            raise ValueError(f"KV cache full: {end} tokens for a cache of {self.k.shape[3]}")
        self.k[layer, :, :, self.length : end] = k
        self.v[layer, :, :, self.length : end] = v
        return self.k[layer, :, :, :end], self.v[layer, :, :, :end]

    def select(self, rows: torch.Tensor) -> None:
        """Keep only these batch rows (finished rows of a decoding batch stop costing memory and compute)."""
        self.k, self.v, self.valid = self.k[:, rows], self.v[:, rows], self.valid[rows]


def _padded_causal_mask(valid: torch.Tensor, q_start: int) -> torch.Tensor:
    """(batch, 1, q, k) bool: causal over valid keys, and each query always sees itself.

    The diagonal keeps padding queries from having no key at all: some SDPA kernels give NaN for such rows,
    and NaN values would leak into real rows through masked-out but still multiplied keys."""
    k_len = valid.shape[1]
    q_pos = torch.arange(q_start, k_len, device=valid.device)[:, None]
    k_pos = torch.arange(k_len, device=valid.device)[None, :]
    return ((valid[:, None, :] & (k_pos <= q_pos)) | (k_pos == q_pos)).unsqueeze(1)


def _packed_dense_mask(ids: torch.Tensor, bos: int) -> torch.Tensor:
    doc = (ids == bos).cumsum(-1)
    causal = torch.ones(ids.shape[1], ids.shape[1], dtype=torch.bool, device=ids.device).tril()
    return ((doc[:, :, None] == doc[:, None, :]) & causal).unsqueeze(1)


def packed_block_mask(ids: torch.Tensor, bos: int = BOS):
    """flex_attention BlockMask for packed rows: causal inside each bos-started sequence, block-sparse."""
    from torch.nn.attention.flex_attention import create_block_mask

    doc = (ids == bos).cumsum(-1)

    def same_sequence_causal(b, h, q, kv):
        return (doc[b, q] == doc[b, kv]) & (kv <= q)

    return create_block_mask(
        same_sequence_causal,
        ids.shape[0],
        None,
        ids.shape[1],
        ids.shape[1],
        device=ids.device,
        _compile=ids.is_cuda,
    )


_compiled_flex = None


def _flex_attention(q, k, v, block_mask):
    """flex_attention is only fast compiled; compile it once per process (a no-op inside a compiled model)."""
    global _compiled_flex
    if _compiled_flex is None:
        from torch.nn.attention.flex_attention import flex_attention

        _compiled_flex = torch.compile(flex_attention, dynamic=False)
    return _compiled_flex(q, k, v, block_mask=block_mask)


# ----------------------------------------------------------------------------------------------- model


class Attention(nn.Module):
    def __init__(self, cfg: ArcTaskConfig):
        super().__init__()
        self.heads, self.head_dim = cfg.num_attention_heads, cfg.head_dim
        self.qkv = nn.Linear(cfg.hidden_size, 3 * cfg.hidden_size, bias=False)
        self.out = nn.Linear(cfg.hidden_size, cfg.hidden_size, bias=False)

    def forward(self, x, cos, sin, mask, cache: KVCache | None, layer: int) -> torch.Tensor:
        B, S, _ = x.shape
        q, k, v = self.qkv(x).view(B, S, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k = _rotate(q, cos, sin), _rotate(k, cos, sin)
        if cache is not None:
            k, v = cache.update(layer, k, v)
        if mask is not None and not isinstance(mask, torch.Tensor):  # a flex BlockMask
            # contiguous: strided views into flex inside a whole-model torch.compile gave wrong outputs (torch 2.13)
            y = _flex_attention(q.contiguous(), k.contiguous(), v.contiguous(), mask)
        else:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=mask is None)
        return self.out(y.transpose(1, 2).reshape(B, S, -1))


class SwiGLU(nn.Module):
    def __init__(self, cfg: ArcTaskConfig):
        super().__init__()
        self.gate_up = nn.Linear(cfg.hidden_size, 2 * cfg.intermediate_size, bias=False)
        self.down = nn.Linear(cfg.intermediate_size, cfg.hidden_size, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, gate = self.gate_up(x).chunk(2, dim=-1)
        return self.down(a * F.silu(gate))


class TaskBlock(nn.Module):
    def __init__(self, cfg: ArcTaskConfig):
        super().__init__()
        self.attn_norm = nn.RMSNorm(cfg.hidden_size, eps=cfg.rms_norm_eps)
        self.attn = Attention(cfg)
        self.mlp_norm = nn.RMSNorm(cfg.hidden_size, eps=cfg.rms_norm_eps)
        self.mlp = SwiGLU(cfg)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, h, cos, sin, mask, cache, layer) -> torch.Tensor:
        h = h + self.drop(self.attn(self.attn_norm(h), cos, sin, mask, cache, layer))
        return h + self.drop(self.mlp(self.mlp_norm(h)))


def _per_token(ids: torch.Tensor | int | None, like: torch.Tensor) -> torch.Tensor:
    """Task or view ids given per row (batch,), per token (batch, seq) or as one int -> (batch, seq)."""
    if ids is None:
        ids = 0
    if not isinstance(ids, torch.Tensor):
        return torch.full_like(like, int(ids))
    ids = ids.to(like.device)
    return ids[:, None].expand_as(like) if ids.dim() == 1 else ids


class ArcTaskForCausalLM(PreTrainedModel):
    """The task-embedding transformer. `attn_backend` ("sdpa" | "flex") is a runtime choice, not saved."""

    config_class = ArcTaskConfig
    base_model_prefix = "arc_task"
    main_input_name = "input_ids"
    _no_split_modules = ["TaskBlock"]

    def __init__(self, config: ArcTaskConfig):
        super().__init__(config)
        d = config.hidden_size
        self.embed_tokens = nn.Embedding(config.vocab_size, d)
        self.embed_tasks = nn.Embedding(config.num_tasks, d)
        self.embed_views = nn.Embedding(config.num_views, d)
        self.drop = nn.Dropout(config.dropout)
        self.layers = nn.ModuleList(TaskBlock(config) for _ in range(config.num_hidden_layers))
        self.norm = nn.RMSNorm(d, eps=config.rms_norm_eps)
        self.lm_head = nn.Linear(d, config.vocab_size, bias=False)
        self.attn_backend = "sdpa"
        self.post_init()

    def _init_weights(self, module: nn.Module) -> None:
        std = self.config.initializer_range
        if isinstance(module, nn.Linear | nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=std)
        elif isinstance(module, nn.RMSNorm):
            nn.init.ones_(module.weight)

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embed_tokens

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.embed_tokens = value

    def add_tasks(self, n: int) -> range:
        """Append n task rows (for test-time training on new tasks); old rows are kept bit for bit.

        New rows start at the mean of the old ones: an 'average task' is a better start than noise."""
        old = self.embed_tasks.weight.data
        if n <= 0:
            return range(old.shape[0], old.shape[0])
        table = nn.Embedding(old.shape[0] + n, old.shape[1], device=old.device, dtype=old.dtype)
        with torch.no_grad():
            table.weight[: old.shape[0]] = old
            table.weight[old.shape[0] :] = old.mean(0)
        self.embed_tasks = table
        self.config.num_tasks = table.num_embeddings
        return range(old.shape[0], table.num_embeddings)

    def new_cache(self, batch: int, max_len: int) -> KVCache:
        c, w = self.config, self.lm_head.weight
        return KVCache(
            c.num_hidden_layers, batch, c.num_attention_heads, max_len, c.head_dim, w.device, w.dtype
        )

    def forward(
        self,
        input_ids: torch.Tensor,
        task_ids: torch.Tensor | int,
        view_ids: torch.Tensor | int | None = None,
        attention_mask: torch.Tensor | None = None,
        grid_pos: torch.Tensor | None = None,
        packed: bool = False,
        block_mask=None,
        cache: KVCache | None = None,
        labels: torch.Tensor | None = None,
        **_: Any,
    ) -> CausalLMOutput:
        """Logits for every position (and the mean next-token loss over labels != -100 when given).

        packed: rows hold several sequences, each starting with bos (attention stays inside each; pass a
        prebuilt flex `block_mask` to build it outside a compiled region). attention_mask: (batch, seq) with
        0 on left padding. cache: decode incrementally; then `grid_pos` must be given for the new tokens
        unless they hold a whole prompt. task_ids / view_ids: per row, per token, or one int.
        """
        c = self.config
        if grid_pos is None:
            grid_pos = token_positions(input_ids, c)
        cos, sin = rotary_tables(grid_pos, c.head_dim, c.rope_theta)
        h = self.embed_tokens(input_ids)
        if c.task_embedding:
            h = h + self.embed_tasks(_per_token(task_ids, input_ids))
        h = self.drop(h + self.embed_views(_per_token(view_ids, input_ids)))
        mask = self._mask(input_ids, attention_mask, packed, block_mask, cache)
        for i, layer in enumerate(self.layers):
            h = layer(h, cos, sin, mask, cache, i)
        if cache is not None:
            cache.length += input_ids.shape[1]
        logits = self.lm_head(self.norm(h))
        loss = None
        if labels is not None:
            loss = next_token_loss(logits, labels) / (labels[:, 1:] != IGNORE).sum().clamp(min=1)
        return CausalLMOutput(loss=loss, logits=logits)

    def _mask(self, ids, attention_mask, packed, block_mask, cache):
        """None (plain causal), a dense bool mask, or a flex BlockMask."""
        if cache is not None:
            start, end = cache.length, cache.length + ids.shape[1]
            cache.valid[:, start:end] = True if attention_mask is None else attention_mask.bool()
            return _padded_causal_mask(cache.valid[:, :end], start)
        if packed:
            if block_mask is not None:
                return block_mask
            if self.attn_backend == "flex":
                return packed_block_mask(ids, self.config.bos_token_id)
            return _packed_dense_mask(ids, self.config.bos_token_id)
        if attention_mask is not None:
            return _padded_causal_mask(attention_mask.bool(), 0)
        return None


def next_token_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Summed cross-entropy of predicting labels[t + 1] at position t (IGNORE labels left out)."""
    return next_token_losses(logits, labels).sum()


def next_token_losses(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The cross-entropy of each position t predicting labels[t + 1], flattened (0 where IGNORE): the
    training log sums it by data source."""
    return F.cross_entropy(
        logits[:, :-1].flatten(0, 1).float(), labels[:, 1:].flatten(), ignore_index=IGNORE, reduction="none"
    )


AutoConfig.register(MODEL_TYPE, ArcTaskConfig, exist_ok=True)
AutoModelForCausalLM.register(ArcTaskConfig, ArcTaskForCausalLM, exist_ok=True)


# ----------------------------------------------------------------------------------------- save / load


def save_task_model(
    model: ArcTaskForCausalLM, index: TaskIndex, path: str | Path, info: dict[str, Any]
) -> Path:
    """A model directory: HF weights and config, the compact tokenizer, arcsub.json and task_index.json."""
    from arcsub.core.encode import build_compact_tokenizer
    from arcsub.core.modeldir import save_model

    if len(index) != model.config.num_tasks:
        raise ValueError(f"task index has {len(index)} tasks, the model {model.config.num_tasks} rows")
    return save_model(model, build_compact_tokenizer(), path, {"format": "task", **info}, extra=index.save)


def load_task_model(
    path: str | Path, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32
) -> tuple[ArcTaskForCausalLM, TaskIndex]:
    from arcsub.core.modeldir import check_model_dir, quiet_hf_progress

    p = check_model_dir(path)
    index = TaskIndex.load(p)
    cfg = AutoConfig.from_pretrained(str(p), local_files_only=True)
    if cfg.model_type != MODEL_TYPE:
        raise ArcDataError(f"{p}: a {cfg.model_type!r} model, not a task model (use `arcsub predict`)")
    with quiet_hf_progress():
        model = ArcTaskForCausalLM.from_pretrained(str(p), local_files_only=True, dtype=dtype)
    if len(index) != model.config.num_tasks:
        raise ArcDataError(
            f"{p}: task_index.json has {len(index)} tasks, the model {model.config.num_tasks} rows"
        )
    return model.to(device), index
