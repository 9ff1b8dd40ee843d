"""ArenaPreferencePipeline: `pipeline("arena-preference", model=..., trust_remote_code=True)`.

Remote-code module: imports only torch, transformers, the standard library and its sibling modules (copied next to
config.json by `save_pretrained`, with `custom_pipelines` written into config.json).

>>> judge = pipeline("arena-preference", model="out/arena-minilm", trust_remote_code=True)  # doctest: +SKIP
>>> judge({"prompt": "What is 2+2?", "response_a": "4", "response_b": "5"})  # doctest: +SKIP
{'winner_model_a': 0.41, 'winner_model_b': 0.31, 'winner_tie': 0.28, 'label': 'winner_model_a'}
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import torch
from transformers import AutoModel, Pipeline
from transformers.pipelines import PIPELINE_REGISTRY

try:  # loaded as remote code (a package made of the saved directory)
    from .configuration_arena import check_max_length
    from .encoding_arena import (BATTLE_KEYS, ArenaCollator, check_tokenizer, encode_battle, encode_battles,
                                 normalise_battle, with_relevance)
    from .precision_arena import prepare_for
except ImportError:  # imported from the project checkout / installed distribution
    from configuration_arena import check_max_length
    from encoding_arena import (BATTLE_KEYS, ArenaCollator, check_tokenizer, encode_battle, encode_battles,
                                normalise_battle, with_relevance)
    from precision_arena import prepare_for
# A stream is read in windows of this many batches; each window is sorted by length, run, and put back in input
# order. Bigger windows pad less but hold more battles in memory (the window is all a stream ever holds).
SORT_WINDOW_BATCHES = 16


class ArenaPreferencePipeline(Pipeline):
    """Which of two answers will a person prefer? One battle in, `{winner_model_a, winner_model_b, winner_tie,
    label}` out (plus `reward_a`, `reward_b` with the rank head).

    Inputs (each battle goes through `encoding_arena.encode_battles`, as in training):
        - a dict `{"prompt", "response_a", "response_b"}` whose values are strings, lists of turns (`None` turns
          are read as empty), or Kaggle JSON-list strings such as `'["Hi", null]'`; other keys are ignored;
        - keyword form: `judge(prompt=..., response_a=..., response_b=...)`;
        - a list or tuple of such dicts (returns a list), a generator or a `datasets.Dataset` (returns an iterator
          that streams: only a window of `batch_size * 16` battles is held at a time).

    Options (at construction or per call):
        swap_tta (`bool`, defaults to `False`): also score the battle with A and B exchanged and average the two
            probability vectors (mapped back to the original order); rewards are averaged the same way.
        max_length (`int`, defaults to `config.max_length`): token budget per tower.
        batch_size (`int`, defaults to 1): battles per forward pass. Within each window battles are sorted by
            length so a batch pads little; results come back in input order.
        return_logits (`bool`, defaults to `False`): add `"logits"` (3 floats whose softmax is the probabilities;
            with `swap_tta`, the log of the averaged probabilities).
        style_control (`bool`, defaults to `False`): add `"style_controlled": {"winner_model_a", "winner_model_b",
            "winner_tie"}`, the probabilities with the style terms' contribution removed (length, markdown,
            empty answers, refusals; `ArenaOutput.content_logits`): what the model thinks of the content alone,
            as if both answers had the same style. With `swap_tta`, averaged over both orders too.

    Construction only:
        precision (`str`, defaults to `"auto"`): the encoder's arithmetic, `precision_arena.prepare_for`:
            bf16 on CPUs with AMX or AVX512-BF16 and on GPUs; on other CPUs "onnx-fp32" (the encoder run by ONNX
            Runtime, exported once and cached; when onnxruntime is installed) or else PyTorch "fp32"; or forced
            "fp32", "onnx-fp32", "bf16", "fp16", "int8" (CPU). The one it runs in is `self.precision`. All but
            PyTorch fp32 run a copy of the encoder made once here; `self.model` keeps its own weights (what
            `save_pretrained` saves), and training it later does not reach that copy: build the pipeline again.
    """

    _load_tokenizer = True
    _load_processor = False
    _load_image_processor = False
    _load_feature_extractor = False

    def __init__(self, model: Any, *args: Any, precision: str = "auto", **kwargs: Any) -> None:
        # A folder whose config.json names another model type loads as that model (e.g. a BertModel), which would
        # fail later on a missing config field; say what is wrong instead.
        model_type = getattr(getattr(model, "config", None), "model_type", None)
        if model_type != "arena-preference":
            raise ValueError(
                f"the arena-preference pipeline needs an arena-preference model (ArenaModel); got "
                f"{type(model).__name__} with config model_type {model_type!r}"
            )
        super().__init__(model, *args, **kwargs)
        check_tokenizer(self.model.config, self.tokenizer, getattr(self.model.config, "_name_or_path", "") or "model")
        # the model that runs (self.model is what is saved) and the precision it runs in
        self._runner, self.precision = prepare_for(self.model, precision, self.device)

    # ----------------------------------------------------------------------------------------------------- calling
    def __call__(self, inputs: Any = None, *args: Any, batch_size: int | None = None, **kwargs: Any) -> Any:
        """Score one battle (a dict or keyword form), a list/tuple (-> list), or any other iterable of battles such
        as a generator or a `datasets.Dataset` (-> an iterator, read lazily)."""
        given = [key for key in BATTLE_KEYS if key in kwargs]
        if given:
            if inputs is not None:
                raise ValueError(f"pass a battle either as the first argument or as keywords, not both ({given})")
            inputs = {key: kwargs.pop(key) for key in given}
        if inputs is None:
            raise ValueError("no battle given: pass a dict with prompt, response_a, response_b (or those keywords)")
        inputs = _from_pandas(inputs)
        if isinstance(inputs, Mapping):
            return super().__call__(_normalised(inputs, 0), *args, **kwargs)
        if isinstance(inputs, (str, bytes)) or not isinstance(inputs, Iterable):
            raise ValueError(f"battle 0: expected a dict with keys {BATTLE_KEYS}, got {type(inputs).__name__}")
        if (isinstance(inputs, (list, tuple)) and len(inputs) == len(BATTLE_KEYS)
                and all(isinstance(item, str) for item in inputs)):
            # judge(("What is 2+2?", "4", "5")): a list or tuple is several battles, so each string would fail alone
            raise ValueError(f"got a {type(inputs).__name__} of {len(inputs)} strings; a list or tuple holds several "
                             f"battles: pass one battle as a dict with keys {BATTLE_KEYS} (or as those keywords)")
        # Streams bypass Pipeline.__call__, whose batching knows only torch Datasets, lists and generators.
        preprocess, forward, postprocess = self._sanitize_parameters(**kwargs)
        results = self.get_iterator(
            inputs, 0, batch_size if batch_size is not None else (self._batch_size or 1), {**self._preprocess_params, **preprocess},
            {**self._forward_params, **forward}, {**self._postprocess_params, **postprocess},
        )
        return list(results) if isinstance(inputs, (list, tuple)) or _is_numpy_array(inputs) else results

    def _sanitize_parameters(
        self,
        swap_tta: bool | None = None,
        max_length: int | None = None,
        return_logits: bool | None = None,
        truncation: str | None = None,
        style_control: bool | None = None,
        **unknown: Any,
    ) -> tuple[dict, dict, dict]:
        if unknown:
            raise TypeError(f"arena-preference pipeline: unknown option(s) {sorted(unknown)}")
        preprocess, forward, postprocess = {}, {}, {}
        if max_length is not None:
            preprocess["max_length"] = check_max_length(max_length, self.model.config.encoder_config)
        if truncation is not None:
            preprocess["truncation"] = truncation
        if swap_tta is not None:
            forward["swap_tta"] = flag(swap_tta, "swap_tta")
        if return_logits is not None:
            postprocess["return_logits"] = flag(return_logits, "return_logits")
        if style_control is not None:
            forward["style_control"] = postprocess["style_control"] = flag(style_control, "style_control")
        return preprocess, forward, postprocess

    # ------------------------------------------------------------------------------------------ one battle at a time
    def preprocess(
        self, battle: Mapping[str, Any], max_length: int | None = None, truncation: str | None = None
    ) -> dict[str, torch.Tensor]:
        """One battle -> a batch of one: `input_ids_a/b`, `attention_mask_a/b` `(1, L)`, `style_a/b` `(1, F)`."""
        battle = _normalised(battle, 0)
        features = encode_battle(battle, self.tokenizer, *self._encoding(max_length, truncation), **self._joint())
        features |= {key: value[0] for key, value in with_relevance(
            {}, *([battle[k]] for k in BATTLE_KEYS), self.tokenizer, self.model.config).items()}
        return self._collate([features])

    def _forward(
        self, model_inputs: dict[str, torch.Tensor], swap_tta: bool = False, style_control: bool = False
    ) -> dict[str, torch.Tensor]:
        """A collated batch of B battles -> `probs` `(B, 3)`, `logits` `(B, 3)`, `rewards` `(B, 2)` (rank head) and,
        with `style_control`, `style_controlled` `(B, 3)` (the content-only probabilities)."""
        inputs = {k: v for k, v in model_inputs.items() if k != "labels"}
        batch = inputs["input_ids_a"].shape[0]
        if swap_tta:  # both orders in one forward pass: rows B..2B-1 are the battles with A and B exchanged
            inputs = _stack_with_swapped(inputs, self.tokenizer.pad_token_id or 0)
        was_training = self._runner.training
        self._runner.eval()  # predictions never use dropout, even from a model handed over mid-training
        try:
            output = self._runner(**inputs)
        finally:
            self._runner.train(was_training)
        logits = output.logits.float()
        rewards = output.rewards.float() if output.rewards is not None else None
        content = output.content_logits.float().softmax(-1) if style_control else None
        probs = logits.softmax(-1)
        if not bool(torch.isfinite(probs).all()):
            # Never a NaN labelled as a winner: the weights or config.json (e.g. its temperature) are broken.
            raise ValueError(f"the model gave non-finite probabilities (config.temperature="
                             f"{self.model.config.temperature}); its weights or config.json are broken")
        if swap_tta:
            swapped_back = probs[batch:][:, [1, 0, 2]]
            probs = (probs[:batch] + swapped_back) / 2
            logits = probs.log()
            if rewards is not None:
                rewards = (rewards[:batch] + rewards[batch:].flip(-1)) / 2
            if content is not None:
                content = (content[:batch] + content[batch:][:, [1, 0, 2]]) / 2
        return {"probs": probs, "logits": logits, "rewards": rewards, "style_controlled": content}

    def postprocess(
        self, model_outputs: dict[str, torch.Tensor], return_logits: bool = False, style_control: bool = False
    ) -> dict[str, Any]:
        """Outputs of a batch of one -> `{winner_model_a, winner_model_b, winner_tie, label[, reward_a, reward_b,
        logits, style_controlled]}`."""
        labels = [self.model.config.id2label[i] for i in range(3)]
        probs = model_outputs["probs"][0].tolist()
        result: dict[str, Any] = dict(zip(labels, probs))
        result["label"] = labels[max(range(3), key=probs.__getitem__)]
        if model_outputs.get("rewards") is not None:
            result["reward_a"], result["reward_b"] = model_outputs["rewards"][0].tolist()
        if return_logits:
            result["logits"] = model_outputs["logits"][0].tolist()
        if style_control:
            result["style_controlled"] = dict(zip(labels, model_outputs["style_controlled"][0].tolist()))
        return result

    @torch.inference_mode()
    def score_responses(self, prompts: Sequence[Any], responses: Sequence[Any], batch_size: int = 16) -> list[float]:
        """Reward of each (prompt, response) with the rank head, for reward-model use.

        `prompts[i]` and `responses[i]` are strings, lists of turns or Kaggle JSON-list strings; returns one float per
        pair. Inputs go through the same `encode_battles` as training (the response is read as both sides).
        """
        if len(prompts) != len(responses):
            raise ValueError(f"got {len(prompts)} prompts and {len(responses)} responses; expected as many")
        max_length, truncation = self._encoding()
        scores: list[float] = []
        for start in range(0, len(prompts), batch_size):
            p, r = prompts[start : start + batch_size], responses[start : start + batch_size]
            enc = encode_battles(p, r, r, self.tokenizer, max_length, truncation)
            batch = self._collate([{"input_ids_a": ids, "input_ids_b": ids, "style_a": s, "style_b": s}
                                   for ids, s in zip(enc["input_ids_a"], enc["style_a"])])
            style = batch.get("style_a")
            scores += self._runner.reward(batch["input_ids_a"].to(self.device), batch["attention_mask_a"].to(self.device),
                                        None if style is None else style.to(self.device)).float().tolist()
        return scores

    def get_inference_context(self):
        # inference_mode, not no_grad: no version counters or views kept for autograd (bench/throughput.py)
        return torch.inference_mode

    # ------------------------------------------------------------------------------------- streams, length-sorted
    def get_iterator(
        self,
        inputs: Iterable[Mapping[str, Any]],
        num_workers: int,
        batch_size: int,
        preprocess_params: dict,
        forward_params: dict,
        postprocess_params: dict,
    ) -> Iterator[dict[str, Any]]:
        """Results of a stream of battles, in input order.

        transformers' own batching collates items as they come; here each window of `batch_size * 16` battles is
        encoded in one tokenizer call, sorted by tower length, run in batches of `batch_size`, and put back in
        input order, so padding stays small and memory stays bounded by the window.
        """
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size={batch_size!r}: expected a positive int")
        return self._stream(iter(inputs), batch_size, preprocess_params, forward_params, postprocess_params)

    def _stream(self, battles, batch_size, preprocess_params, forward_params, postprocess_params):
        encoding = self._encoding(**preprocess_params)
        start = 0
        while True:
            window = list(itertools.islice(battles, batch_size * SORT_WINDOW_BATCHES))
            if not window:
                return
            features = self._encode_window(window, start, *encoding)
            order = sorted(range(len(window)), key=lambda i: -max(len(features[i]["input_ids_a"]),
                                                                  len(features[i]["input_ids_b"])))
            results: list[dict[str, Any] | None] = [None] * len(window)
            for first in range(0, len(order), batch_size):
                rows = order[first : first + batch_size]
                outputs = self.forward(self._collate([features[i] for i in rows]), **forward_params)
                for j, i in enumerate(rows):
                    one = {k: (v[j : j + 1] if v is not None else None) for k, v in outputs.items()}
                    results[i] = self.postprocess(one, **postprocess_params)
            yield from results
            start += len(window)

    def _encode_window(self, window: list, start: int, max_length: int, truncation: str) -> list[dict[str, Any]]:
        battles = [_normalised(battle, start + i) for i, battle in enumerate(window)]
        columns = [[b[k] for b in battles] for k in BATTLE_KEYS]
        enc = encode_battles(*columns, self.tokenizer, max_length, truncation, **self._joint())
        enc = with_relevance(enc, *columns, self.tokenizer, self.model.config)
        return [{key: values[i] for key, values in enc.items()} for i in range(len(window))]

    # ------------------------------------------------------------------------------------------------------ helpers
    def _encoding(self, max_length: int | None = None, truncation: str | None = None) -> tuple[int, str]:
        config = self.model.config
        return (max_length or config.max_length, truncation or config.truncation)

    def _joint(self) -> dict[str, bool]:
        """The encoding's `cross_encoder` flag for a cross-encoder (the joint sequences of both orders); nothing for
        a dual tower (models saved before the option existed are dual towers)."""
        return {"cross_encoder": True} if getattr(self.model.config, "cross_encoder", False) else {}

    def _collate(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        batch = ArenaCollator(pad_token_id=self.tokenizer.pad_token_id or 0)(features)
        if not self.model.config.style_features:
            batch = {k: v for k, v in batch.items() if not k.startswith("style")}
        return batch


_FLAG_WORDS = {"true": True, "yes": True, "on": True, "1": True, "false": False, "no": False, "off": False, "0": False}


def flag(value: Any, name: str) -> bool:
    """An on/off option: a bool, 0/1, or a word such as "true"/"no" (as configs and command lines give them).
    Anything else is refused: `bool("no")` would be True."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _FLAG_WORDS:
        return _FLAG_WORDS[value.strip().lower()]
    raise ValueError(f"{name}={value!r}: expected True or False")


