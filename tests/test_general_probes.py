"""General prompts and IFEval-style rows: schema of IFEval's input_data.jsonl, kwargs accepted by lm-eval's
checkers, compatible instruction sets, determinism, and checkers passing / failing hand-written responses.
Everything here runs offline: no check uses nltk tokenizer data."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from talr.demo import general_probes as gp
from talr.paths import data_dir

IFEVAL_INPUT = data_dir() / "ifeval" / "input_data.jsonl"


@pytest.fixture(scope="module")
def registry():
    return gp.ifeval_registry()


@pytest.fixture(scope="module")
def rows(registry):
    return gp.generate_ifeval_rows(400, seed=0)


def test_general_prompts():
    rows = gp.general_prompt_rows()
    assert 55 <= len(rows) <= 70
    assert [set(row) for row in rows] == [{"id", "prompt"}] * len(rows)
    assert len({row["id"] for row in rows}) == len(rows)
    assert len({row["prompt"] for row in rows}) == len(rows)
    assert all(row["prompt"].strip() == row["prompt"] and len(row["prompt"]) > 15 for row in rows)
    kinds = {row["id"].split("-")[0] for row in rows}
    assert {"explain", "rewrite", "math", "code", "advice", "summary"} <= kinds


def test_registry_import_skips_nltk_download():
    # A fresh interpreter, so the import really happens here; network access would show as nltk's error lines.
    code = ("import nltk, socket\n"
            "def refuse(*args, **kwargs): raise AssertionError('network access')\n"
            "socket.socket.connect = refuse\n"
            "download = nltk.download\n"
            "from talr.demo.general_probes import ifeval_registry\n"
            "assert ifeval_registry().INSTRUCTION_DICT\n"
            "assert nltk.download is download\n")
    src = str(Path(gp.__file__).resolve().parents[2])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [src, os.environ.get("PYTHONPATH")]))}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "punkt_tab" not in result.stdout and "nltk_data" not in result.stderr


def test_rows_schema(rows):
    keys = [row["key"] for row in rows]
    assert keys == list(range(100_000, 100_000 + len(rows)))
    for row in rows:
        assert list(row) == ["key", "prompt", "instruction_id_list", "kwargs"]
        assert isinstance(row["prompt"], str) and row["prompt"]
        assert 1 <= len(row["instruction_id_list"]) == len(row["kwargs"]) <= 3
        assert len(set(row["instruction_id_list"])) == len(row["instruction_id_list"])
        for kwargs in row["kwargs"]:
            assert isinstance(kwargs, dict)
            # lm-eval drops falsy kwargs before build_description, and the real file has no None values.
            assert all(value for value in kwargs.values())
        json.loads(json.dumps(row))  # one JSON line per row, like input_data.jsonl


def test_kwargs_accepted_and_descriptions_in_prompt(rows, registry):
    for row in rows:
        for instruction_id, kwargs in zip(row["instruction_id_list"], row["kwargs"]):
            checker = registry.INSTRUCTION_DICT[instruction_id](instruction_id)
            description = checker.build_description(**kwargs)
            assert description in row["prompt"], (instruction_id, row["prompt"])
            if instruction_id == "combination:repeat_prompt":
                assert row["prompt"] == f"{kwargs['prompt_to_repeat']}\n{description}"


def test_no_conflicting_instructions(rows, registry):
    conflicts = registry.INSTRUCTION_CONFLICTS
    extra = {frozenset(pair) for pair in gp._EXTRA_CONFLICTS}
    for row in rows:
        ids = row["instruction_id_list"]
        for i, a in enumerate(ids):
            for b in ids[i + 1:]:
                assert b not in conflicts[a] and a not in conflicts[b], (a, b)
                assert frozenset((a, b)) not in extra, (a, b)


def test_keyword_instructions_use_distinct_words(rows):
    for row in rows:
        words = []
        for kwargs in row["kwargs"]:
            words += kwargs.get("keywords", []) + kwargs.get("forbidden_words", [])
            words += [kwargs[key] for key in ("keyword", "first_word") if key in kwargs]
        assert len(words) == len(set(words)), row


def test_every_instruction_is_used(rows, registry):
    used = {instruction_id for row in rows for instruction_id in row["instruction_id_list"]}
    assert used == set(registry.INSTRUCTION_DICT)


def test_deterministic():
    first = gp.generate_ifeval_rows(30, seed=5)
    assert first == gp.generate_ifeval_rows(30, seed=5)
    assert gp.generate_ifeval_rows(12, seed=5) == first[:12]
    assert first != gp.generate_ifeval_rows(30, seed=6)
    with pytest.raises(ValueError):
        gp.generate_ifeval_rows(-1)


def _checker(registry, rows, instruction_id):
    row = next(r for r in rows if instruction_id in r["instruction_id_list"])
    kwargs = row["kwargs"][row["instruction_id_list"].index(instruction_id)]
    checker = registry.INSTRUCTION_DICT[instruction_id](instruction_id)
    checker.build_description(**kwargs)
    return checker, kwargs


def test_checkers_pass_and_fail_hand_written_responses(rows, registry):
    checker, _ = _checker(registry, rows, "punctuation:no_comma")
    assert checker.check_following("Plants need light and water to grow.")
    assert not checker.check_following("Plants need light, water, and soil.")

    checker, kwargs = _checker(registry, rows, "startend:end_checker")
    assert checker.check_following(f"Here is my answer. {kwargs['end_phrase']}")
    assert not checker.check_following(f"{kwargs['end_phrase']} Here is my answer.")

    checker, _ = _checker(registry, rows, "detectable_format:title")
    assert checker.check_following("<<A Day at the Zoo>>\nThe keepers arrive early.")
    assert not checker.check_following("A Day at the Zoo\nThe keepers arrive early.")

    checker, _ = _checker(registry, rows, "startend:quotation")
    assert checker.check_following('"Bread needs flour, water and time."')
    assert not checker.check_following("Bread needs flour, water and time.")

    checker, kwargs = _checker(registry, rows, "keywords:existence")
    assert checker.check_following("This text mentions " + " and ".join(kwargs["keywords"]) + ".")
    assert not checker.check_following("This text mentions nothing relevant.")

    checker, kwargs = _checker(registry, rows, "keywords:forbidden_words")
    assert checker.check_following("A neutral sentence about nothing in particular.")
    assert not checker.check_following(f"This one says {kwargs['forbidden_words'][0]}.")

    checker, kwargs = _checker(registry, rows, "detectable_content:postscript")
    assert checker.check_following(f"Main text.\n{kwargs['postscript_marker']} See you soon.")
    assert not checker.check_following("Main text without a postscript.")

    checker, kwargs = _checker(registry, rows, "combination:repeat_prompt")
    assert checker.check_following(f"{kwargs['prompt_to_repeat']}\nHere is the answer.")
    assert not checker.check_following("Here is the answer.")


def test_lm_eval_strict_scoring_runs_on_generated_rows(rows):
    from lm_eval.tasks.ifeval import utils

    row = next(r for r in rows if r["instruction_id_list"] == ["punctuation:no_comma"])
    example = utils.InputExample(key=row["key"], instruction_id_list=row["instruction_id_list"], prompt=row["prompt"],
                                 kwargs=row["kwargs"])
    assert utils.test_instruction_following_strict(example, "No commas appear in this reply.").follow_all_instructions
    assert not utils.test_instruction_following_strict(example, "Yes, a comma.").follow_all_instructions


@pytest.mark.skipif(not IFEVAL_INPUT.is_file(), reason=f"{IFEVAL_INPUT} not present")
def test_schema_matches_real_ifeval_file(rows):
    real = [json.loads(line) for line in IFEVAL_INPUT.read_text(encoding="utf-8").splitlines() if line.strip()]
    assert {tuple(row) for row in real} == {tuple(rows[0])}
    real_keys = {}
    for row in real:
        for instruction_id, kwargs in zip(row["instruction_id_list"], row["kwargs"]):
            real_keys.setdefault(instruction_id, set()).add(frozenset(kwargs))
    for row in rows:
        for instruction_id, kwargs in zip(row["instruction_id_list"], row["kwargs"]):
            assert frozenset(kwargs) in real_keys[instruction_id], (instruction_id, kwargs)
            for key, value in kwargs.items():
                real_value = next(k[key] for r in real for i, k in zip(r["instruction_id_list"], r["kwargs"])
                                  if i == instruction_id and key in k)
                assert type(value) is type(real_value), (instruction_id, key)
    assert not {row["key"] for row in rows} & {row["key"] for row in real}
