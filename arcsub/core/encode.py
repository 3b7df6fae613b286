"""Grids <-> text <-> token ids: grid encoders, the compact tokenizer, prompt builders and the answer parser.

A sequence is built from *segments* (text, trained-on flag) so that every tokenizer - our compact one or a
pretrained model's - sees the same text, and the loss mask follows the grid boundaries exactly. Sequences that
do not fit `max_len` drop demonstration pairs, never part of a grid.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from arcsub.core.data import MAX_SIDE, Grid, Task

# --------------------------------------------------------------------------------------------- grid encoders


class GridEncoder(Protocol):
    def encode(self, grid: Grid) -> str: ...
    def decode(self, text: str) -> Grid | None: ...


def _digit_rows(text: str) -> Grid | None:
    """Parse newline-separated rows of digits; None unless they form a valid grid."""
    rows = [r for r in text.split("\n") if r != ""]
    if not rows or len(rows) > MAX_SIDE:
        return None
    width = len(rows[0])
    if width == 0 or width > MAX_SIDE or any(len(r) != width or not r.isdigit() for r in rows):
        return None
    if not all(r.isascii() for r in rows):
        return None
    return np.frombuffer("".join(rows).encode("ascii"), dtype=np.uint8).reshape(len(rows), width) - ord("0")


class RowsEncoder:
    """One digit per cell, one newline per row (ARChitects; one token per cell in our tokenizer and Qwen's)."""

    def encode(self, grid: Grid) -> str:
        g = np.asarray(grid, dtype=np.uint8)
        return "".join("".join(map(str, row)) + "\n" for row in g.tolist())

    def decode(self, text: str) -> Grid | None:
        if not text.endswith("\n"):
            return None
        return _digit_rows(text)


class ShapeNumberedEncoder:
    """ironbar's style for pretrained tokenizers: the shape first, then numbered rows in a code block."""

    def encode(self, grid: Grid) -> str:
        g = np.asarray(grid, dtype=np.uint8)
        rows = "".join(f"{i + 1} {''.join(map(str, r))}\n" for i, r in enumerate(g.tolist()))
        return f"```grid shape: {g.shape[0]}x{g.shape[1]}\n{rows}```\n"

    def decode(self, text: str) -> Grid | None:
        m = re.fullmatch(r"```grid shape: (\d+)x(\d+)\n((?:\d+ \d+\n)+)```\n?", text)
        if not m:
            return None
        h, w = int(m.group(1)), int(m.group(2))
        lines = m.group(3).splitlines()
        if len(lines) != h or any(line.split(" ")[0] != str(i + 1) for i, line in enumerate(lines)):
            return None
        grid = _digit_rows("\n".join(line.split(" ")[1] for line in lines))
        return grid if grid is not None and grid.shape == (h, w) else None


ENCODERS: dict[str, GridEncoder] = {"rows": RowsEncoder(), "shape-numbered": ShapeNumberedEncoder()}

# ------------------------------------------------------------------------------------------ prompt formats


@dataclass(frozen=True)
class PromptFormat:
    """How a task is laid out as text: the grid encoder and the markers around grids."""

    grid: str = "rows"
    predict: str = "P"  # opens an output-prediction sequence
    generate: str = "G"  # opens an input-generation sequence
    input: str = "I"
    output: str = "O"

    @property
    def encoder(self) -> GridEncoder:
        return ENCODERS[self.grid]


FORMATS: dict[str, PromptFormat] = {
    "compact": PromptFormat(),
    "text": PromptFormat(
        grid="shape-numbered",
        predict="Find the rule from the examples and apply it to the last input.\n",
        generate="Generate a new input grid like the ones below.\n",
        input="input:\n",
        output="output:\n",
    ),
}

# -------------------------------------------------------------------------------------------- tokenization

COMPACT_CHARS = "0123456789\nIOPG"
PAD, BOS, EOS = "<pad>", "<bos>", "<eos>"
COMPACT_VOCAB: dict[str, int] = {c: i for i, c in enumerate(COMPACT_CHARS)} | {
    PAD: len(COMPACT_CHARS),
    BOS: len(COMPACT_CHARS) + 1,
    EOS: len(COMPACT_CHARS) + 2,
}


def build_compact_tokenizer():
    """Our grid tokenizer as a transformers PreTrainedTokenizerFast: one token per character, 19 tokens.

    Saved with `save_pretrained`, it loads with AutoTokenizer (and vLLM) unchanged.
    """
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel(vocab=dict(COMPACT_VOCAB), unk_token=PAD))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    tok.decoder = decoders.Fuse()
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=BOS, eos_token=EOS, pad_token=PAD, clean_up_tokenization_spaces=False
    )
    fast.model_max_length = 8192
    return fast


def is_compact(tokenizer) -> bool:
    vocab = tokenizer.get_vocab()
    return len(vocab) == len(COMPACT_VOCAB) and all(vocab.get(k) == v for k, v in COMPACT_VOCAB.items())