def _normalised(battle: Any, index: int) -> dict[str, list[str]]:
    """`encoding_arena.normalise_battle`, its error prefixed with the battle's index in the call. NumPy arrays of
    turns (a `datasets.Dataset` in numpy format, a DataFrame cell) are read as the lists they hold."""
    if isinstance(battle, Mapping):
        battle = {key: value.tolist() if _is_numpy_array(value) else value for key, value in battle.items()}
    elif isinstance(battle, (list, tuple)) or _is_numpy_array(battle):  # e.g. [("What is 2+2?", "4", "5"), ...]
        raise ValueError(f"battle {index}: expected a dict with keys {BATTLE_KEYS}, got a {type(battle).__name__} of "
                         f"{len(battle)} values; write each battle as a dict, e.g. {{'prompt': ..., 'response_a': ..., "
                         "'response_b': ...}")
    try:
        return normalise_battle(battle)
    except ValueError as err:
        raise ValueError(f"battle {index}: {err}") from None


def _is_numpy_array(value: Any) -> bool:
    # By module name: this remote-code module imports only torch and transformers (numpy comes with torch, but
    # transformers' import scan would list it as a requirement of the model).
    return type(value).__module__ == "numpy" and type(value).__name__ == "ndarray"


def _from_pandas(inputs: Any) -> Any:
    """A pandas DataFrame -> its rows as a list of dicts (iterating a DataFrame gives its column names); a Series
    (one row) -> a dict. Detected by type, without importing pandas (a remote-code module must not need it)."""
    module, name = type(inputs).__module__.split(".")[0], type(inputs).__name__
    if module == "datasets" and name.endswith("DatasetDict"):  # a dict of splits, which would read as one battle
        raise ValueError(f"got a datasets.{name} with splits {list(inputs)}; pass one split of battles, e.g. "
                         f"judge(dataset[{next(iter(inputs), 'test')!r}])")
    if module != "pandas" or name not in ("DataFrame", "Series"):
        return inputs
    if name == "Series":
        missing = [key for key in BATTLE_KEYS if key not in inputs.index]
        if missing:  # e.g. judge(frame["prompt"]): a column, not a row
            raise ValueError(f"the pandas Series has no {missing}; a Series is read as one battle (a DataFrame row "
                             f"with {list(BATTLE_KEYS)}); pass the DataFrame to score its rows")
        return _pandas_nulls(inputs.to_dict())
    missing = [key for key in BATTLE_KEYS if key not in inputs.columns]
    if missing:
        raise ValueError(f"the pandas DataFrame has no column(s) {missing}; expected one battle per row in columns "
                         f"{list(BATTLE_KEYS)}, got columns {[str(c) for c in inputs.columns][:20]}")
    return [_pandas_nulls(row) for row in inputs.to_dict(orient="records")]


