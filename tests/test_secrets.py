"""Secrets never reach disk : `--hub_token` stays in the live arguments for the push and nowhere
else: not in what Trainer pickles into every checkpoint (training_args.bin, via torch.save), not in any other
pickle or copy written out, not in the arguments' text forms that get logged. Fast: no training run (the end-to-end
check is test_failures_train.py::test_the_hub_token_never_reaches_the_disk)."""

from __future__ import annotations

import copy
import io
import pickle

import torch

from arena_preference.training_arguments import ArenaTrainingArguments, parse_args

TOKEN = "hf_NotARealTokenButSecret"


def make_args(tmp_path) -> ArenaTrainingArguments:
    _, _, args = parse_args(["--model_name_or_path", "embedded:tiny-deberta", "--train_file", "x.jsonl",
                             "--output_dir", str(tmp_path / "out"), "--hub_token", TOKEN])
    return args


def test_the_hub_token_is_not_in_training_args_bin_but_stays_for_the_push(tmp_path):
    args = make_args(tmp_path)
    buffer = io.BytesIO()
    torch.save(args, buffer)  # exactly what Trainer._save writes as checkpoint-*/training_args.bin
    assert TOKEN.encode() not in buffer.getvalue()
    assert TOKEN.encode() not in pickle.dumps(args, protocol=pickle.HIGHEST_PROTOCOL)
    assert args.hub_token == TOKEN  # the live object still pushes with it
    rebuilt = copy.copy(args)  # rebuilt from the same state that pickling writes, without unpickling anything
    assert rebuilt.hub_token is None and rebuilt.learning_rate == args.learning_rate  # the rest survives


def test_the_hub_token_is_not_in_the_text_forms_of_the_arguments(tmp_path):
    args = make_args(tmp_path)
    for text in (str(args), repr(args), args.to_json_string(), str(args.to_dict()), str(args.to_sanitized_dict())):
        assert TOKEN not in text