class Codec:
    """Text <-> token ids for one tokenizer; a numpy lookup table for the compact vocabulary (no per-char Python)."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.compact = is_compact(tokenizer)
        self.bos_id = tokenizer.bos_token_id
        self.eos_id = tokenizer.eos_token_id
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else self.eos_id
        if self.compact:
            self._lut = np.full(256, -1, dtype=np.int32)
            for c, i in COMPACT_VOCAB.items():
                if len(c) == 1:
                    self._lut[ord(c)] = i
            self._chars = np.array([c if len(c) == 1 else "" for c in COMPACT_VOCAB], dtype=object)

    @property
    def vocab_size(self) -> int:
        return len(self.tokenizer)

    def ids(self, text: str) -> np.ndarray:
        if self.compact:
            out = self._lut[np.frombuffer(text.encode("ascii", "replace"), dtype=np.uint8)]
            if (out < 0).any():
                raise ValueError(f"text has characters outside the compact vocabulary: {text!r}")
            return out
        return np.asarray(self.tokenizer(text, add_special_tokens=False)["input_ids"], dtype=np.int32)

    def text(self, ids: Sequence[int] | np.ndarray) -> str:
        """Decode ids, stopping at the first eos; special tokens dropped."""
        ids = [int(i) for i in ids]
        if self.eos_id in ids:
            ids = ids[: ids.index(self.eos_id)]
        if self.compact:
            return "".join(COMPACT_CHARS[i] for i in ids if 0 <= i < len(COMPACT_CHARS))
        return self.tokenizer.decode(ids, skip_special_tokens=True)


# ---------------------------------------------------------------------------------------- prompt building


@dataclass
class Example:
    """One tokenized sequence: ids, a loss mask (True where the model is trained to predict the token),
    and the prompt length (the answer starts there)."""

    ids: np.ndarray
    mask: np.ndarray
    prompt_len: int
    kept_pairs: int

    def __len__(self) -> int:
        return len(self.ids)


Segment = tuple[str, bool]


def output_from_examples(
    task: Task, test_index: int, fmt: PromptFormat, n_train: int, loss_on: str = "test"
) -> list[Segment]:
    """Segments for 'train pairs + test input -> test output'. loss_on: 'test' | 'outputs' | 'outputs-after-first'."""
    enc = fmt.encoder
    segs: list[Segment] = [(fmt.predict, False)]
    for j, pair in enumerate(task.train[:n_train]):
        train_on = loss_on == "outputs" or (loss_on == "outputs-after-first" and j > 0)
        segs += [
            (fmt.input + enc.encode(pair.input) + fmt.output, False),
            (enc.encode(pair.output), train_on),
        ]
    test = task.test[test_index]
    segs.append((fmt.input + enc.encode(test.input) + fmt.output, False))
    segs.append((enc.encode(test.output) if test.output is not None else "", True))
    return segs


def input_from_inputs(
    task: Task, test_index: int, fmt: PromptFormat, n_train: int, loss_on: str = "test"
) -> list[Segment]:
    """Segments for Omni-ARC's 'inputs -> a new input': the inputs of the task, the last one trained on."""
    enc = fmt.encoder
    segs: list[Segment] = [(fmt.generate, False)]
    for pair in task.train[:n_train]:
        segs.append((fmt.input, False))
        segs.append((enc.encode(pair.input), loss_on != "test"))
    segs.append((fmt.input, False))
    segs.append((enc.encode(task.test[test_index].input), True))
    return segs


PROMPTS: dict[str, Callable[..., list[Segment]]] = {
    "output-from-examples": output_from_examples,
    "input-from-inputs": input_from_inputs,
}


def segments_to_example(segments: list[Segment], codec: Codec, with_answer: bool = True) -> Example:
    """Tokenize segments one by one (so masks follow segment boundaries): bos, the prompt, then the answer
    (the last segment) and eos. With with_answer=False only bos and the prompt: the input for generation."""
    parts, masks = [np.array([codec.bos_id], dtype=np.int32)], [np.zeros(1, dtype=bool)]

    def add(text: str, train_on: bool) -> None:
        ids = codec.ids(text)
        parts.append(ids)
        masks.append(np.full(len(ids), train_on, dtype=bool))

    for text, train_on in segments[:-1]:
        add(text, train_on)
    prompt_len = sum(len(p) for p in parts)
    if with_answer:
        answer, train_on = segments[-1]
        add(answer, train_on)
        parts.append(np.array([codec.eos_id], dtype=np.int32))
        masks.append(np.array([train_on], dtype=bool))
    return Example(np.concatenate(parts).astype(np.int32), np.concatenate(masks), prompt_len, 0)


def build_example(
    task: Task,
    codec: Codec,
    fmt: PromptFormat = FORMATS["compact"],
    test_index: int = 0,
    prompt: str = "output-from-examples",
    max_len: int = 8192,
    with_answer: bool = True,
    loss_on: str = "test",
) -> Example | None:
    """Tokenize one task/test input, dropping demonstration pairs from the end until it fits max_len.

    Returns None when even one demonstration pair does not fit: the caller warns and falls back.
    """
    builder = PROMPTS[prompt]
    n = len(task.train)
    while n >= 1:
        ex = segments_to_example(builder(task, test_index, fmt, n, loss_on), codec, with_answer)
        # at inference the answer still has to fit: reserve room for the largest plausible output
        need = len(ex) if with_answer else len(ex) + _answer_budget(task, test_index, fmt, codec)
        if need <= max_len:
            ex.kept_pairs = n
            return ex
        n -= 1
    return None


def _answer_budget(task: Task, test_index: int, fmt: PromptFormat, codec: Codec) -> int:
    """Tokens to leave for the answer at inference: the largest grid among the task's outputs and test input."""
    grids = [p.output for p in task.train] + [task.test[test_index].input]
    return max(len(codec.ids(fmt.encoder.encode(g))) for g in grids) + 1


def parse_answer(
    ids_or_text: Sequence[int] | np.ndarray | str, codec: Codec, fmt: PromptFormat
) -> Grid | None:
    """Generated tokens -> grid, or None for anything that is not a valid grid (never raises)."""
    try:
        text = ids_or_text if isinstance(ids_or_text, str) else codec.text(ids_or_text)
        return fmt.encoder.decode(text)
    except (ValueError, IndexError, UnicodeError):
        return None
