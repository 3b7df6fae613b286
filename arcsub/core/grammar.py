"""Decoding pieces both model families use on the compact vocabulary: the grid grammar (a vectorised logits mask
that only lets a model write well-formed grids), the SDPA backends for decoding, and how often a decode loop
may wait for the GPU.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from arcsub.core.data import MAX_SIDE
from arcsub.core.encode import COMPACT_VOCAB, Codec

SYNC_EVERY = 8  # decode steps between checks for finished rows (each check waits for the GPU)


@dataclass
class GridState:
    """Per-row state of the grid grammar: cells in the current row, first row's width (0 until it ends),
    completed rows."""

    row_len: torch.Tensor
    width: torch.Tensor
    rows: torch.Tensor

    def select(self, idx: torch.Tensor) -> GridState:
        return GridState(self.row_len[idx], self.width[idx], self.rows[idx])


class GridConstraint:
    """A vectorised logits mask that only lets the compact tokenizer write well-formed grids.

    Digits, '\\n' and eos only; eos only right after a '\\n' (and not first); no '\\n' first or twice in a
    row; every row as wide as the first (a '\\n' is forced at that width and forbidden before it); at most
    30 rows and 30 columns. Every sequence it allows parses as a grid, and every grid's encoding is allowed.
    """

    def __init__(
        self,
        vocab_size: int,
        digit_ids: Sequence[int],
        newline_id: int,
        eos_id: int,
        device: torch.device | str = "cpu",
        max_side: int = MAX_SIDE,
    ):
        dev = torch.device(device)
        self.device = dev
        self.max_side = max_side
        self.newline_id = newline_id
        self.eos_id = eos_id
        self.digit = torch.zeros(vocab_size, dtype=torch.bool, device=dev)
        self.digit[list(digit_ids)] = True
        self.newline = torch.zeros(vocab_size, dtype=torch.bool, device=dev)
        self.newline[newline_id] = True
        self.eos = torch.zeros(vocab_size, dtype=torch.bool, device=dev)
        self.eos[eos_id] = True

    @classmethod
    def for_codec(
        cls, codec: Codec, vocab_size: int, device: torch.device | str = "cpu"
    ) -> GridConstraint | None:
        """The grammar for the compact tokenizer; None for other tokenizers (a grid spans arbitrary tokens)."""
        if not codec.compact:
            return None
        digits = [COMPACT_VOCAB[str(d)] for d in range(10)]
        return cls(vocab_size, digits, COMPACT_VOCAB["\n"], codec.eos_id, device)

    def start(self, batch: int) -> GridState:
        z = torch.zeros(batch, dtype=torch.long, device=self.device)
        return GridState(z, z.clone(), z.clone())

    def allowed(self, s: GridState) -> torch.Tensor:
        """(batch, vocab) bool: the tokens each row may write next."""
        limit = torch.where(s.width > 0, s.width, torch.full_like(s.width, self.max_side))
        digit_ok = (s.rows < self.max_side) & (s.row_len < limit)
        newline_ok = (s.row_len > 0) & ((s.width == 0) | (s.row_len == s.width))
        eos_ok = (s.row_len == 0) & (s.rows > 0)
        return (
            (self.digit[None] & digit_ok[:, None])
            | (self.newline[None] & newline_ok[:, None])
            | (self.eos[None] & eos_ok[:, None])
        )

    def advance(self, s: GridState, tokens: torch.Tensor) -> GridState:
        is_digit = self.digit[tokens]
        is_newline = tokens == self.newline_id
        width = torch.where(is_newline & (s.width == 0), s.row_len, s.width)
        row_len = torch.where(is_newline, torch.zeros_like(s.row_len), s.row_len + is_digit.long())
        return GridState(row_len, width, s.rows + is_newline.long())


def decoding_sdpa_backends(device: torch.device) -> contextlib.AbstractContextManager:
    """On CUDA, keep SDPA off cuDNN: it builds a new cuDNN graph for every new key length, i.e. at every
    decoded token (measured ~5 ms of CPU per attention call on an H200, 10x the step itself)."""
    if device.type != "cuda":
        return contextlib.nullcontext()
    from torch.nn.attention import SDPBackend, sdpa_kernel

    return sdpa_kernel([SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH])
