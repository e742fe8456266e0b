"""Extraction: the model proposes facts about the user as JSON; code validates and grounds them.

- `extract_facts(conversation, client)`: one model call; `parse_facts` validates the
  reply's shape (a malformed reply raises `ExtractionError` with the raw text, and
  nothing is written); `ground_facts` keeps only facts something the user said
  supports, and finds the turn each came from.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..backend.client import current_settings
from .store import MAX_FACT_CHARS, STOPWORDS, ExtractionError, Message, ProposedFact

# --- Extraction: the model proposes facts as JSON ---------------------------------------

EXTRACTION_INSTRUCTIONS = (
    "You extract facts that a user states about themselves, to remember in later conversations. "
    "Reply with only a JSON array, no other text. Each item is an object: "
    '{"fact": "<one short sentence about the user>", "turn": <number of the user message>}. '
    "Keep names, dates, numbers, allergies, budgets and preferences. Reply [] if there are none."
)
# One worked example, sent as an earlier exchange: small models copy a format far better than they
# follow a description of it. Its facts are about someone else, so a fact copied from it is not
# supported by anything the user said, and `ground_facts` rejects it.
EXTRACTION_EXAMPLE = (
    (
        "Conversation:\n<conversation>\nuser message 1: Hello, my name is Tom.\n"
        "user message 2: I am vegetarian and I live in Oslo.\n</conversation>"
    ),
    (
        '[{"fact": "The user is called Tom.", "turn": 1}, {"fact": "The user is vegetarian.", "turn": 2}, '
        '{"fact": "The user lives in Oslo.", "turn": 2}]'
    ),
)


def _user_texts(conversation: Sequence[Message]) -> list[str]:
    return [" ".join(str(m.get("content") or "").split()) for m in conversation if m.get("role") == "user"]


def extraction_request(
    conversation: Sequence[Message], *, roles: Sequence[str] = ("user",), example: bool = True
) -> list[Message]:
    """The messages an extraction call sends: instructions, a worked example, then the numbered messages of `roles`.

    By default only the user's messages: facts about the user come from what the
    user said, not from the assistant's replies. The conversation travels as
    quoted text inside one user message, so the model extracts instead of
    continuing the chat. `example=False` leaves out the worked example.
    """
    lines = []
    number = 0
    for message in conversation:
        if message.get("role") == "user":
            number += 1
        if message.get("role") in roles:
            text = " ".join(str(message.get("content") or "").split())
            label = f"user message {number}" if message["role"] == "user" else message["role"]
            lines.append(f"{label}: {text}")
    if not lines:
        raise ValueError(f"the conversation has no {' or '.join(roles)} message to extract facts from")
    shots: list[Message] = []
    if example:
        shots = [
            {"role": "user", "content": EXTRACTION_EXAMPLE[0]},
            {"role": "assistant", "content": EXTRACTION_EXAMPLE[1]},
        ]
    return [
        {"role": "system", "content": EXTRACTION_INSTRUCTIONS},
        *shots,
        {"role": "user", "content": "Conversation:\n<conversation>\n" + "\n".join(lines) + "\n</conversation>"},
    ]


MAX_REPLY_CHARS = 20_000  # an extraction reply is a few hundred characters; parse no more than this


def _json_candidates(raw: str) -> list[str]:
    """Pieces of `raw` that may be the JSON: the whole text, a fenced block, the outermost [...] or {...}."""
    candidates = [raw.strip()]
    fenced = re.search(r"```(?:json)?\s*(.*?)```", raw, re.DOTALL)
    if fenced:
        candidates.append(fenced.group(1).strip())
    for opening, closing in ("[]", "{}"):
        start, end = raw.find(opening), raw.rfind(closing)
        if 0 <= start < end:
            candidates.append(raw[start : end + 1])
    return candidates


def parse_facts(
    raw: str, *, max_facts: int = 10, max_chars: int = MAX_FACT_CHARS, user_turns: int | None = None
) -> list[ProposedFact]:
    """The facts in a model's JSON reply, validated; `ExtractionError` (with `.raw`) if anything is off.

    Lenient about *where* the JSON is (surrounding prose, a code fence, an object
    ``{"facts": [...]}``), strict about *what* it holds: a list of at most
    `max_facts` objects, each with a non-empty ``"fact"`` string of at most
    `max_chars` characters and, optionally, an integer ``"turn"`` (between 1 and
    `user_turns`, if given). One bad item rejects the whole reply. A reply longer
    than `MAX_REPLY_CHARS`, or nested deeper than the JSON parser allows, is
    refused before or while parsing, with `ExtractionError`, never a raw error.
    """
    if not isinstance(raw, (str, type(None))):
        raise TypeError(f"parse_facts expects the reply's text (a str), not {type(raw).__name__}")
    if raw is not None and len(raw) > MAX_REPLY_CHARS:
        raise ExtractionError(
            f"The reply has {len(raw)} characters, over the cap of {MAX_REPLY_CHARS}: not parsed; nothing was stored.",
            raw=raw[:MAX_REPLY_CHARS],
        )
    data: Any = None
    other: Any = None  # the first JSON value found that is not a list of facts
    for candidate in _json_candidates(raw or ""):
        try:
            parsed = json.loads(candidate)
        except json.JSONDecodeError:
            continue
        except RecursionError as error:
            raise ExtractionError(
                "The reply's JSON is nested too deeply to be a list of facts; nothing was stored.", raw=raw
            ) from error
        if isinstance(parsed, dict) and isinstance(parsed.get("facts"), list):
            parsed = parsed["facts"]
        if isinstance(parsed, list):
            data = parsed
            break
        if other is None:
            other = parsed
    if data is None:
        if other is None or "[" in (raw or ""):
            raise ExtractionError(
                "The reply holds no complete JSON array (it is not JSON, or it was cut off by max_tokens); "
                "nothing was stored.",
                raw=raw,
            )
        raise ExtractionError(
            f"Expected a JSON array of facts, got {type(other).__name__}; nothing was stored.", raw=raw
        )
    if len(data) > max_facts:
        raise ExtractionError(
            f"{len(data)} facts proposed, more than the limit of {max_facts}; nothing was stored.", raw=raw
        )
    facts = []
    for index, item in enumerate(data):
        where = f"item {index}"
        if not isinstance(item, dict):
            raise ExtractionError(
                f"{where} is {type(item).__name__}, not an object with a 'fact'; nothing was stored.", raw=raw
            )
        text = item.get("fact")
        if not isinstance(text, str) or not text.strip():
            raise ExtractionError(f"{where} has no non-empty 'fact' string; nothing was stored.", raw=raw)
        text = " ".join(text.split())
        if len(text) > max_chars:
            raise ExtractionError(
                f"{where}'s fact has {len(text)} characters, over the cap of {max_chars}; nothing was stored.", raw=raw
            )
        turn = item.get("turn")
        bad_turn = isinstance(turn, bool) or not isinstance(turn, int) or turn < 1
        if turn is not None and (bad_turn or (user_turns is not None and turn > user_turns)):
            limit = f" between 1 and {user_turns}" if user_turns is not None else " of at least 1"
            raise ExtractionError(f"{where}'s turn {turn!r} is not an integer{limit}; nothing was stored.", raw=raw)
        facts.append(ProposedFact(text=text, turn=turn))
    return facts


# --- Grounding: a fact must rest on something the user said ----------------------------------

# Words that say nothing about *what* a fact is: a fact made only of these is supported by nothing.
GENERIC_WORDS = STOPWORDS | frozenset(
    [
        "user",
        "users",
        "she",
        "he",
        "her",
        "his",
        "him",
        "they",
        "them",
        "she's",
        "he's",
        "called",
        "named",
        "name",
        "is",
        "likes",
        "like",
        "liked",
        "loves",
        "love",
        "prefers",
        "prefer",
        "preferred",
        "wants",
        "want",
        "wanted",
        "needs",
        "need",
        "has",
        "have",
        "having",
        "would",
        "rather",
        "also",
        "always",
        "really",
        "very",
        "much",
        "lot",
        "lots",
        "one",
        "two",
        "some",
        "thing",
        "things",
        "re",
        "ll",
        "ve",
    ]
)


def _content_words(text: str) -> list[str]:
    """The words of `text` that carry meaning, in order, lower-cased, a plural "s" dropped."""
    words = []
    for word in re.findall(r"[^\W_]+", text.lower()):
        if word in GENERIC_WORDS or (len(word) < 2 and not word.isdigit()):
            continue
        if len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
            word = word[:-1]
        if word not in words:
            words.append(word)
    return words


def _same_word(a: str, b: str) -> bool:
    """Equal, or sharing their first five letters (allergic / allergy)."""
    return a == b or (len(a) >= 5 and len(b) >= 5 and a[:5] == b[:5])


@dataclass(frozen=True)
class RejectedFact:
    """A proposed fact that was not stored, and why."""

    text: str
    reason: str


def ground_facts(
    facts: Sequence[ProposedFact], conversation: Sequence[Message]
) -> tuple[list[ProposedFact], list[RejectedFact]]:
    """Split proposed facts into those the user's own messages support and those they do not.

    A fact is supported when one of its content words (not a common word such as
    "the", "user" or "prefers") appears in a user message, or shares its first
    five letters with one there (allergic / allergy). When a fact has two content
    words or more, the first one (usually whom it is about: "Maya is vegetarian")
    does not count, so the user's name alone supports nothing. Its `turn` becomes
    the user message with the most supporting words (the earliest, on a tie): the
    model's own turn number is not trusted. Facts supported by nothing (invented,
    or copied from the prompt's example) are returned as `RejectedFact`s with the
    reason. Duplicates are dropped. This is a cheap keyword check, not proof: it
    catches invented topics, not a wrong number about a real one.
    """
    user_words = [set(_content_words(text)) for text in _user_texts(conversation)]
    accepted: list[ProposedFact] = []
    rejected: list[RejectedFact] = []
    seen: set[str] = set()
    for fact in facts:
        if fact.text.lower() in seen:
            rejected.append(RejectedFact(fact.text, "a duplicate of an earlier fact"))
            continue
        seen.add(fact.text.lower())
        words = _content_words(fact.text)
        words = words[1:] if len(words) > 1 else words
        overlaps = [sum(any(_same_word(w, u) for u in said) for w in words) for said in user_words]
        best = max(overlaps, default=0)
        if best == 0:
            reason = f"no user message mentions {', '.join(words)}" if words else "it holds only common words"
            rejected.append(RejectedFact(fact.text, reason))
            continue
        accepted.append(ProposedFact(text=fact.text, turn=overlaps.index(best) + 1))
    return accepted, rejected


@dataclass(frozen=True)
class Extraction:
    """One extraction call: the facts that passed validation, the ones rejected, the raw reply and its tokens."""

    facts: list[ProposedFact]
    rejected: list[RejectedFact]
    raw: str
    prompt_tokens: int
    completion_tokens: int


def extract_facts(
    conversation: Sequence[Message],
    client: Any,
    *,
    model: str | None = None,
    max_tokens: int = 200,
    max_facts: int = 10,
    response_format: dict[str, Any] | None = None,
) -> Extraction:
    """Ask the model for the facts in a finished conversation, as JSON, and validate them.

    Stores nothing: pass `extraction.facts` to `MemoryStore.add_facts`. Raises
    `ExtractionError` (with the raw reply) when the reply is not a valid list of
    facts (not JSON, the wrong shape, cut off by `max_tokens`), and lets the SDK's
    errors through. Facts that parse but that nothing the user said supports are
    left out of `facts` and listed in `rejected` (see `ground_facts`).
    `response_format` is passed to the API (e.g. ``{"type": "json_object"}`` for
    JSON mode, where the backend has it).
    """
    request = extraction_request(conversation)
    options: dict[str, Any] = {"max_tokens": max_tokens, "temperature": 0}
    if response_format is not None:
        options["response_format"] = response_format
    response = client.chat.completions.create(model=model or current_settings().model, messages=request, **options)
    raw = response.choices[0].message.content or ""
    proposed = parse_facts(raw, max_facts=max_facts)
    facts, rejected = ground_facts(proposed, conversation)
    return Extraction(
        facts=facts,
        rejected=rejected,
        raw=raw,
        prompt_tokens=response.usage.prompt_tokens,
        completion_tokens=response.usage.completion_tokens,
    )
