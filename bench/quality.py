"""Quality study on real votes: position-neutral, per source and leave-one-source-out.

    python bench/quality.py            # writes bench/results/quality.{md,json,png}; ~40 min on 2 CPU cores the
                                       # first time (two encoder passes), a few minutes from the cache

Data: ../shared/data/arena_dev.csv (3,519 real votes; the id's leading digit names the source: 1 Arena-140k
sample, 2 MT-Bench human judgments, 3 Auto-J, 4 PandaLM). The source is used here for evaluation only, never as a
model input. Optional extra training votes: ../shared/data/extra_hh_rlhf_harmless_dev.csv (no ties).

Protocol, the same for every recipe, in one run:
- grouped K-fold CV by prompt (the normalised first user turn: the same prompt appears in several rows);
- **position-neutral log loss** (the headline): every validation battle is scored in its own order and with A and
  B exchanged (labels exchanged too), and the two log losses are averaged. A model symmetric in A and B scores
  the same both ways; one that learned "B tends to win" gains in one order and pays in the other. The own-order
  log loss is kept beside it, labelled, because real data can carry a position skew;
- the out-of-fold position-neutral log loss per source;
- **leave-one-source-out**: train on three sources (minus any battle whose prompt also occurs in the fourth), score
  the fourth, position-neutral; against the symmetric class prior of the three training sources;
- baselines on the same rows: the symmetric class prior (P(A) = P(B)), a swap-augmented logistic regression on
  length features scored with swap averaging, and today's default (v0.x: concat head, position-aware) with swap
  test-time averaging, the reference the new default must beat.

Heads train on pooled towers of the frozen encoder (embedded:minilm-l6, max_length 512, latest_turns), computed
once by `encoder_features` and cached under ~/.cache/arena-quality: the mean of every layer (for multi-layer
pooling) and last-layer means of the last prompt turn and of the last answer (for prompt-vs-response relevance).
Every head is trained the way train.py's Trainer trains the default head (FROZEN_DEFAULTS: Adagrad, learning rate
0.1 decaying linearly to 0, weight decay 0.02 on weights, 10 epochs of batches of 32, gradients clipped at 1.0).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from arena_dataset import load_arena  # noqa: E402
from arena_preference.battle_transforms import prompt_group
from encoding_arena import STYLE_FEATURES, style_features  # noqa: E402
from modeling_arena import ArenaClassifyHead, ArenaRelevanceTerms, content_pair_loss, davidson_logits  # noqa: E402

DATA_DIR = ROOT.parent / "shared" / "data"
DEFAULT_DATA = DATA_DIR / "arena_dev.csv"
EXTRA_DATA = DATA_DIR / "extra_hh_rlhf_harmless_dev.csv"
METRIC_PATH = ROOT / "arena_preference" / "arena_metrics.py"  # the package's metric module
CACHE = Path(os.environ.get("ARENA_QUALITY_CACHE", Path.home() / ".cache" / "arena-quality"))
FEATURES_VERSION = "1"  # bump when encoder_features changes what it stores
SOURCES = {1: "Arena", 2: "MT-Bench", 3: "Auto-J", 4: "PandaLM"}
ENCODER, MAX_LENGTH, TRUNCATION = "embedded:minilm-l6", 512, "latest_turns"
# train.py's FROZEN_DEFAULTS, the Trainer's linear decay and gradient clipping
TRAINING = {"epochs": 10, "learning_rate": 0.1, "weight_decay": 0.02, "batch_size": 32, "max_grad_norm": 1.0}
N_COUNTS = sum(name.startswith("log_") for name in STYLE_FEATURES)
LENGTH_COLUMNS = [STYLE_FEATURES.index("log_chars"), STYLE_FEATURES.index("log_words")]
SWAP = [1, 0, 2]  # class ids after exchanging A and B


# ------------------------------------------------------------------------------------------------- the battles
@dataclass
class Battles:
    """Per-battle arrays (N rows), everything a recipe may read. `layers_*`: `(N, L + 1, H)` layer means of each
    tower; `prompt_*`, `response_*`: `(N, H)`; `style_*`: `(N, F)` current `STYLE_FEATURES`; `legacy_style_*`:
    `(N, 9)` the style features of today's default; `y`: `(N,)` class ids."""

    layers_a: np.ndarray
    layers_b: np.ndarray
    prompt_a: np.ndarray
    prompt_b: np.ndarray
    response_a: np.ndarray
    response_b: np.ndarray
    style_a: np.ndarray
    style_b: np.ndarray
    legacy_style_a: np.ndarray
    legacy_style_b: np.ndarray
    y: np.ndarray
    meta: dict = field(default_factory=dict)
    # relevance inputs: `(N, 2, H)` the prompt / each answer encoded on its own (whole, last turn;
    # `relevance_embeddings`, pooled as the towers), `(N, 3)` `encoding_arena.answer_flags` of each answer
    rel_prompt: np.ndarray | None = None
    rel_answer_a: np.ndarray | None = None
    rel_answer_b: np.ndarray | None = None
    flags_a: np.ndarray | None = None
    flags_b: np.ndarray | None = None

    def take(self, rows: np.ndarray) -> Battles:
        return Battles(**{k: v[rows] for k, v in self._arrays().items()})

    def swapped(self) -> Battles:
        """A and B exchanged, labels mirrored."""
        arrays = self._arrays()
        out = {k: arrays[k[:-1] + ("b" if k.endswith("a") else "a")] for k in arrays if k[-2:] in ("_a", "_b")}
        shared = {k: v for k, v in arrays.items() if k[-2:] not in ("_a", "_b") and k != "y"}
        return Battles(**out, **shared, y=np.asarray(SWAP)[self.y])

    def concat(self, other: Battles) -> Battles:
        mine, theirs = self._arrays(), other._arrays()
        return Battles(**{k: np.concatenate([mine[k], theirs[k]]) for k in mine})

    def _arrays(self) -> dict[str, np.ndarray]:
        return {k: v for k, v in self.__dict__.items() if k != "meta" and v is not None}

    def __len__(self) -> int:
        return len(self.y)


def legacy_style_features(turns: list[str]) -> list[float]:
    """The 9 style features of today's default (the code before the symmetric head), kept verbatim so the reference recipe
    is the one that shipped: log1p counts by regular expressions, plus an all-empty flag."""
    text = "\n".join(turns)
    counts = (
        len(text), len(text.split()), text.count("\n") + 1 if text else 0,
        len(re.findall(r"\n[ \t]*\n", text)),
        len(re.findall(r"^\s{0,3}#{1,6}\s", text, re.MULTILINE)),
        len(re.findall(r"^\s*(?:[-*+]|\d+[.)])\s+", text, re.MULTILINE)),
        len(re.findall(r"\*\*[^*\n]+\*\*|__[^_\n]+__", text)),
        len(re.findall(r"^\s*```", text, re.MULTILINE)) // 2,
    )
    return [math.log1p(c) for c in counts] + [float(not text.strip())]


def _last_span(ids: list[int], marker: list[int]) -> int:
    """Index just after the last occurrence of `marker` in `ids` (-1 when absent)."""
    n = len(marker)
    for i in range(len(ids) - n, -1, -1):
        if ids[i : i + n] == marker:
            return i + n
    return -1


