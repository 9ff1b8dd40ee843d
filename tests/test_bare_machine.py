"""A trained model, pushed to the Hub, used on a machine that has only torch and transformers.

The user's machine is simulated by a second venv holding torch and transformers and nothing else (no project, no
onnx, no datasets, no peft): `ARENA_BARE_PYTHON` names its interpreter. `.ci/run` builds it and sets the variable;
elsewhere the test skips without it, but under CI (`ARENA_CI=1`) a missing bare venv is a failure, not a skip.

    python3 -m venv /tmp/bare && /tmp/bare/bin/pip install torch==2.13.0 transformers
    ARENA_BARE_PYTHON=/tmp/bare/bin/python python -m pytest tests/test_bare_machine.py
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hub_server import HubServer

ROOT = Path(__file__).resolve().parents[1]
BATTLES = [
    {"prompt": "What is 2+2?", "response_a": "4", "response_b": "The answer is 5."},
    {"prompt": ["Hi", "Write a poem"], "response_a": ["Hello!", "Roses are red"], "response_b": ["Hey", "No."]},
    {"prompt": "Explain a hash table.", "response_a": "A map.",
     "response_b": "## Hash table\n- keys are **hashed**\n- buckets"},
]
# What the bare machine must not have: if any of these imports there, the test proves nothing.
NOT_ON_A_BARE_MACHINE = ("arena_preference", "configuration_arena", "modeling_arena", "pipeline_arena",
                         "precision_arena", "encoding_arena", "arena_dataset", "onnx", "onnxruntime", "peft",
                         "datasets", "accelerate", "evaluate", "gradio")

# Runs in the bare interpreter: every way a user loads the pushed model, each scoring BATTLES in PyTorch fp32.
BARE_CLIENT = """
import importlib.util, json, sys
from transformers import AutoModel, AutoModelForSequenceClassification, AutoTokenizer, pipeline

repo, battles, absent = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
present = [name for name in absent if importlib.util.find_spec(name) is not None]
labels = ("winner_model_a", "winner_model_b", "winner_tie")

def probs(results):
    return [[r[k] for k in labels] for r in results]

model = AutoModel.from_pretrained(repo, trust_remote_code=True)
classifier = AutoModelForSequenceClassification.from_pretrained(repo, trust_remote_code=True)
tokenizer = AutoTokenizer.from_pretrained(repo)
by_id = pipeline("arena-preference", model=repo, trust_remote_code=True, precision="fp32")
by_object = pipeline("arena-preference", model=model, tokenizer=tokenizer, precision="fp32")
default = pipeline("arena-preference", model=repo, trust_remote_code=True)
print(json.dumps({
    "present": present,
    "classes": [type(model).__name__, type(classifier).__name__, type(by_id).__name__, type(by_object).__name__],
    "modules": sorted({type(model).__module__.rsplit(".", 1)[-1], type(by_object).__module__.rsplit(".", 1)[-1]}),
    "by_id": probs(by_id(battles)),
    "by_object": probs(by_object(battles)),
    "classifier_same_weights": all(
        (p.detach() == q.detach()).all().item()
        for p, q in zip(model.state_dict().values(), classifier.state_dict().values())),
    "default": probs(default(battles)),
    "default_precision": default.precision,
}))
"""


def bare_python() -> str:
    python = os.environ.get("ARENA_BARE_PYTHON")
    if python:
        return python
    if os.environ.get("ARENA_CI"):
        pytest.fail("ARENA_CI is set but ARENA_BARE_PYTHON is not: .ci/run builds the bare venv and sets it")
    pytest.skip("no bare venv: set ARENA_BARE_PYTHON to a python with only torch and transformers (.ci/run does)")


def test_a_pushed_model_loads_and_scores_the_same_with_only_torch_and_transformers(tmp_path):
    from conftest import PRECISION_TOLERANCE

    from pipeline_arena import ArenaPreferencePipeline  # noqa: F401  (registers the task in this process)
    from transformers import pipeline

    python = bare_python()
    data = tmp_path / "train.jsonl"
    rows = [{"prompt": f"Tell me about topic {i}", "response_a": "Short." if i % 2 else "A longer, **bold** answer.",
             "response_b": f"Words on topic {i}.", "winner": ("model_a", "model_b", "tie")[i % 3]} for i in range(12)]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "out"
    with HubServer() as hub:
        env = {**os.environ, **hub.client_env(), "HF_HOME": str(tmp_path / "home")}
        run = subprocess.run(
            [sys.executable, str(ROOT / "train.py"), "--model_name_or_path", "embedded:tiny-deberta", "--max_length",
             "64", "--train_file", str(data), "--do_train", "--max_steps", "2", "--output_dir", str(out),
             "--disable_tqdm", "true", "--push_to_hub", "--hub_model_id", "user/arena-bare"],
            env=env, capture_output=True, text=True, timeout=300)
        assert run.returncode == 0, run.stderr[-3000:]

        # The bare interpreter, outside the clone (its working directory is on sys.path), with a fresh Hub cache.
        bare_env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
        bare_env.update(hub.client_env(), HF_HOME=str(tmp_path / "bare-home"))
        loaded = subprocess.run(
            [python, "-c", BARE_CLIENT, "user/arena-bare", json.dumps(BATTLES), json.dumps(NOT_ON_A_BARE_MACHINE)],
            cwd=tmp_path, env=bare_env, capture_output=True, text=True, timeout=300)
    assert loaded.returncode == 0, loaded.stderr[-3000:]
    answer = json.loads(loaded.stdout.strip().splitlines()[-1])
    assert answer["present"] == [], f"the bare venv is not bare: {answer['present']}"
    assert answer["classes"] == ["ArenaModel", "ArenaModel", "ArenaPreferencePipeline", "ArenaPreferencePipeline"]
    assert answer["modules"] == ["modeling_arena", "pipeline_arena"]  # the remote-code copies, not the project
    assert answer["classifier_same_weights"]
    # model=<object> and model=<repo id> run the same arithmetic: identical probabilities.
    assert answer["by_object"] == answer["by_id"]

    # The same probabilities as in the project's venv, from the folder train.py wrote.
    here = pipeline("arena-preference", model=str(out), trust_remote_code=True, precision="fp32")
    expected = [[r[k] for k in ("winner_model_a", "winner_model_b", "winner_tie")] for r in here(BATTLES)]
    for got, want in zip(answer["by_id"], expected):
        assert got == pytest.approx(want, abs=1e-6)
    # "auto" there resolves to what the bare CPU allows (no onnxruntime: fp32, or bf16 with bf16 units).
    assert answer["default_precision"] in ("fp32", "bf16")
    tolerance = PRECISION_TOLERANCE[answer["default_precision"]]
    for got, want in zip(answer["default"], expected):
        assert got == pytest.approx(want, abs=tolerance)
