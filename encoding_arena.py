"""Battle -> tower inputs, in one place: used by training (datasets.map), the pipeline and the benchmarks.

Remote-code module: imports only torch, transformers and the standard library, so the pipeline can use it from a
saved model directory on a machine without this project.

A tower is the conversation seen from one side, role markers between turns:

    [CLS] User: <prompt 1> Assistant: <response 1> User: <prompt 2> Assistant: <response 2> [SEP]

A cross-encoder (`cross_encoder=True`) reads one sequence per battle and order instead, both answers in it:

    [BOS] User: <prompt 1> Response A: <first 1> Response B: <second 1> User: <prompt 2> ... [EOS]
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

USER_MARKER = "User:"
ASSISTANT_MARKER = "Assistant:"
# The cross-encoder's markers name positions (the answer shown first, second), not models: the order (b, a) of a
# battle shows b after "Response A:".
JOINT_MARKERS = ("User:", "Response A:", "Response B:")

# Per-side style features fed to the head beside the pooled embeddings: log1p of counts (`log_*`; the classify
# head reads them back as counts and compares the sides as (A - B) / (A + B), as the Arena's own style control
# does), then per-side signals (`is_*`). Mean pooling cannot see length, yet longer answers win ~61% of decisive
# Arena battles; empty answers nearly always lose and identical answers nearly always tie.
STYLE_FEATURES = (
    "log_chars",
    "log_words",
    "log_lines",
    "log_paragraphs",
    "log_headers",
    "log_list_items",
    "log_bold",
    "log_code_blocks",
    "is_empty",
    "is_refusal",
    "is_identical",
)
# How refusals open ("I'm sorry, but I can't ..."); looked for at the start of each turn only.
REFUSAL_OPENINGS = (
    "i'm sorry", "i am sorry", "sorry, but", "i apologize", "i cannot", "i can't", "i can not", "i'm unable",
    "i am unable", "i'm not able", "i am not able", "as an ai", "as a language model", "i won't", "i will not",
)
_REFUSAL_WINDOW = 120  # characters of a turn's start searched for an opening
_WHITESPACE = re.compile(r"\s")
_BOLD = re.compile(r"\*\*[^*\n]+\*\*|__[^_\n]+__")


BATTLE_KEYS = ("prompt", "response_a", "response_b")


class BattleFieldError(ValueError):
    """One field of a battle that cannot be read: `field` (e.g. "response_b"), what was `expected`, what was `got`,
    and a short `reason` ("unparseable JSON", "turn counts differ", ...) that the loader counts when it skips rows."""

    def __init__(self, field: str, expected: str, got: Any, reason: str) -> None:
        text = repr(got)
        super().__init__(f"{field}: expected {expected}, got {text if len(text) <= 60 else text[:57] + '...'}")
        self.field, self.expected, self.got, self.reason = field, expected, got, reason


def loads_json(text: str) -> Any:
    """The one JSON rule for battle cells: `strict=False`, so a raw newline or tab inside a string (what many CSV
    writers and hand edits produce) is read as that character rather than refused."""
    try:
        return json.loads(text, strict=False)
    except RecursionError:  # "[[[[..." nested past Python's recursion limit: bad JSON, not a crash
        raise json.JSONDecodeError("JSON nested too deeply", text, 0) from None


def as_turns(value: Any, field: str, json_lists: bool | None = None) -> list[str]:
    """Normalise one side of a battle to a list of turn strings.

    Accepts a list of strings (`None` turns become ""), `None` (one empty turn), or a string, read by `json_lists`:
    `None` (auto, the pipeline's way): a Kaggle-style JSON-list string such as '["Hi", null]' is its turns, any
    other text is one turn; `True` (a file in the Kaggle layout): the string must be a JSON list of turns; `False`
    (a file of plain columns): the string is one turn, even one that starts with "[". Raises `BattleFieldError`.

    >>> as_turns('["Hi", null]', "prompt")
    ['Hi', '']
    >>> as_turns("Hi", "prompt")
    ['Hi']
    """
    if value is None:
        return [""]
    if isinstance(value, str):
        if json_lists is False or (json_lists is None and not value.lstrip().startswith("[")):
            return [value]
        try:
            parsed = loads_json(value)
        except json.JSONDecodeError as err:
            if json_lists is None:
                return [value]  # text that merely starts with "["
            raise BattleFieldError(field, f"a JSON list of turn strings ({err.msg}, char {err.pos})", value,
                                   "unparseable JSON") from None
        if json_lists is None and not (isinstance(parsed, list) and all(t is None or isinstance(t, str)
                                                                        for t in parsed)):
            return [value]
        value = parsed
    if not isinstance(value, (list, tuple)):
        raise BattleFieldError(field, "a string or a list of turn strings", value, "invalid turns")
    if not value:
        raise BattleFieldError(field, "a non-empty list of turns", value, "invalid turns")
    for i, turn in enumerate(value):
        if turn is not None and not isinstance(turn, str):
            raise BattleFieldError(f"{field}[{i}]", "a string or null turn", turn, "invalid turns")
    return ["" if turn is None else turn for turn in value]


def normalise_battle(battle: Mapping[str, Any], json_lists: bool | None = None) -> dict[str, list[str]]:
    """A raw battle -> `{"prompt", "response_a", "response_b"}` as lists of turns, the same number on each side.

    The one place that does it, for training (`arena_dataset`), the pipeline and the leaderboard. Other keys are
    ignored. `json_lists` is `as_turns`'. Raises `BattleFieldError` naming the field.
    """
    if not isinstance(battle, Mapping):
        raise BattleFieldError("(battle)", f"a dict with keys {list(BATTLE_KEYS)}", type(battle).__name__,
                               "invalid battle")
    turns = {}
    for key in BATTLE_KEYS:
        if key not in battle:
            raise BattleFieldError(key, "a value", "nothing (field missing)", "missing field")
        turns[key] = as_turns(battle[key], key, json_lists)
    for key in ("response_a", "response_b"):
        if len(turns[key]) != len(turns["prompt"]):
            raise BattleFieldError(key, f"{len(turns['prompt'])} turn(s) like prompt, a turn per user turn",
                                   len(turns[key]), "turn counts differ")
    return turns


def style_features(turns: Sequence[str], other: Sequence[str] | None = None) -> list[float]:
    """Style features of one side's responses (all turns joined), in the order of `STYLE_FEATURES`.

    `other` is the other side's turns (for `is_identical`). Linear in the text's length: markdown is read line by
    line, with no pattern that can span lines (a 40,000-line answer takes milliseconds).
    """
    text = "\n".join(turns)
    lines = text.split("\n") if text else []
    paragraphs = headers = list_items = bold = fences = 0
    previous_blank = False
    for number, line in enumerate(lines):
        stripped = line.lstrip(" \t")
        blank = not stripped
        # a run of blank lines between two lines: one paragraph break
        paragraphs += blank and not previous_blank and 0 < number < len(lines) - 1
        previous_blank = blank
        if blank:
            continue
        indent = len(line) - len(stripped)
        hashes = len(stripped) - len(stripped.lstrip("#"))
        headers += indent <= 3 and 1 <= hashes <= 6 and stripped[hashes:hashes + 1] in (" ", "\t")
        list_items += _is_list_item(stripped)
        fences += stripped.startswith("```")
        if "**" in stripped or "__" in stripped:
            bold += len(_BOLD.findall(stripped))
    counts = (len(text), _count_words(text), len(lines), paragraphs, headers, list_items, bold, fences // 2)
    refusal = any(_opens_with_refusal(turn) for turn in turns)
    identical = other is not None and list(other) == list(turns)
    empty = any(not turn.strip() for turn in turns) if turns else True
    return [math.log1p(c) for c in counts] + [float(empty), float(refusal), float(identical)]


def _count_words(text: str, chunk: int = 1 << 20) -> int:
    """`len(text.split())` without holding every word of a huge text at once: a megabyte at a time, each piece cut
    on whitespace so no word is counted twice."""
    count = start = 0
    while start < len(text):
        space = _WHITESPACE.search(text, min(start + chunk, len(text)))
        end = space.start() if space else len(text)
        count += len(text[start:end].split())
        start = end
    return count


def _is_list_item(stripped: str) -> bool:
    """A markdown list item: "- ", "* ", "+ " or "12. " / "12) " at the start of a line (indent removed)."""
    if stripped[:1] in ("-", "*", "+"):
        return stripped[1:2] in (" ", "\t")
    digits = len(stripped) - len(stripped.lstrip("0123456789"))
    return 0 < digits and stripped[digits:digits + 1] in (".", ")") and stripped[digits + 1:digits + 2] in (" ", "\t")


def _opens_with_refusal(turn: str) -> bool:
    opening = turn[:_REFUSAL_WINDOW].lower().replace("\u2019", "'")
    return any(phrase in opening for phrase in REFUSAL_OPENINGS)


def _truncate_latest_turns(
    prompts: list[list[int]], responses: list[list[int]], budget: int, user: list[int], assistant: list[int]
) -> list[int]:
    """Keep the latest turns: the last exchange always (prompt and response both), earlier ones while they fit.

    In the last exchange the prompt keeps its tail and gets at most a quarter of the budget unless the response
    leaves more room; the response keeps its head and gets the rest. Earlier exchanges are kept whole, newest
    first, until the next one would not fit.
    """
    room = budget - len(user) - len(assistant)
    p, r = prompts[-1], responses[-1]
    p_keep = min(len(p), max(room // 4, room - len(r), 1))  # 1: under 4 tokens of room, a quarter is 0
    r_keep = min(len(r), room - p_keep)
    last = user + (p[len(p) - p_keep :] if p_keep else []) + assistant + r[:r_keep]
    earlier = (user + p + assistant + r for p, r in zip(reversed(prompts[:-1]), reversed(responses[:-1])))
    return _with_earlier_exchanges(last, earlier, budget)


def _with_earlier_exchanges(last: list[int], earlier_newest_first: Iterable[list[int]], budget: int) -> list[int]:
    """`last` preceded by the earlier exchanges (given newest first) kept whole while they fit in `budget`, in
    conversation order: the truncation rule the towers and the cross-encoder share."""
    kept, used = [last], len(last)
    for exchange in earlier_newest_first:
        if used + len(exchange) > budget:
            break
        kept.append(exchange)
        used += len(exchange)
    return [t for exchange in reversed(kept) for t in exchange]


def _truncate_head(
    prompts: list[list[int]], responses: list[list[int]], budget: int, user: list[int], assistant: list[int]
) -> list[int]:
    """The seed's way: the whole conversation, cut at the end (long prompts can crowd out the response)."""
    ids = [t for p, r in zip(prompts, responses) for t in user + p + assistant + r]
    return ids[:budget]


# Characters per token assumed when sizing the first window of a long text; a text whose window holds too few tokens
# (long runs of whitespace, which make no tokens) is read in doubling windows, so the cost stays linear in the text.
_CHARS_PER_TOKEN = 8
# Tokens at a window's cut that are dropped: the cut falls on whitespace, so at most the piece next to it can differ
# from how the whole text tokenizes.
_CUT_MARGIN = 2


def tokenize_within(tokenizer: Any, texts: list[str], ends: list[str], budget: int) -> list[list[int]]:
    """Token ids of each text (no special tokens), as many as a tower of `budget` tokens can use.

    A text of at most `budget` tokens gets all of them, exactly as `tokenizer(text)` gives them. A longer one gets
    at least `budget + 1` tokens: the first ones (`ends[i] == "head"`) or the last ones (`"tail"`) of the whole
    text's tokenization, which is all that truncation reads (it compares lengths and keeps a head or a tail). So
    time and memory follow the budget and one pass over the text, not the text's size: a 25 MB answer with
    max_length 64 is read a few kilobytes at a time.
    """
    window = (budget + 1 + _CUT_MARGIN) * _CHARS_PER_TOKEN
    short = [i for i, text in enumerate(texts) if len(text) <= window]
    out: list[list[int]] = [[] for _ in texts]
    if short:
        # verbose=False: a turn may exceed model_max_length; it is cut later, so the warning is noise.
        encoded = tokenizer([texts[i] for i in short], add_special_tokens=False, verbose=False)["input_ids"]
        for i, ids in zip(short, encoded):
            out[i] = ids
    for i in (i for i, text in enumerate(texts) if len(text) > window):
        out[i] = _tokenize_end(tokenizer, texts[i], ends[i] == "head", budget + 1, window)
    return out


_SEARCH = 1000  # characters searched for a whitespace to cut on


def _whitespace_near(text: str, positions: range, default: int) -> int:
    return next((j for j in positions if text[j].isspace()), default)


def _tokenize_end(tokenizer: Any, text: str, head: bool, needed: int, window: int) -> list[int]:
    """At least `needed` tokens from one end of `text` (all of them if it has fewer), read in doubling windows."""
    while True:
        if window >= len(text):
            return tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"]
        # Cut on a whitespace character near the window's edge, so that no word is split.
        if head:
            cut = _whitespace_near(text, range(window - 1, max(window - _SEARCH, 0), -1), default=window)
            piece = text[:cut]
        else:
            start = len(text) - window
            piece = text[_whitespace_near(text, range(start, min(start + _SEARCH, len(text))), default=start):]
        ids = tokenizer(piece, add_special_tokens=False, verbose=False)["input_ids"]
        kept = ids[: len(ids) - _CUT_MARGIN] if head else ids[_CUT_MARGIN:]
        if len(kept) >= needed:
            return kept
        window *= 2


# Default "latest_turns": the last answer is what the voter judged. Measured by bench/truncation.py on
# arena_dev.csv (7,038 towers, MiniLM tokenizer): "head" loses the last response entirely in 4.5% of towers at
# max_length 512 (1.0% at 1024) and cuts it in 14.4% (3.5%); "latest_turns" never loses it and cuts it in 9.9%
# (1.5%).
_TRUNCATE = {"latest_turns": _truncate_latest_turns, "head": _truncate_head}


def encode_battles(
    prompt: Sequence[Any],
    response_a: Sequence[Any],
    response_b: Sequence[Any],
    tokenizer: Any,
    max_length: int,
    truncation: str = "latest_turns",
    cross_encoder: bool = False,
) -> dict[str, list]:
    """Turn a batch of battles into tower inputs (the one place that does it).

    Args:
        prompt, response_a, response_b: one entry per battle; each a string, a list of turn strings, or a
            Kaggle JSON-list string (see `as_turns`). Prompt and responses must have the same number of turns.
        tokenizer: a fast tokenizer; all turns of the batch are tokenized in one call.
        max_length: token budget per tower, special tokens included.
        truncation: `"latest_turns"` (default) or `"head"`.
        cross_encoder: the joint sequences of a cross-encoder instead of the towers: `input_ids_a` holds the
            order (prompt, a, b) and `input_ids_b` the order (prompt, b, a) (`encode_joint_battles`).

    Returns:
        `{"input_ids_a": [[int]], "input_ids_b": [[int]], "style_a": [[float]], "style_b": [[float]]}`, one
        entry per battle; no padding (see `ArenaCollator`).
    """
    if cross_encoder:
        return encode_joint_battles(prompt, response_a, response_b, tokenizer, max_length, truncation)
    if truncation not in _TRUNCATE:
        raise ValueError(f"truncation={truncation!r} is not one of {tuple(_TRUNCATE)}")
    if not (len(prompt) == len(response_a) == len(response_b)):
        raise ValueError("prompt, response_a and response_b must hold the same number of battles")
    first = tokenizer.cls_token_id if tokenizer.cls_token_id is not None else tokenizer.bos_token_id
    last = tokenizer.sep_token_id if tokenizer.sep_token_id is not None else tokenizer.eos_token_id
    specials = ([first] if first is not None else [], [last] if last is not None else [])
    budget = max_length - len(specials[0]) - len(specials[1])
    user, assistant = tokenizer([USER_MARKER, ASSISTANT_MARKER], add_special_tokens=False)["input_ids"]
    if budget < len(user) + len(assistant) + 2:
        raise ValueError(f"max_length={max_length} leaves no room for a prompt and a response")

    sides, texts, ends = [], [], []
    # A prompt's tail survives truncation ("latest_turns" keeps the end of the last prompt), a response's head.
    prompt_end = "tail" if truncation == "latest_turns" else "head"
    for i, (p, a, b) in enumerate(zip(prompt, response_a, response_b)):
        try:
            turns = list(normalise_battle(dict(zip(BATTLE_KEYS, (p, a, b)))).values())
        except ValueError as err:
            raise ValueError(f"battle {i}: {err}") from None
        sides.append(turns)
        for side, end in zip(turns, (prompt_end, "head", "head")):
            texts.extend(side)
            ends.extend([end] * len(side))
    token_ids = iter(tokenize_within(tokenizer, texts, ends, budget))

    cut = _TRUNCATE[truncation]
    out: dict[str, list] = {"input_ids_a": [], "input_ids_b": [], "style_a": [], "style_b": []}
    for p_turns, a_turns, b_turns in sides:
        p_ids = [next(token_ids) for _ in p_turns]
        a_ids = [next(token_ids) for _ in a_turns]
        b_ids = [next(token_ids) for _ in b_turns]
        for key, r_ids in (("input_ids_a", a_ids), ("input_ids_b", b_ids)):
            out[key].append(specials[0] + cut(p_ids, r_ids, budget, user, assistant) + specials[1])
        out["style_a"].append(style_features(a_turns, b_turns))
        out["style_b"].append(style_features(b_turns, a_turns))
    return out


def encode_battle(battle: Mapping[str, Any], tokenizer: Any, max_length: int, truncation: str = "latest_turns",
                  cross_encoder: bool = False) -> dict:
    """Tower inputs of one battle `{prompt, response_a, response_b}` (see `encode_battles`). Errors name the field
    but no battle index (the caller knows which battle it passed)."""
    turns = normalise_battle(battle)
    batch = encode_battles(*([turns[key]] for key in BATTLE_KEYS), tokenizer, max_length, truncation, cross_encoder)
    return {key: value[0] for key, value in batch.items()}


def _truncate_joint(
    prompts: list[list[int]], firsts: list[list[int]], seconds: list[list[int]], budget: int, markers: list[list[int]]
) -> list[int]:
    """The cross-encoder's rule: keep all three parts of the last exchange, then earlier exchanges, newest first.

    The last exchange always keeps some of its prompt (its tail: at most a quarter of the room unless the answers
    leave more) and some of each answer (its head; the room left is shared equally, an answer shorter than its share
    gives the rest to the other). Earlier exchanges are kept whole while they fit.
    """
    user, first_marker, second_marker = markers
    room = budget - len(user) - len(first_marker) - len(second_marker)
    p, f, s = prompts[-1], firsts[-1], seconds[-1]
    p_keep = min(len(p), max(room // 4, room - len(f) - len(s), 1))
    rest = room - p_keep
    f_keep = min(len(f), max(rest - rest // 2, rest - len(s)))
    s_keep = min(len(s), rest - f_keep)
    last = user + (p[len(p) - p_keep:] if p_keep else []) + first_marker + f[:f_keep] + second_marker + s[:s_keep]
    earlier = (user + p + first_marker + f + second_marker + s
               for p, f, s in zip(reversed(prompts[:-1]), reversed(firsts[:-1]), reversed(seconds[:-1])))
    return _with_earlier_exchanges(last, earlier, budget)


def encode_joint_battles(
    prompt: Sequence[Any],
    response_a: Sequence[Any],
    response_b: Sequence[Any],
    tokenizer: Any,
    max_length: int,
    truncation: str = "latest_turns",
) -> dict[str, list]:
    """A cross-encoder's inputs: one sequence per battle and order, `max_length` tokens at most (special tokens
    included), cut by `_truncate_joint` (all three parts and the latest turns kept).

    Returns `encode_battles`' keys: `input_ids_a` the order (prompt, a, b), `input_ids_b` the order (prompt, b, a),
    `style_a`, `style_b` each side's style features. Swapping A and B in a battle exchanges the two sequences, which
    is what makes `ArenaJointHead` symmetric.
    """
    if truncation != "latest_turns":
        raise ValueError(f"truncation={truncation!r}: a cross-encoder keeps the latest turns of all three parts "
                         "(truncation='latest_turns')")
    if not (len(prompt) == len(response_a) == len(response_b)):
        raise ValueError("prompt, response_a and response_b must hold the same number of battles")
    first = tokenizer.cls_token_id if tokenizer.cls_token_id is not None else tokenizer.bos_token_id
    last = tokenizer.sep_token_id if tokenizer.sep_token_id is not None else tokenizer.eos_token_id
    specials = ([first] if first is not None else [], [last] if last is not None else [])
    budget = max_length - len(specials[0]) - len(specials[1])
    markers = tokenizer(list(JOINT_MARKERS), add_special_tokens=False)["input_ids"]
    if budget < sum(map(len, markers)) + 3:
        raise ValueError(f"max_length={max_length} leaves no room for a prompt and two responses")
    sides, texts, ends = [], [], []
    for i, (p, a, b) in enumerate(zip(prompt, response_a, response_b)):
        try:
            turns = list(normalise_battle(dict(zip(BATTLE_KEYS, (p, a, b)))).values())
        except ValueError as err:
            raise ValueError(f"battle {i}: {err}") from None
        sides.append(turns)
        for side, end in zip(turns, ("tail", "head", "head")):
            texts.extend(side)
            ends.extend([end] * len(side))
    token_ids = iter(tokenize_within(tokenizer, texts, ends, budget))
    out: dict[str, list] = {"input_ids_a": [], "input_ids_b": [], "style_a": [], "style_b": []}
    for p_turns, a_turns, b_turns in sides:
        p_ids = [next(token_ids) for _ in p_turns]
        a_ids = [next(token_ids) for _ in a_turns]
        b_ids = [next(token_ids) for _ in b_turns]
        out["input_ids_a"].append(specials[0] + _truncate_joint(p_ids, a_ids, b_ids, budget, markers) + specials[1])
        out["input_ids_b"].append(specials[0] + _truncate_joint(p_ids, b_ids, a_ids, budget, markers) + specials[1])
        out["style_a"].append(style_features(a_turns, b_turns))
        out["style_b"].append(style_features(b_turns, a_turns))
    return out


# ------------------------------------------------------------------------------------ relevance (content) inputs
# The texts each battle's relevance terms read, each encoded ON ITS OWN (not inside a tower): the whole prompt and
# each whole answer, then the last user turn and each last answer. A frozen sentence encoder's cosine of two texts
# encoded apart says "is this an answer to that", which the towers' mean pools blur.
RELEVANCE_TEXTS = ("prompt", "response_a", "response_b", "last_prompt", "last_response_a", "last_response_b")
# Token budget of each relevance text (special tokens included): MiniLM's sentence-embedding training length.
RELEVANCE_MAX_LENGTH = 256


def relevance_texts(prompt: Sequence[str], response_a: Sequence[str], response_b: Sequence[str]) -> list[str]:
    """The six `RELEVANCE_TEXTS` of one battle (lists of turns): turns joined by blank lines, then the last turns.
    For a single-turn battle the last three are "" (the same as the first three: the model does not encode them
    twice, see `ArenaModel.encode_relevance`)."""
    whole = ["\n\n".join(turns) for turns in (prompt, response_a, response_b)]
    last = [turns[-1] if turns else "" for turns in (prompt, response_a, response_b)] if len(prompt) > 1 else [""] * 3
    return whole + last


# Per-answer signals of a broken answer, in the content view beside relevance: no answer at all, an answer that
# stops mid-sentence, an answer that repeats itself (the label-free training pairs teach that these lose).
ANSWER_FLAGS = ("is_empty", "is_cut_off", "repetition")
_CUT_OFF_END = re.compile(r"[A-Za-z0-9,;]$")
_REPEAT_NGRAM = 6


def answer_flags(turns: Sequence[str]) -> list[float]:
    """`ANSWER_FLAGS` of one answer (its turns): 1.0 when every turn is blank; 1.0 when the last turn's last line
    is a sentence in progress (5+ words ending in a letter, digit, comma or semicolon, outside a code block);
    the share of its word 6-grams that repeat an earlier one (0 below 12 words; ~0.5 for an answer said twice)."""
    empty = not any(turn.strip() for turn in turns)
    last = turns[-1].strip() if turns else ""
    tail = last.rsplit("\n", 1)[-1].strip()
    in_code = last.count("```") % 2 == 1
    cut = bool(_CUT_OFF_END.search(tail)) and len(tail.split()) >= 5 and not in_code
    words = "\n".join(turns).split()
    grams = [tuple(words[i : i + _REPEAT_NGRAM]) for i in range(len(words) - _REPEAT_NGRAM + 1)]
    repetition = 1 - len(set(grams)) / len(grams) if len(words) >= 12 else 0.0
    return [float(empty), float(cut and not empty), float(repetition)]


def encode_relevance(
    prompt: Sequence[Any],
    response_a: Sequence[Any],
    response_b: Sequence[Any],
    tokenizer: Any,
    max_length: int = RELEVANCE_MAX_LENGTH,
) -> dict[str, list]:
    """Inputs of the relevance terms, per battle (the one place that builds them, for training, the pipeline and
    the studies): `prompt_ids`, `answer_ids_a`, `answer_ids_b`: each `[whole ids, last-turn ids]`, the
    `RELEVANCE_TEXTS` each truncated to `max_length` from its end (the start of an answer says what it answers);
    the last-turn entry of a single-turn battle is `[]` (not encoded: the model copies the whole text's vector).
    `answer_flags_a`, `answer_flags_b`: `answer_flags` of each answer. An empty answer still gets its special
    tokens: it is encoded, and its cosine with the prompt is what an empty text earns."""
    if not (len(prompt) == len(response_a) == len(response_b)):
        raise ValueError("prompt, response_a and response_b must hold the same number of battles")
    texts: list[str] = []
    skip: list[bool] = []  # the last-turn slots of single-turn battles
    flags: list[list[list[float]]] = []
    for i, (p, a, b) in enumerate(zip(prompt, response_a, response_b)):
        try:
            turns = list(normalise_battle(dict(zip(BATTLE_KEYS, (p, a, b)))).values())
        except ValueError as err:
            raise ValueError(f"battle {i}: {err}") from None
        texts.extend(relevance_texts(*turns))
        skip.extend([False] * 3 + [len(turns[0]) <= 1] * 3)
        flags.append([answer_flags(turns[1]), answer_flags(turns[2])])
    ids = tokenizer(texts, truncation=True, max_length=max_length, add_special_tokens=True)["input_ids"]
    ids = [[] if empty else list(seq) for seq, empty in zip(ids, skip)]
    out: dict[str, list] = {"prompt_ids": [], "answer_ids_a": [], "answer_ids_b": [], "answer_flags_a": [],
                            "answer_flags_b": []}
    for n in range(len(flags)):
        slots = ids[6 * n : 6 * n + 6]  # RELEVANCE_TEXTS order: whole p, a, b, then last p, a, b
        for k, key in enumerate(("prompt_ids", "answer_ids_a", "answer_ids_b")):
            out[key].append([slots[k], slots[k + 3]])
        out["answer_flags_a"].append(flags[n][0])
        out["answer_flags_b"].append(flags[n][1])
    return out


def with_relevance(encoded: dict[str, list], prompt: Sequence[Any], response_a: Sequence[Any],
                   response_b: Sequence[Any], tokenizer: Any, config: Any) -> dict[str, list]:
    """`encoded` (from `encode_battles`) plus the relevance inputs (`encode_relevance`) when the model has relevance
    terms (`config.relevance`); `encoded` itself otherwise."""
    if not getattr(config, "relevance", False):
        return encoded
    return encoded | encode_relevance(prompt, response_a, response_b, tokenizer,
                                      getattr(config, "relevance_max_length", RELEVANCE_MAX_LENGTH))


def tokenizer_fingerprint(tokenizer: Any) -> str:
    """sha256 of the tokenizer's vocabulary: saved in config.json (`tokenizer_fingerprint`) so that a model is never
    served with another tokenizer than the one it was trained with (a deleted tokenizer.json makes transformers
    fall back to a few-token tokenizer that reads every word as [UNK], silently)."""
    vocab = json.dumps(sorted(tokenizer.get_vocab().items()), ensure_ascii=False)
    return hashlib.sha256(vocab.encode("utf-8")).hexdigest()


def check_tokenizer(config: Any, tokenizer: Any, where: str) -> None:
    """Raise ValueError when `tokenizer` is not the one the model in `where` was saved with (configs saved before
    the fingerprint existed are not checked)."""
    expected = getattr(config, "tokenizer_fingerprint", None)
    if expected and tokenizer is not None and tokenizer_fingerprint(tokenizer) != expected:
        raise ValueError(f"{where}: the tokenizer loaded with this model ({len(tokenizer)} tokens) is not the one it "
                         "was saved with (tokenizer.json missing or replaced?); save or download the model again")


@dataclass
class ArenaCollator:
    """Pads both towers of a batch to the longest tower in it (not to max_length) and stacks the rest.

    Features: `input_ids_a`, `input_ids_b` (lists of ids) or, for a head trained on a frozen encoder,
    `pooled_a`, `pooled_b` (lists of floats); optional `style_a`, `style_b` (lists of floats) and `labels` (an int
    class id, or 3 floats for soft labels). Returns `input_ids_a/b`, `attention_mask_a/b` (B x L) or `pooled_a/b`
    (B x H), `style_a/b` (B x F) and `labels` (B,) or (B x 3).
    """

    pad_token_id: int
    pad_to_multiple_of: int | None = None

    def __call__(self, features: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        pooled = "pooled_a" in features[0]
        length = 0 if pooled else max(max(len(f["input_ids_a"]), len(f["input_ids_b"])) for f in features)
        if self.pad_to_multiple_of:
            length = -(-length // self.pad_to_multiple_of) * self.pad_to_multiple_of
        batch: dict[str, torch.Tensor] = {}
        for side in ("a", "b"):
            if pooled:
                batch[f"pooled_{side}"] = torch.stack(
                    [torch.as_tensor(f[f"pooled_{side}"], dtype=torch.float32) for f in features])
            else:
                ids = torch.full((len(features), length), self.pad_token_id, dtype=torch.long)
                mask = torch.zeros((len(features), length), dtype=torch.long)
                for row, f in enumerate(features):
                    seq = f[f"input_ids_{side}"]
                    ids[row, : len(seq)] = torch.as_tensor(seq, dtype=torch.long)
                    mask[row, : len(seq)] = 1
                batch[f"input_ids_{side}"] = ids
                batch[f"attention_mask_{side}"] = mask
            if features[0].get(f"style_{side}") is not None:
                batch[f"style_{side}"] = torch.tensor([f[f"style_{side}"] for f in features], dtype=torch.float32)
        batch.update(collate_relevance(features, self.pad_token_id))
        labels = [f.get("labels", f.get("label")) for f in features]
        if all(label is not None for label in labels):
            soft = isinstance(labels[0], (list, tuple)) or (torch.is_tensor(labels[0]) and labels[0].ndim == 1)
            batch["labels"] = torch.tensor(labels, dtype=torch.float32 if soft else torch.long)
        return batch


RELEVANCE_SIDES = ("prompt", "answer_a", "answer_b")


def _relevance_key(side: str, what: str) -> str:
    """"prompt", "ids" -> "prompt_ids"; "answer_a", "ids" -> "answer_ids_a" (A/B last, as the towers' keys)."""
    return f"prompt_{what}" if side == "prompt" else f"answer_{what}_{side[-1]}"


def collate_relevance(features: Sequence[Mapping[str, Any]], pad_token_id: int) -> dict[str, torch.Tensor]:
    """The relevance inputs of a batch of B battles (`encode_relevance`), where present: `prompt_input_ids`,
    `answer_input_ids_a`, `answer_input_ids_b` and their `*_attention_mask` `(B, 2, L)` (whole text, last turn;
    all three padded to one length L, so that A and B can be exchanged; an all-zero mask row is a slot not to
    encode), or, from a frozen encoder's cache, `prompt_pooled`, `answer_pooled_a`, `answer_pooled_b` `(B, 2, H)`;
    and `answer_flags_a`, `answer_flags_b` `(B, len(ANSWER_FLAGS))`."""
    first, batch = features[0], {}
    if "prompt_pooled" in first:
        for side in RELEVANCE_SIDES:
            key = _relevance_key(side, "pooled")
            batch[key] = torch.stack([torch.as_tensor(f[key], dtype=torch.float32) for f in features])
    elif "prompt_ids" in first:
        length = max(1, max(len(seq) for f in features for side in RELEVANCE_SIDES
                            for seq in f[_relevance_key(side, "ids")]))
        for side in RELEVANCE_SIDES:
            ids = torch.full((len(features), 2, length), pad_token_id, dtype=torch.long)
            mask = torch.zeros((len(features), 2, length), dtype=torch.long)
            for row, f in enumerate(features):
                for slot, seq in enumerate(f[_relevance_key(side, "ids")]):
                    ids[row, slot, : len(seq)] = torch.as_tensor(seq, dtype=torch.long)
                    mask[row, slot, : len(seq)] = 1
            batch[_relevance_key(side, "input_ids")] = ids
            batch[_relevance_key(side, "attention_mask")] = mask
    for side in ("a", "b"):
        if first.get(f"answer_flags_{side}") is not None:
            batch[f"answer_flags_{side}"] = torch.tensor([f[f"answer_flags_{side}"] for f in features],
                                                         dtype=torch.float32)
    return batch


__all__ = [
    "BATTLE_KEYS", "ArenaCollator", "BattleFieldError", "JOINT_MARKERS", "STYLE_FEATURES", "as_turns", "encode_battle",
    "encode_battles", "encode_joint_battles",
    "check_tokenizer", "loads_json", "normalise_battle", "style_features", "tokenize_within", "tokenizer_fingerprint",
    "ANSWER_FLAGS", "RELEVANCE_MAX_LENGTH", "RELEVANCE_TEXTS", "answer_flags", "encode_relevance", "relevance_texts",
    "with_relevance", "collate_relevance", "RELEVANCE_SIDES",
]
