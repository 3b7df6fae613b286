"""Grid <-> text <-> ids: round trips on real grids, the HF tokenizer agrees with the fast codec, prompts
drop whole pairs to fit, the parser never crashes."""

from __future__ import annotations

import numpy as np
import pytest
from transformers import AutoTokenizer

from arcsub.core.data import Pair, Task
from arcsub.core.encode import (
    COMPACT_VOCAB,
    ENCODERS,
    FORMATS,
    Codec,
    build_compact_tokenizer,
    build_example,
    parse_answer,
)


@pytest.fixture(scope="module")
def codec() -> Codec:
    return Codec(build_compact_tokenizer())


@pytest.mark.parametrize("name", sorted(ENCODERS))
def test_encoders_round_trip_real_grids(name, arc1_train):
    enc = ENCODERS[name]
    n = 0
    for task in list(arc1_train.values())[:100]:
        for p in task.train + task.test:
            for g in (p.input, p.output):
                back = enc.decode(enc.encode(g))
                assert back is not None and back.shape == g.shape and (back == g).all()
                n += 1
    assert n > 500


@pytest.mark.parametrize(
    "text",
    [
        "",
        "\n",
        "12\n3\n",
        "1a\n",
        "12",
        "12\n12",
        "```grid shape: 2x2\n1 12\n```\n",
        "9" * 31 + "\n",
        "\n\n\n",
    ],
)
def test_malformed_text_is_invalid_not_an_error(text, codec):
    assert ENCODERS["rows"].decode(text) is None
    assert ENCODERS["shape-numbered"].decode(text) is None
    assert parse_answer(text, codec, FORMATS["compact"]) is None


def test_shape_numbered_checks_declared_shape():
    enc = ENCODERS["shape-numbered"]
    assert enc.decode("```grid shape: 2x2\n1 12\n2 34\n```\n").tolist() == [[1, 2], [3, 4]]
    assert enc.decode("```grid shape: 3x2\n1 12\n2 34\n```\n") is None
    assert enc.decode("```grid shape: 2x2\n1 12\n3 34\n```\n") is None


def test_compact_tokenizer_saves_loads_and_matches_codec(tmp_path, arc1_train, codec):
    tok = build_compact_tokenizer()
    tok.save_pretrained(tmp_path)
    loaded = AutoTokenizer.from_pretrained(tmp_path, local_files_only=True)
    assert loaded.get_vocab() == COMPACT_VOCAB
    task = arc1_train["007bbfb7"]
    ex = build_example(task, Codec(loaded))
    text = loaded.decode(ex.ids.tolist())
    assert text.startswith("<bos>PI")
    assert loaded(text, add_special_tokens=False)["input_ids"] == ex.ids.tolist()
    assert (build_example(task, codec).ids == ex.ids).all()  # fast lookup path == HF tokenizer path


def test_example_mask_covers_exactly_the_test_output(arc1_train, codec):
    task = arc1_train["007bbfb7"]
    ex = build_example(task, codec)
    answer = ex.ids[ex.prompt_len :]
    assert answer[-1] == codec.eos_id
    assert ex.mask[ex.prompt_len :].all() and not ex.mask[: ex.prompt_len].any()
    grid = parse_answer(answer, codec, FORMATS["compact"])
    assert (grid == task.test[0].output).all()
    prompt = build_example(task, codec, with_answer=False)
    assert (prompt.ids == ex.ids[: ex.prompt_len]).all()


def test_loss_on_all_outputs_after_first(arc1_train, codec):
    task = arc1_train["007bbfb7"]
    out_cells = [p.output.size + p.output.shape[0] for p in task.train[1:]] + [
        task.test[0].output.size + task.test[0].output.shape[0] + 1
    ]
    ex = build_example(task, codec, loss_on="outputs-after-first")
    assert ex.mask.sum() == sum(out_cells)


def test_pairs_dropped_whole_to_fit(arc1_train, codec):
    task = arc1_train["007bbfb7"]
    full = build_example(task, codec)
    short = build_example(task, codec, max_len=len(full) - 1)
    assert short.kept_pairs == len(task.train) - 1 and len(short) < len(full)
    assert (
        parse_answer(short.ids[short.prompt_len :], codec, FORMATS["compact"]) == task.test[0].output
    ).all()
    # rows never cut: the text of the shortened prompt is the full one minus whole pairs
    one = build_example(task, codec, max_len=10)
    assert one is None


def test_input_generation_prompt(arc1_train, codec):
    task = arc1_train["007bbfb7"]
    ex = build_example(task, codec, prompt="input-from-inputs")
    text = codec.text(ex.ids[1:])
    assert text.startswith("G") and "O" not in text
    assert (parse_answer(ex.ids[ex.prompt_len :], codec, FORMATS["compact"]) == task.test[0].input).all()


def test_text_format_for_pretrained_tokenizers(codec):
    task = Task(
        "t",
        [Pair(np.array([[1, 2]], np.uint8), np.array([[2, 1]], np.uint8))],
        [Pair(np.array([[3, 4]], np.uint8), np.array([[4, 3]], np.uint8))],
    )
    from arcsub.core.encode import output_from_examples

    segs = output_from_examples(task, 0, FORMATS["text"], 1)
    text = "".join(s for s, _ in segs)
    assert "input:\n```grid shape: 1x2\n1 12\n```\noutput:\n```grid shape: 1x2\n1 21\n```\n" in text
    assert segs[-1] == ("```grid shape: 1x2\n1 43\n```\n", True)
