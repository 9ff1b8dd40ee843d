"""Shared fixtures: tiny models (embedded:tiny-deberta) and a few hand-made battles."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# ONNX exports of the tests' tiny models (precision "auto" on AVX2 CPUs) go to a folder of this run, not ~/.cache.
if "ARENA_ONNX_CACHE" not in os.environ:
    import tempfile

    os.environ["ARENA_ONNX_CACHE"] = tempfile.mkdtemp(prefix="arena-onnx-tests-")

SHARED_DATA = ROOT.parent / "shared" / "data"
# Synthetic battles in the Kaggle layout that the repo carries, for tests that need a data file on any clone
# (tests/data/README.md); the real ../shared/data files are used as well where present (CI).
SAMPLE_DATA = ROOT / "tests" / "data" / "arena_sample.csv"
# Modules of this project; a "fresh environment" subprocess blocks them (see run_without_project).
PROJECT_MODULES = (
    "configuration_arena", "modeling_arena", "encoding_arena", "pipeline_arena", "precision_arena", "arena_dataset",
    "arena_preference", "train", "app", "leaderboard",
)
# How far each precision may move a tiny model's probabilities from PyTorch fp32 (max absolute difference). Tests of
# exactness pin "fp32"; tests of the default path ("auto") allow what `auto` resolved to on this CPU, which
# ARENA_AUTO_PRECISION can make bf16, onnx-fp32 or fp32 anywhere (.ci/run runs the suite's precision tests under each).
PRECISION_TOLERANCE = {"fp32": 1e-6, "onnx-fp32": 1e-5, "bf16": 2e-2, "fp16": 1e-2, "int8": 5e-2}

BATTLES = [
    {"prompt": "What is 2+2?", "response_a": "4", "response_b": "The answer is 5.", "label": 0},
    {"prompt": ["Hi", "Write a poem"], "response_a": ["Hello!", "Roses are red"], "response_b": ["Hey", None],
     "label": 0},
    {"prompt": "Explain a hash table.", "response_a": "A map.",
     "response_b": "## Hash table\n- keys are **hashed**\n- buckets\n```py\nd = {}\n```", "label": 1},
    {"prompt": "Capital of France?", "response_a": "Paris", "response_b": "Paris", "label": 2},
]


@pytest.fixture(autouse=True)
def _log_handlers_follow_captured_stderr():
    """Point logging's stream handlers at this test's sys.stderr.

    train.main() (logging.basicConfig) and transformers create StreamHandlers bound to the sys.stderr of the moment;
    under capsys that stream is closed after its test, and a later warning would print a logging traceback instead.
    """
    import logging

    import transformers

    loggers = [logging.getLogger(), transformers.utils.logging.get_logger()]
    for handler in [h for lg in loggers for h in lg.handlers]:
        if type(handler) is logging.StreamHandler and handler.stream not in (sys.stdout, sys.__stdout__):
            handler.stream = sys.stderr  # not setStream(): it flushes the old stream, which may be closed
    yield


@pytest.fixture(scope="session")
def tiny_tokenizer():
    from arena_preference.model_loading import tiny_deberta_tokenizer

    return tiny_deberta_tokenizer()


@pytest.fixture()
def tiny_model():
    from arena_preference.model_loading import load_model

    model, _ = load_model("embedded:tiny-deberta", max_length=64)
    return model


@pytest.fixture()
def tiny_batch(tiny_tokenizer):
    from encoding_arena import ArenaCollator, encode_battles

    enc = encode_battles([b["prompt"] for b in BATTLES], [b["response_a"] for b in BATTLES],
                         [b["response_b"] for b in BATTLES], tiny_tokenizer, 64)
    rows = [{k: enc[k][i] for k in enc} | {"labels": b["label"]} for i, b in enumerate(BATTLES)]
    return ArenaCollator(tiny_tokenizer.pad_token_id)(rows)


def run_without_project(code: str, cwd: Path, timeout: int = 300):
    """Run `code` in a fresh interpreter, in `cwd`, where importing any module of this project fails."""
    import subprocess

    blocker = "import sys\n" + "".join(f"sys.modules[{m!r}] = None\n" for m in PROJECT_MODULES)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run([sys.executable, "-c", blocker + code], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)