def _pandas_nulls(row: dict) -> dict:
    """pandas stores a missing cell (None in the data) as NaN; read it as the null it stands for, an empty turn, as
    a null cell of a CSV, JSON or parquet file is."""
    return {key: None if isinstance(value, float) and value != value else value for key, value in row.items()}


def _stack_with_swapped(inputs: dict[str, torch.Tensor], pad_token_id: int) -> dict[str, torch.Tensor]:
    """`(B, ...)` tensors of both sides -> `(2B, ...)`: the battles, then the same battles with A and B exchanged.
    The towers may differ in length; pad both to the longer one first (the model would anyway)."""
    length = max(inputs["input_ids_a"].shape[1], inputs["input_ids_b"].shape[1])
    padded = {}
    for key, value in inputs.items():
        if key.startswith(("input_ids", "attention_mask")) and value.shape[1] < length:
            fill = 0 if key.startswith("attention_mask") else pad_token_id
            value = torch.nn.functional.pad(value, (0, length - value.shape[1]), value=fill)
        padded[key] = value
    stacked = {}
    for key, value in padded.items():
        if key[-2:] not in ("_a", "_b"):  # shared by both sides (the relevance terms' prompt)
            stacked[key] = torch.cat([value, value])
            continue
        other = key[:-1] + ("b" if key.endswith("a") else "a")
        stacked[key] = torch.cat([value, padded[other]])
    return stacked


PIPELINE_REGISTRY.register_pipeline("arena-preference", pipeline_class=ArenaPreferencePipeline, pt_model=AutoModel)

__all__ = ["ArenaPreferencePipeline", "BATTLE_KEYS"]