def encoder_features(data, encoder, tokenizer, name: str) -> dict[str, np.ndarray]:
    """One frozen-encoder pass over both towers of every battle (encoding_arena.encode_battles, MAX_LENGTH,
    TRUNCATION), keeping what the experiments need:

    - `layers_a/b` `(N, L + 1, H)`: the mask-weighted mean of every hidden state (embeddings and each layer); the
      last one is the default pooled tower (`ArenaModel.encode`, pooling "mean");
    - `prompt_a/b`, `response_a/b` `(N, H)`: last-layer means over the last user turn and over the last answer
      (the tokens after the last "User:" and "Assistant:" markers), for prompt-vs-response relevance.
    Cached as .npz under ~/.cache/arena-quality, keyed by `name`, the data and this code's version.
    """
    from encoding_arena import ASSISTANT_MARKER, USER_MARKER, encode_battles

    content = json.dumps([list(data[k]) for k in ("id", "prompt", "response_a", "response_b")])
    key = hashlib.sha256(repr((content, MAX_LENGTH, TRUNCATION, FEATURES_VERSION, encoder.config.name_or_path)
                              ).encode()).hexdigest()[:16]
    path = CACHE / f"{name}-{key}.npz"
    if path.exists():
        return dict(np.load(path))
    CACHE.mkdir(parents=True, exist_ok=True)
    user, assistant = tokenizer([USER_MARKER, ASSISTANT_MARKER], add_special_tokens=False)["input_ids"]
    enc = encode_battles(data["prompt"], data["response_a"], data["response_b"], tokenizer, MAX_LENGTH, TRUNCATION)
    n, hidden, layers = len(data), encoder.config.hidden_size, encoder.config.num_hidden_layers + 1
    out = {f"{k}_{s}": np.zeros((n, layers, hidden) if k == "layers" else (n, hidden), np.float32)
           for k in ("layers", "prompt", "response") for s in "ab"}
    towers = sorted(((i, s, enc[f"input_ids_{s}"][i]) for i in range(n) for s in "ab"), key=lambda t: len(t[2]))
    encoder.eval()
    t0 = time.time()
    with torch.inference_mode():
        for start in range(0, len(towers), 16):
            batch = towers[start : start + 16]
            ids = torch.zeros((len(batch), max(len(t[2]) for t in batch)), dtype=torch.long)
            mask, prompt_mask, response_mask = torch.zeros_like(ids), torch.zeros_like(ids), torch.zeros_like(ids)
            for row, (_, _, seq) in enumerate(batch):
                ids[row, : len(seq)] = torch.tensor(seq)
                mask[row, : len(seq)] = 1
                r0 = _last_span(seq, assistant)
                p0 = _last_span(seq[: max(r0, 0)], user) if r0 > 0 else -1
                if r0 > 0 and p0 > 0:
                    prompt_mask[row, p0 : r0 - len(assistant)] = 1
                    response_mask[row, r0 : len(seq) - 1] = 1
                else:  # no markers found: both spans are the whole tower
                    prompt_mask[row, : len(seq)] = response_mask[row, : len(seq)] = 1
            states = encoder(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states
            means = torch.stack([_masked_mean(h, mask) for h in states], 1)
            pm, rm = _masked_mean(states[-1], prompt_mask), _masked_mean(states[-1], response_mask)
            for row, (i, s, _) in enumerate(batch):
                out[f"layers_{s}"][i], out[f"prompt_{s}"][i], out[f"response_{s}"][i] = means[row], pm[row], rm[row]
            if start % 1600 == 0:
                print(f"{name}: {start}/{len(towers)} towers, {time.time() - t0:.0f} s", flush=True)
    np.savez(path, **out)
    return out



def relevance_embeddings(data, encoder, tokenizer, name: str) -> dict[str, np.ndarray]:
    """Each battle's `encoding_arena.RELEVANCE_TEXTS` (whole prompt, whole answers, last user turn, last answers),
    each encoded on its own as `encoding_arena.encode_relevance` tokenizes them: `rel_last` `(N, 6, H)` the
    last layer's mask mean (what a sentence-transformers user computes), `rel_mean3` `(N, 6, H)` the mean of the
    last 3 layers' mask means (the towers' pooling). The last-turn slots of single-turn battles are copies of the
    whole-text slots, as in `ArenaModel.encode_relevance`. Identical token sequences are encoded once. Cached like
    `encoder_features`."""
    from encoding_arena import encode_relevance

    content = json.dumps([list(data[k]) for k in ("id", "prompt", "response_a", "response_b")])
    key = hashlib.sha256(repr((content, "relevance", FEATURES_VERSION, encoder.config.name_or_path)
                              ).encode()).hexdigest()[:16]
    path = CACHE / f"{name}-relevance-{key}.npz"
    if path.exists():
        return dict(np.load(path))
    CACHE.mkdir(parents=True, exist_ok=True)
    slots = encode_relevance(data["prompt"], data["response_a"], data["response_b"], tokenizer)["relevance_ids"]
    unique = sorted({tuple(seq) for battle in slots for seq in battle if seq}, key=len)
    hidden = encoder.config.hidden_size
    last, mean3 = np.zeros((len(unique), hidden), np.float32), np.zeros((len(unique), hidden), np.float32)
    encoder.eval()
    t0 = time.time()
    with torch.inference_mode():
        for start in range(0, len(unique), 32):
            batch = unique[start : start + 32]
            ids = torch.zeros((len(batch), len(batch[-1])), dtype=torch.long)
            mask = torch.zeros_like(ids)
            for row, seq in enumerate(batch):
                ids[row, : len(seq)], mask[row, : len(seq)] = torch.tensor(seq), 1
            states = encoder(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states
            last[start : start + len(batch)] = _masked_mean(states[-1], mask).numpy()
            mean3[start : start + len(batch)] = _masked_mean(torch.stack(states[-3:]).mean(0), mask).numpy()
            if start % 3200 == 0:
                print(f"{name} relevance: {start}/{len(unique)} texts, {time.time() - t0:.0f} s", flush=True)
    row_of = {seq: i for i, seq in enumerate(unique)}
    index = np.array([[row_of[tuple(seq if seq else battle[k - 3])] for k, seq in enumerate(battle)]
                      for battle in slots])
    out = {"rel_last": last[index], "rel_mean3": mean3[index]}
    np.savez(path, **out)
    return out



# ---------------------------------------------------------------------------------------------- off-topic pairs
OFFTOPIC_KINDS = ("random", "nearest")
OFFTOPIC_PAIRS = 600  # prompts per kind: +-1.2 points of accuracy at 90%


def _columns(data) -> dict[str, list]:
    """The columns the off-topic pairs read, as lists (a datasets.Dataset reads a whole column per `data[key]`)."""
    return {k: list(data[k]) for k in ("id", "prompt", "response_a", "response_b", "label")}


def _answer_side(data, i: int) -> str | None:
    """The answer of battle i that stands for "the answer to this prompt": the winner's, else A's; the other one
    where it is empty; None where both are."""
    label = int(data["label"][i])
    order = ("b", "a") if label == 1 else ("a", "b")
    for side in order:
        if any(turn.strip() for turn in data[f"response_{side}"][i]):
            return side
    return None


def offtopic_pairs(data, groups: list[str], folds: list[tuple[np.ndarray, np.ndarray]], prompt_vectors: np.ndarray,
                   kind: str, limit: int = OFFTOPIC_PAIRS, seed: int = 0) -> list[tuple[int, str, int, str, int]]:
    """Label-free content checks from held-out prompts: `(i, side, j, side_j, fold)` = battle i's prompt with its
    own answer (`_answer_side`) against the answer of battle j, j from ANOTHER prompt of the same validation fold
    (so neither prompt was seen in training) with as many turns: a random one ("random") or the one whose whole
    prompt is closest by cosine of `prompt_vectors` `(N, H)` ("nearest": the hard case, often a paraphrase of the
    same task). One battle per prompt (its first), `limit` prompts drawn at random (seeded)."""
    data = _columns(data)
    rng = np.random.default_rng(seed)
    unit = prompt_vectors / np.maximum(np.linalg.norm(prompt_vectors, axis=1, keepdims=True), 1e-8)
    turns = np.array([len(p) for p in data["prompt"]])
    pairs = []
    for fold, (_, rows) in enumerate(folds):
        first: dict[str, int] = {}
        for i in rows:
            if groups[i] not in first and _answer_side(data, int(i)) is not None:
                first[groups[i]] = int(i)
        reps = np.array(sorted(first.values()))
        answer_of = {int(j): data[f"response_{_answer_side(data, int(j))}"][j] for j in reps}
        for i in reps:
            side = _answer_side(data, i)
            answer = data[f"response_{side}"][i]
            candidates = [j for j in reps if j != i and turns[j] == turns[i] and answer_of[int(j)] != answer]
            if not candidates:
                continue
            if kind == "random":
                j = int(rng.choice(candidates))
            else:
                j = int(max(candidates, key=lambda c: float(unit[c] @ unit[i])))
            pairs.append((int(i), side, j, _answer_side(data, j), fold))
    keep = np.sort(rng.choice(len(pairs), size=min(limit, len(pairs)), replace=False))
    return [pairs[k] for k in keep]


def offtopic_dataset(data, pairs: list[tuple[int, str, int, str, int]]):
    """The off-topic battles as a dataset in the arena schema: prompt i, response_a = its own answer, response_b =
    the other prompt's answer, label 0 (A)."""
    from datasets import Dataset

    data = _columns(data)
    return Dataset.from_dict({
        "id": [int(data["id"][i]) for i, *_ in pairs],
        "prompt": [data["prompt"][i] for i, *_ in pairs],
        "response_a": [data[f"response_{s}"][i] for i, s, *_ in pairs],
        "response_b": [data[f"response_{t}"][j] for _, _, j, t, _ in pairs],
        "label": [0] * len(pairs),
    })



def offtopic_probes(battles: Battles, encoder, tokenizer, folds, seed: int = 0,
                    limit: int = OFFTOPIC_PAIRS) -> dict[str, Battles]:
    """The off-topic pairs of every kind (`offtopic_pairs`) as `Battles` (label A: the prompt's own answer), their
    towers encoded (cached) and their relevance vectors taken from the battles' own (`relevance_embeddings`).
    `meta`: `fold` (the prompt's validation fold), `source` (its source), and the rule with no training, "the
    answer closer to the prompt wins" (cosine of the whole prompt and the whole answer, each encoded on its own):
    `rule` with the towers' pooling (mean of the last 3 layers, what the model reads), `rule_st` with the last
    layer's mean (what a sentence-transformers user computes)."""
    from encoding_arena import answer_flags

    data = battles.meta["data"]
    rel = relevance_embeddings(data, encoder, tokenizer, "dev")
    out = {}
    for kind in OFFTOPIC_KINDS:
        pairs = offtopic_pairs(data, battles.meta["group"], folds, rel["rel_last"][:, 0], kind, limit, seed)
        probe_data = offtopic_dataset(data, pairs)
        features = encoder_features(probe_data, encoder, tokenizer, f"offtopic-{kind}")
        i = np.array([q[0] for q in pairs])
        own_slots = [(k, {"a": [1, 4], "b": [2, 5]}[side]) for k, side, *_ in pairs]
        other_slots = [(k, {"a": [1, 4], "b": [2, 5]}[side]) for _, _, k, side, _ in pairs]
        answers = {name: [np.stack([rel[key][k, cols] for k, cols in slots]) for key in ("rel_mean3", "rel_last")]
                   for name, slots in (("own", own_slots), ("other", other_slots))}
        a, b = probe_data["response_a"], probe_data["response_b"]
        probe = Battles(
            **{k: v for k, v in features.items() if not k.startswith("style")},
            style_a=np.asarray([style_features(x, o) for x, o in zip(a, b)], np.float32),
            style_b=np.asarray([style_features(x, o) for x, o in zip(b, a)], np.float32),
            legacy_style_a=np.asarray([legacy_style_features(x) for x in a], np.float32),
            legacy_style_b=np.asarray([legacy_style_features(x) for x in b], np.float32),
            y=np.zeros(len(pairs), dtype=int), rel_prompt=battles.rel_prompt[i], rel_answer_a=answers["own"][0],
            rel_answer_b=answers["other"][0], flags_a=np.asarray([answer_flags(x) for x in a], np.float32),
            flags_b=np.asarray([answer_flags(x) for x in b], np.float32))

        def closer(prompt: np.ndarray, own: np.ndarray, other: np.ndarray) -> np.ndarray:
            return (_cosine(prompt, own) > _cosine(prompt, other)).astype(float)

        probe.meta = {"fold": np.array([q[4] for q in pairs]), "source": battles.meta["source"][i],
                      "rule": closer(rel["rel_mean3"][i, 0], answers["own"][0][:, 0], answers["other"][0][:, 0]),
                      "rule_st": closer(rel["rel_last"][i, 0], answers["own"][1][:, 0], answers["other"][1][:, 0])}
        out[kind] = probe
    return out


def _cosine(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Row-wise cosine of two `(N, H)` arrays -> `(N,)`."""
    return (x * y).sum(1) / (np.linalg.norm(x, axis=1) * np.linalg.norm(y, axis=1) + 1e-8)

def _masked_mean(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1.0)


def load_battles(path: Path, name: str, encoder, tokenizer, limit: int | None = None) -> Battles:
    data = load_arena(str(path))
    if limit:
        data = data.select(range(min(limit, len(data))))
    features = encoder_features(data, encoder, tokenizer, name if not limit else f"{name}-{limit}")
    features = {k: v for k, v in features.items() if not k.startswith("style")}  # older caches held style
    a, b = data["response_a"], data["response_b"]
    style = {"style_a": [style_features(x, o) for x, o in zip(a, b)], "style_b": [style_features(x, o) for x, o in
                                                                               zip(b, a)],
             "legacy_style_a": [legacy_style_features(x) for x in a],
             "legacy_style_b": [legacy_style_features(x) for x in b]}
    battles = Battles(**features, **{k: np.asarray(v, np.float32) for k, v in style.items()},
                      y=np.asarray(data["label"]), **relevance_arrays(
                          relevance_embeddings(data, encoder, tokenizer, name if not limit else f"{name}-{limit}"),
                          data["response_a"], data["response_b"]))
    ids = np.asarray(data["id"])
    battles.meta = {"source": ids // 1_000_000, "group": [prompt_group(p) for p in data["prompt"]], "data": data}
    return battles


def relevance_arrays(rel: dict[str, np.ndarray], response_a, response_b) -> dict[str, np.ndarray]:
    """`Battles` relevance fields from `relevance_embeddings` (RELEVANCE_TEXTS order: whole p, a, b, last p, a, b;
    pooled as the towers are, the mean of the last 3 layers) and the answers' texts (for the flags)."""
    from encoding_arena import answer_flags

    vectors = rel["rel_mean3"]
    return {"rel_prompt": vectors[:, [0, 3]], "rel_answer_a": vectors[:, [1, 4]], "rel_answer_b": vectors[:, [2, 5]],
            "flags_a": np.asarray([answer_flags(t) for t in response_a], np.float32),
            "flags_b": np.asarray([answer_flags(t) for t in response_b], np.float32)}


# ------------------------------------------------------------------------------------------------ what heads see
def content_vectors(b: Battles, pooling: str) -> tuple[np.ndarray, np.ndarray]:
    """`(N, H')` content vector of each side: "last" (the default: last layer, mean over the tower),
    "mean_last<k>" (mean of the last k layers' means), "concat_last2" (last two layers side by side),
    "response" (last layer, mean over the last answer only)."""
    if pooling == "last":
        return b.layers_a[:, -1], b.layers_b[:, -1]
    if pooling.startswith("mean_last"):
        k = int(pooling.removeprefix("mean_last"))
        return b.layers_a[:, -k:].mean(1), b.layers_b[:, -k:].mean(1)
    if pooling == "concat_last2":
        return b.layers_a[:, -2:].reshape(len(b), -1), b.layers_b[:, -2:].reshape(len(b), -1)
    if pooling == "response":
        return b.response_a, b.response_b
    raise ValueError(pooling)


def relevance(b: Battles) -> tuple[np.ndarray, np.ndarray]:
    """`(N, 1)` per side: cosine of the last prompt turn's and the last answer's pooled vectors."""
    def cos(p, r):
        return ((p * r).sum(1) / (np.linalg.norm(p, axis=1) * np.linalg.norm(r, axis=1) + 1e-8))[:, None]

    return cos(b.prompt_a, b.response_a), cos(b.prompt_b, b.response_b)


# ------------------------------------------------------------------------------------------------------- heads
class LegacyHead(nn.Module):
    """Today's default head, verbatim: concat(pooled A, pooled B) -> Linear(2H -> 3) plus Linear(2F -> 3) on the
    legacy style features; position-aware (it can learn "B tends to win")."""

    def __init__(self, hidden: int, n_style: int) -> None:
        super().__init__()
        self.classifier, self.style_classifier = nn.Linear(2 * hidden, 3), nn.Linear(2 * n_style, 3)
        nn.init.normal_(self.classifier.weight, std=0.02)
        nn.init.zeros_(self.classifier.bias)
        nn.init.zeros_(self.style_classifier.weight)
        nn.init.zeros_(self.style_classifier.bias)

    def forward(self, a, b, sa, sb):
        return self.classifier(torch.cat([a, b], -1)) + self.style_classifier(torch.cat([sa, sb], -1)), None


class RankHead(nn.Module):
    """The Davidson rank head (symmetric): a reward per side from its pooled tower and style features."""

    def __init__(self, hidden: int, n_style: int) -> None:
        super().__init__()
        self.reward, self.style = nn.Linear(hidden, 1, bias=False), nn.Linear(n_style, 1, bias=False)
        nn.init.normal_(self.reward.weight, std=0.02)
        nn.init.zeros_(self.style.weight)
        self.log_nu = nn.Parameter(torch.zeros(()))

    def forward(self, a, b, sa, sb):
        gap = (self.reward(a) + self.style(sa) - self.reward(b) - self.style(sb)).squeeze(-1)
        return davidson_logits(gap, self.log_nu), None


def new_head(hidden: int, n_style: int, position_bias: bool = False, tie: str = "absdiff") -> nn.Module:
    """The shipped `ArenaClassifyHead` with its model-file initialisation; `tie` tries other tie terms:
    "absdiff" (shipped), "constant" (no content term in the tie logit), "absdiff+product" (adds a . b)."""
    head = ArenaClassifyHead(hidden, N_COUNTS, n_style - N_COUNTS, position_bias)
    for linear, std in ((head.content, 0.02), (head.content_tie, 0.02), (head.style, 0.0), (head.style_tie, 0.0)):
        nn.init.normal_(linear.weight, std=std) if std else nn.init.zeros_(linear.weight)
    nn.init.zeros_(head.content_tie.bias)
    if tie == "constant":
        head.content_tie.weight.requires_grad_(False).zero_()
    elif tie == "absdiff+product":
        return ProductTie(head, hidden)
    return head


class ProductTie(nn.Module):
    """`ArenaClassifyHead` plus a tie term on the elementwise product a . b (symmetric)."""

    def __init__(self, head: ArenaClassifyHead, hidden: int) -> None:
        super().__init__()
        self.head, self.product = head, nn.Linear(hidden, 1, bias=False)
        nn.init.zeros_(self.product.weight)

    def forward(self, a, b, sa, sb):
        logits, content = self.head(a, b, sa, sb)
        extra = torch.cat([torch.zeros_like(a[:, :2]), self.product(a * b)], -1)
        return logits + extra, None if content is None else content + extra


class RelevanceHead(nn.Module):
    """A head plus the model's relevance terms (`modeling_arena.ArenaRelevanceTerms`, zero-initialised as in the
    model), added to both the logits and the content logits as `ArenaModel.compare` adds them; with
    `pairs_weight` > 0, `extra_loss` is the model's label-free `content_pair_loss` on the same batch, weighted."""

    def __init__(self, head: nn.Module, pairs_weight: float = 0.0, pair_towers: bool = True) -> None:
        super().__init__()
        self.head, self.terms, self.pairs_weight = head, ArenaRelevanceTerms(), pairs_weight
        self.pair_towers = pair_towers
        for linear in (self.terms.side, self.terms.tie, self.terms.content_side):
            nn.init.zeros_(linear.weight)

    def forward(self, a, b, sa, sb, prompt, answer_a, answer_b, flags_a, flags_b):
        logits, content = self.head(a, b, sa, sb)
        features = (ArenaRelevanceTerms.features(prompt, answer_a, flags_a),
                    ArenaRelevanceTerms.features(prompt, answer_b, flags_b))
        rel = self.terms(*features)
        return logits + rel, (logits if content is None else content) + rel + self.terms.content_terms(*features)

    def extra_loss(self, a, b, sa, sb, prompt, answer_a, answer_b, flags_a, flags_b) -> torch.Tensor | None:
        if self.pairs_weight <= 0:
            return None
        towers = {"head": self.head, "towers": (a, b)} if self.pair_towers else {}
        return self.pairs_weight * content_pair_loss(self.terms, prompt, answer_a, answer_b, flags_a, flags_b,
                                                     **towers)


def train_head(head: nn.Module, inputs: list[torch.Tensor], y: torch.Tensor, seed: int,
               training: dict | None = None, label_smoothing: float = 0.0,
               class_weight: torch.Tensor | None = None) -> nn.Module:
    """Minibatch training as train.py's Trainer does it for the frozen-encoder default (TRAINING; `training`
    overrides some of its values; `label_smoothing` and `class_weight` go to the cross-entropy)."""
    settings = {**TRAINING, **(training or {})}
    torch.manual_seed(seed)
    params = [(n, p) for n, p in head.named_parameters() if p.requires_grad]
    groups = [{"params": [p for n, p in params if not n.endswith("bias")], "weight_decay": settings["weight_decay"]},
              {"params": [p for n, p in params if n.endswith("bias")], "weight_decay": 0.0}]
    optimizer = torch.optim.Adagrad(groups, lr=settings["learning_rate"])
    size = settings["batch_size"]
    steps = settings["epochs"] * math.ceil(len(y) / size)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: max(0.0, 1 - step / steps))
    head.train()
    for _ in range(settings["epochs"]):
        for rows in torch.randperm(len(y)).split(size):
            logits = head(*(x[rows] for x in inputs))[0]
            loss = nn.functional.cross_entropy(logits, y[rows], weight=class_weight, label_smoothing=label_smoothing)
            extra = head.extra_loss(*(x[rows] for x in inputs)) if hasattr(head, "extra_loss") else None
            if extra is not None:
                loss = loss + extra
            loss.backward()
            nn.utils.clip_grad_norm_([p for _, p in params], TRAINING["max_grad_norm"])
            optimizer.step()
            schedule.step()
            optimizer.zero_grad()
    return head.eval()


# ----------------------------------------------------------------------------------------------------- recipes
@dataclass
class Recipe:
    """How a recipe turns battles into head inputs, and which head it trains.

    `pooling`: see `content_vectors`. `style`: "new" (STYLE_FEATURES), "legacy" (today's 9) or "none". `relevance`:
    append the per-side prompt-answer cosine as a per-side signal. `extra`: add the HH-RLHF votes to training.
    `head`: "new", "legacy" or "rank". `swap_tta`: average each prediction with the A/B-swapped one.
    Training options (defaults: train.py's): `training` overrides TRAINING values (e.g. {"weight_decay": 0.2}),
    `label_smoothing`, `class_weight` ("balanced": inverse class frequency), `both_orders` (train on every battle
    in both A/B orders), `ensemble` (average the probabilities of heads trained with seeds seed, seed + 1000, ...).
    """

    pooling: str = "last"
    style: str = "new"
    relevance: bool = False
    extra: bool = False
    head: str = "new"
    tie: str = "absdiff"
    position_bias: bool = False
    swap_tta: bool = False
    training: dict | None = None
    label_smoothing: float = 0.0
    class_weight: str | None = None
    both_orders: bool = False
    ensemble: int = 1
    relevance_terms: bool = False
    pairs_weight: float = 0.0
    pair_towers: bool = True  # content pairs scored with the towers' terms too (the model's way)

    def inputs(self, b: Battles) -> list[torch.Tensor]:
        a, bb = content_vectors(b, self.pooling)
        if self.style == "legacy":
            sa, sb = b.legacy_style_a, b.legacy_style_b
        elif self.style == "new":
            sa, sb = b.style_a, b.style_b
        else:
            sa, sb = np.zeros((len(b), 0), np.float32), np.zeros((len(b), 0), np.float32)
        if self.relevance:
            ra, rb = relevance(b)
            sa, sb = np.concatenate([sa, ra], 1), np.concatenate([sb, rb], 1)
        arrays = [a, bb, sa, sb]
        if self.relevance_terms:
            arrays += [b.rel_prompt, b.rel_answer_a, b.rel_answer_b, b.flags_a, b.flags_b]
        return [torch.as_tensor(np.ascontiguousarray(x), dtype=torch.float32) for x in arrays]

    def build(self, hidden: int, n_style: int) -> nn.Module:
        if self.head == "legacy":
            return LegacyHead(hidden, n_style)
        if self.head == "rank":
            return RankHead(hidden, n_style)
        if self.style == "none":
            head = ArenaClassifyHead(hidden, 0, 0, self.position_bias)
            nn.init.normal_(head.content.weight, std=0.02)
            nn.init.normal_(head.content_tie.weight, std=0.02)
            nn.init.zeros_(head.content_tie.bias)
            return head
        return new_head(hidden, n_style, self.position_bias, self.tie)

    def fit(self, train: Battles, seed: int, extra: Battles | None = None) -> nn.Module:
        """The trained head (one; `ensemble` is applied by fit_predict)."""
        if self.extra and extra is not None:
            train = train.concat(extra)
        if self.both_orders:
            train = train.concat(train.swapped())
        x = self.inputs(train)
        weight = None
        if self.class_weight == "balanced":
            counts = np.bincount(train.y, minlength=3)
            weight = torch.as_tensor(len(train.y) / (3 * np.maximum(counts, 1)), dtype=torch.float32)
        head = self.build(x[0].shape[1], x[2].shape[1])
        if self.relevance_terms:
            head = RelevanceHead(head, self.pairs_weight, self.pair_towers)
        return train_head(head, x, torch.as_tensor(train.y), seed, self.training, self.label_smoothing, weight)

    def fit_predict(self, train: Battles, test: Battles, seed: int, extra: Battles | None = None,
                    probes: dict[str, Battles] | None = None) -> Prediction:
        """Predictions on `test`; with `probes` (off-topic pairs), also theirs (`Prediction.probes`)."""
        probs = probs_swapped = content = None
        probe_out: dict[str, dict[str, np.ndarray]] = {}
        for k in range(self.ensemble):
            head = self.fit(train, seed + 1000 * k, extra)
            for kind, probe in (probes or {}).items():
                scored = score_probe(head, self, probe)
                for key, value in scored.items():
                    probe_out.setdefault(kind, {})[key] = probe_out.get(kind, {}).get(key, 0) + value / self.ensemble
            with torch.no_grad():
                own, own_content = head(*self.inputs(test))
                swapped, _ = head(*self.inputs(test.swapped()))
            parts = (own.softmax(-1).numpy(), swapped.softmax(-1).numpy(),
                     None if own_content is None else own_content.softmax(-1).numpy())
            if probs is None:
                probs, probs_swapped, content = parts
            else:
                probs, probs_swapped = probs + parts[0], probs_swapped + parts[1]
                content = None if content is None else content + parts[2]
        if self.ensemble > 1:
            probs, probs_swapped = probs / self.ensemble, probs_swapped / self.ensemble
            content = None if content is None else content / self.ensemble
        if self.swap_tta:
            probs = (probs + probs_swapped[:, SWAP]) / 2
            probs_swapped = probs[:, SWAP]
        return Prediction(probs, probs_swapped, content, probe_out or None)


def score_probe(head: nn.Module, recipe: Recipe, probe: Battles) -> dict[str, np.ndarray]:
    """`(N,)` per off-topic pair (A = the prompt's own answer, B = another prompt's): 1.0 where the full view puts
    P(A) above P(B), in each order (A and B exchanged too) and averaged, so a position-aware head is not flattered;
    the same for the content view (`content`: the style-controlled logits) where the head has one."""
    out = {}
    with torch.no_grad():
        own, own_content = head(*recipe.inputs(probe))
        swapped, swapped_content = head(*recipe.inputs(probe.swapped()))
    for key, (x, z) in {"full": (own, swapped), "content": (own_content, swapped_content)}.items():
        if x is None:
            continue
        out[key] = ((x[:, 0] > x[:, 1]).float().numpy() + (z[:, 1] > z[:, 0]).float().numpy()) / 2
    return out


@dataclass
class Prediction:
    """`(N, 3)` probabilities in the battles' order, `(N, 3)` with A and B exchanged (columns in the exchanged
    order), and the style-controlled (content-only) probabilities where the head has them."""

    probs: np.ndarray
    probs_swapped: np.ndarray
    content: np.ndarray | None = None
    probes: dict | None = None  # off-topic pairs: {kind: {"full": (M,), "content": (M,)}}, see score_probe


def symmetric_prior(train: Battles, n: int) -> Prediction:
    counts = np.bincount(train.y, minlength=3) / len(train)
    prior = np.array([(counts[0] + counts[1]) / 2] * 2 + [counts[2]])
    probs = np.tile(prior, (n, 1))
    return Prediction(probs, probs)


def own_order_prior(train: Battles, n: int) -> Prediction:
    counts = np.bincount(train.y, minlength=3) / len(train)
    return Prediction(np.tile(counts, (n, 1)), np.tile(counts[SWAP], (n, 1)))


def length_regression(train: Battles, test: Battles) -> Prediction:
    """Logistic regression on log chars and log words of each side and their gap, trained on both orders of every
    battle, predictions averaged over both orders."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    def x(b: Battles) -> np.ndarray:
        a, bb = b.style_a[:, LENGTH_COLUMNS], b.style_b[:, LENGTH_COLUMNS]
        return np.concatenate([a, bb, a - bb], 1)

    both = train.concat(train.swapped())
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)).fit(x(both), both.y)
    probs = (model.predict_proba(x(test)) + model.predict_proba(x(test.swapped()))[:, SWAP]) / 2
    return Prediction(probs, probs[:, SWAP])


# ------------------------------------------------------------------------------------------------------ scoring
def row_losses(pred: Prediction, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-battle log loss in the own order and in the exchanged order (labels exchanged)."""
    rows = np.arange(len(y))
    eps = 1e-15
    own = -np.log(np.clip(pred.probs[rows, y], eps, 1))
    swapped = -np.log(np.clip(pred.probs_swapped[rows, np.asarray(SWAP)[y]], eps, 1))
    return own, swapped


def grouped_folds(groups: list[str], k: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    from sklearn.model_selection import GroupKFold

    index = np.arange(len(groups))
    return list(GroupKFold(n_splits=k, shuffle=True, random_state=seed).split(index, groups=groups))


def leave_one_source_out(battles: Battles, source: int) -> tuple[np.ndarray, np.ndarray]:
    """(train rows, test rows): test = the source; train = the other sources minus battles on a prompt that the
    test source also has (Auto-J reuses MT-Bench and PandaLM prompts)."""
    sources, groups = battles.meta["source"], battles.meta["group"]
    test = np.flatnonzero(sources == source)
    held = {groups[i] for i in test}
    train = np.array([i for i in np.flatnonzero(sources != source) if groups[i] not in held], dtype=int)
    return train, test


def study_setup():
    """Two threads, no progress bars or load messages (for benchmarks that run many fits); returns the repo's
    evaluate metric."""
    import evaluate
    from datasets.utils.logging import disable_progress_bar
    from transformers.utils import logging as transformers_logging

    disable_progress_bar()
    transformers_logging.set_verbosity_error()
    transformers_logging.disable_progress_bar()
    torch.set_num_threads(2)
    return evaluate.load(str(METRIC_PATH), keep_in_memory=True)


# ---------------------------------------------------------------------------------------------------- the study
DEFAULT_NEW = "new default: symmetric head + style terms, mean of last 3 layers"
LAST_LAYER = "symmetric head + style terms, last layer only"
REFERENCE = "today's default + swap TTA"
RELEVANCE = "3-layer default + relevance terms, no content pairs"
CONTENT_DEFAULT = "3-layer default + relevance terms + content pairs, weight 0.5"
BASELINES = ("symmetric class prior", "own-order class prior", "length LR (swap-aug, swap-avg)")
RECIPES: dict[str, Recipe] = {
    "today's default (own order only)": Recipe(style="legacy", head="legacy"),
    REFERENCE: Recipe(style="legacy", head="legacy", swap_tta=True),
    "rank (Davidson) head, new style": Recipe(head="rank"),
    "symmetric head, today's style features": Recipe(style="legacy"),
    "symmetric head, no style": Recipe(style="none"),
    DEFAULT_NEW: Recipe(pooling="mean_last3"),
    LAST_LAYER: Recipe(),
    "+ position_bias (opt-in)": Recipe(position_bias=True),
    "tie: constant only": Recipe(tie="constant"),
    "tie: + a*b": Recipe(tie="absdiff+product"),
    "pooling: mean of last 2 layers": Recipe(pooling="mean_last2"),
    "pooling: mean of last 4 layers": Recipe(pooling="mean_last4"),
    "pooling: mean of all 6 layers": Recipe(pooling="mean_last6"),
    "pooling: concat last 2 layers": Recipe(pooling="concat_last2"),
    "pooling: answer tokens only": Recipe(pooling="response"),
    "+ prompt-answer relevance": Recipe(relevance=True),
    "+ HH-RLHF extra votes": Recipe(extra=True),
    # relevance content terms (the prompt and each answer encoded on their own), on the 3-layer default
    RELEVANCE: Recipe(pooling="mean_last3", relevance_terms=True),
    CONTENT_DEFAULT: Recipe(pooling="mean_last3", relevance_terms=True, pairs_weight=0.5),
    "+ relevance terms + content pairs, weight 0.1": Recipe(pooling="mean_last3", relevance_terms=True,
                                                            pairs_weight=0.1),
    "+ relevance terms + content pairs, weight 2": Recipe(pooling="mean_last3", relevance_terms=True,
                                                          pairs_weight=2.0),
    "+ relevance terms + content pairs, weight 5": Recipe(pooling="mean_last3", relevance_terms=True,
                                                          pairs_weight=5.0),
    "+ relevance terms + content pairs, weight 10": Recipe(pooling="mean_last3", relevance_terms=True,
                                                           pairs_weight=10.0),
    "+ relevance terms + content pairs, weight 0.5, pairs without the towers' terms": Recipe(
        pooling="mean_last3", relevance_terms=True, pairs_weight=0.5, pair_towers=False),
}
LOSO_RECIPES = (REFERENCE, DEFAULT_NEW, LAST_LAYER, "+ HH-RLHF extra votes", CONTENT_DEFAULT)


def predict(name: str, train: Battles, test: Battles, seed: int, extra: Battles | None,
            probes: dict[str, Battles] | None = None) -> Prediction:
    if name == "symmetric class prior":
        return symmetric_prior(train, len(test))
    if name == "own-order class prior":
        return own_order_prior(train, len(test))
    if name == "length LR (swap-aug, swap-avg)":
        return length_regression(train, test)
    return RECIPES[name].fit_predict(train, test, seed, extra, probes)


def run_cv(battles: Battles, extra: Battles | None, names: list[str], folds: int, seed: int,
           probes: dict[str, Battles] | None = None) -> dict:
    """Out-of-fold per-battle losses (both orders) and fold-level figures for every recipe; with `probes`
    (`offtopic_probes`), each fold's heads also score the off-topic pairs made from that fold's held-out prompts
    (`r["probes"][kind][view]`: `(M,)` per pair)."""
    n = len(battles)
    out = {name: {"own": np.zeros(n), "swapped": np.zeros(n), "fold_pn": [], "fold_own": [], "fold_acc": [],
                  "content": None, "probes": {}} for name in names}
    for fold, (train_rows, test_rows) in enumerate(grouped_folds(battles.meta["group"], folds, seed)):
        train, test = battles.take(train_rows), battles.take(test_rows)
        fold_probes = {kind: probe.take(np.flatnonzero(probe.meta["fold"] == fold))
                       for kind, probe in (probes or {}).items()}
        for name in names:
            pred = predict(name, train, test, seed + fold, extra, fold_probes)
            for kind, views in (pred.probes or {}).items():
                rows = np.flatnonzero(probes[kind].meta["fold"] == fold)
                for view, hits in views.items():
                    out[name]["probes"].setdefault(kind, {}).setdefault(view, np.full(len(probes[kind]), np.nan))
                    out[name]["probes"][kind][view][rows] = hits
            own, swapped = row_losses(pred, test.y)
            r = out[name]
            r["own"][test_rows], r["swapped"][test_rows] = own, swapped
            r["fold_pn"].append(float((own.mean() + swapped.mean()) / 2))
            r["fold_own"].append(float(own.mean()))
            r["fold_acc"].append(float((pred.probs.argmax(1) == test.y).mean()))
            if pred.content is not None:
                if r["content"] is None:
                    r["content"], r["probs"] = np.zeros((n, 3)), np.zeros((n, 3))
                r["content"][test_rows], r["probs"][test_rows] = pred.content, pred.probs
        print(f"fold {fold}: " + ", ".join(f"{k}: {out[k]['fold_pn'][-1]:.4f}" for k in names), flush=True)
    return out


def run_loso(battles: Battles, extra: Battles | None, names: list[str], seed: int) -> dict:
    out: dict[str, dict[int, float]] = {name: {} for name in names}
    for source in SOURCES:
        train_rows, test_rows = leave_one_source_out(battles, source)
        if not len(train_rows) or not len(test_rows):  # a smoke run's slice may hold one source only
            continue
        train, test = battles.take(train_rows), battles.take(test_rows)
        for name in names:
            own, swapped = row_losses(predict(name, train, test, seed, extra), test.y)
            out[name][source] = float((own.mean() + swapped.mean()) / 2)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--extra", default=str(EXTRA_DATA), help="extra training votes ('' for none)")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--limit", type=int, default=None, help="first N rows only (smoke runs)")
    parser.add_argument("--recipes", nargs="*", default=None, help="names of RECIPES to run (default: all)")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results"))
    parser.add_argument("--name", default="quality", help="report files: <out>/<name>.{md,json,png}")
    parser.add_argument("--offtopic", type=int, default=OFFTOPIC_PAIRS,
                        help="off-topic pairs per kind scored by every recipe (the content check; 0: none)")
    args = parser.parse_args(argv)

    started = time.time()
    torch.set_num_threads(2)
    from arena_preference.model_loading import load_encoder

    encoder, tokenizer = load_encoder(ENCODER)
    battles = load_battles(Path(args.data), "dev", encoder, tokenizer, args.limit)
    extra = load_battles(Path(args.extra), "hh", encoder, tokenizer, args.limit) if args.extra else None
    probes = None
    if args.offtopic:
        folds = grouped_folds(battles.meta["group"], args.folds, args.seed)
        probes = offtopic_probes(battles, encoder, tokenizer, folds, args.seed, args.offtopic)
    features_seconds = time.time() - started
    names = [*BASELINES, *(args.recipes if args.recipes is not None else RECIPES)]
    cv = run_cv(battles, extra, names, args.folds, args.seed, probes)
    loso = run_loso(battles, extra, [*BASELINES, *(n for n in LOSO_RECIPES if n in names)], args.seed)
    report = summarise(battles, cv, loso, args, time.time() - started, features_seconds, probes)
    write_report(report, Path(args.out), args.name)


def summarise(battles: Battles, cv: dict, loso: dict, args, wall: float, features_seconds: float,
              probes: dict[str, Battles] | None = None) -> dict:
    sources = battles.meta["source"]
    rows = {}
    for name, r in cv.items():
        pn = np.array(r["fold_pn"])
        offtopic = {}
        for kind, views in r["probes"].items():
            where = probes[kind].meta["source"]
            offtopic[kind] = {view: {"all": float(np.nanmean(hits)),
                                     "per_source": {SOURCES[s]: float(np.nanmean(hits[where == s])) for s in SOURCES
                                                    if (where == s).any()}}
                              for view, hits in views.items()}
        rows[name] = {
            "offtopic": offtopic,
            "position_neutral": float(pn.mean()), "position_neutral_std": float(pn.std()),
            "own_order": float(np.mean(r["fold_own"])), "swapped_order": float(r["swapped"].mean()),
            "accuracy": float(np.mean(r["fold_acc"])), "folds": [round(v, 4) for v in pn],
            "per_source": {SOURCES[s]: float((r["own"][sources == s].mean() + r["swapped"][sources == s].mean()) / 2)
                           for s in SOURCES},
        }
    report = {"args": {k: v for k, v in vars(args).items()}, "rows": len(battles), "wall_minutes": wall / 60,
              "features_minutes": features_seconds / 60, "cv": rows, "loso": loso,
              "source_sizes": {SOURCES[s]: int((sources == s).sum()) for s in SOURCES}}
    if probes:
        report["offtopic"] = {kind: {
            "pairs": len(probe), "per_source_pairs": {SOURCES[s]: int((probe.meta["source"] == s).sum()) for s in SOURCES},
            "rule": float(probe.meta["rule"].mean()), "rule_st": float(probe.meta["rule_st"].mean())}
            for kind, probe in probes.items()}
    for key, name in (("style_control", DEFAULT_NEW), ("style_control_content_default", CONTENT_DEFAULT)):
        default = cv.get(name)
        if default is None or default["content"] is None:
            continue
        full, content, y = default["probs"].argmax(1), default["content"].argmax(1), battles.y
        differ = full != content
        report[key] = {
            "disagree": float(differ.mean()), "disagree_count": int(differ.sum()),
            "accuracy_full": float((full == y).mean()), "accuracy_content": float((content == y).mean()),
            "accuracy_full_where_disagree": float((full[differ] == y[differ]).mean()) if differ.any() else None,
            "accuracy_content_where_disagree": float((content[differ] == y[differ]).mean()) if differ.any() else None,
            "disagree_per_source": {SOURCES[s]: float(differ[sources == s].mean()) for s in SOURCES},
        }
    return report


def write_report(report: dict, out: Path, name: str = "quality") -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(report, indent=1) + "\n")
    lines = render(report)
    (out / f"{name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    plot(report, out / f"{name}.png")


def render(report: dict) -> list[str]:
    args, cv, loso = report["args"], report["cv"], report["loso"]
    sizes = report["source_sizes"]
    lines = [
        f"Command: `{command(args)}` on {report['rows']} real "
        f"votes ({Path(args['data']).name}); wall time {report['wall_minutes']:.1f} min on a 2-core AVX2 CPU (torch "
        f"2 threads), of which {report['features_minutes']:.1f} min to load the encoder features (cached after the "
        "first run).",
        "",
        f"## Grouped {args['folds']}-fold CV by prompt (3-class log loss, lower is better)",
        "",
        "Position-neutral = mean of the log loss in each battle's own order and with A and B exchanged (labels "
        "exchanged). Own order = the figure the old table reported.",
        "",
        "| recipe | **position-neutral** (mean ± std over folds) | own order | A/B swapped | accuracy (own) | "
        + " | ".join(f"{s} (n={sizes[s]})" for s in SOURCES.values()) + " |",
        "| --- | --- | --- | --- | --- | " + " | ".join("---" for _ in SOURCES) + " |",
    ]
    for name, r in cv.items():
        bold = "**" if name in (DEFAULT_NEW, REFERENCE) else ""
        lines.append(f"| {bold}{name}{bold} | {r['position_neutral']:.4f} ± {r['position_neutral_std']:.4f} | "
                     f"{r['own_order']:.4f} | {r['swapped_order']:.4f} | {r['accuracy']:.3f} | "
                     + " | ".join(f"{r['per_source'][s]:.3f}" for s in SOURCES.values()) + " |")
    if DEFAULT_NEW in cv and REFERENCE in cv:
        gain = cv[REFERENCE]["position_neutral"] - cv[DEFAULT_NEW]["position_neutral"]
        lines += ["", f"New default vs today's default with swap TTA, position-neutral: {gain:+.4f} "
                      f"({'meets' if gain >= 0.02 else 'misses'} the 0.02 target)."]
    lines += ["", "## Leave one source out (train on the other three, position-neutral log loss on the held-out one)",
              "", "| recipe | " + " | ".join(f"{s} (n={sizes[s]})" for s in SOURCES.values()) + " |",
              "| --- | " + " | ".join("---" for _ in SOURCES) + " |"]
    for name, per in loso.items():
        lines.append(f"| {name} | " + " | ".join(f"{_get(per, s):.3f}" for s in SOURCES) + " |")
    if DEFAULT_NEW in loso:
        prior = loso["symmetric class prior"]
        worse = [SOURCES[s] for s in SOURCES if sizes[SOURCES[s]] >= 500 and _get(loso[DEFAULT_NEW], s) >
                 _get(prior, s)]
        lines += ["", "Sources of 500+ battles where the new default scores worse than the symmetric prior of the "
                      f"training sources: {', '.join(worse) if worse else 'none'}."]
    if report.get("offtopic"):
        lines += offtopic_lines(report)
    for key, title in (("style_control", "new default"), ("style_control_content_default", CONTENT_DEFAULT)):
        if key not in report:
            continue
        sc = report[key]
        lines += ["", f"## Style control ({title}, out-of-fold)", "",
                  f"Style-controlled prediction (content logits only) and full prediction disagree (argmax differs) "
                  f"on {sc['disagree']:.1%} of the votes ({sc['disagree_count']}); per source: "
                  + ", ".join(f"{s} {v:.1%}" for s, v in sc["disagree_per_source"].items()) + ".",
                  f"Accuracy against the human vote: full {sc['accuracy_full']:.3f}, content only "
                  f"{sc['accuracy_content']:.3f}; where they disagree: full {sc['accuracy_full_where_disagree']:.3f}, "
                  f"content only {sc['accuracy_content_where_disagree']:.3f}."]
    return lines


def offtopic_lines(report: dict) -> list[str]:
    """The content check's table: share of off-topic pairs on which each view prefers the prompt's own answer."""
    info, kinds = report["offtopic"], list(report["offtopic"])
    lines = ["", "## Content check: the prompt's own answer against an answer to another prompt (out of fold)", "",
             "Pairs from held-out prompts (each fold's validation prompts): a prompt with its own answer (the "
             "winner's, else A's; never an empty one) against the answer of another validation prompt with as many "
             "turns, drawn at random or the one whose prompt is nearest (cosine of the whole prompts, MiniLM). "
             "Share of pairs where the view puts P(own) above P(other), in both A/B orders (averaged). "
             + "; ".join(f"{k}: {info[k]['pairs']} pairs (" + ", ".join(f"{s} {n}" for s, n in
                                                                     info[k]["per_source_pairs"].items()) + ")"
                         for k in kinds) + ".", "",
             "| recipe | " + " | ".join(f"{k}: full | {k}: content" for k in kinds) + " | "
             + " | ".join(f"{k} content, {s}" for k in kinds for s in SOURCES.values()) + " |",
             "| --- | " + " | ".join("--- | ---" for _ in kinds) + " | "
             + " | ".join("---" for _ in kinds for _ in SOURCES) + " |"]
    lines.append("| rule: closer to the prompt wins (no training; last layer / 3-layer mean) | "
                 + " | ".join(f"{info[k]['rule_st']:.3f} | {info[k]['rule']:.3f}" for k in kinds) + " | "
                 + " | ".join("" for _ in kinds for _ in SOURCES) + " |")
    for name, r in report["cv"].items():
        off = r.get("offtopic") or {}
        if not off:
            continue
        cells = []
        for k in kinds:
            views = off.get(k, {})
            cells += [f"{views[v]['all']:.3f}" if v in views else "-" for v in ("full", "content")]
        per = [f"{off[k]['content']['per_source'].get(s, float('nan')):.3f}" if "content" in off.get(k, {}) else "-"
               for k in kinds for s in SOURCES.values()]
        lines.append(f"| {name} | " + " | ".join(cells) + " | " + " | ".join(per) + " |")
    return lines


def command(args: dict) -> str:
    """The command line that reproduces a report."""
    parts = ["python bench/quality.py", f"--folds {args['folds']}", f"--seed {args['seed']}"]
    if not args.get("extra"):
        parts.append("--extra ''")
    if args.get("recipes") is not None:
        parts.append("--recipes " + " ".join(f'"{r}"' for r in args["recipes"]))
    if args.get("name", "quality") != "quality":
        parts.append(f"--name {args['name']}")
    return " ".join(parts)


def _get(per: dict, source: int) -> float:
    """A held-out source's figure (keys are ints, or strings once read back from JSON); NaN when not run."""
    return per.get(source, per.get(str(source), float("nan")))


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(report["cv"])
    pn = [report["cv"][n]["position_neutral"] for n in names]
    own = [report["cv"][n]["own_order"] for n in names]
    fig, ax = plt.subplots(figsize=(8, 0.4 * len(names) + 1.5))
    ys = np.arange(len(names))
    ax.barh(ys, pn, height=0.4, color="#3a7", label="position-neutral")
    ax.barh(ys + 0.4, own, height=0.4, color="#bbb", label="own order")
    ax.set_yticks(ys + 0.2, names)
    ax.invert_yaxis()
    ax.set_xlim(min(pn + own) - 0.03, max(pn + own) + 0.02)
    ax.set_xlabel("3-class log loss, grouped CV (lower is better)")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
