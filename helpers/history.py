"""Keeping a conversation inside a token budget: windows, budgets and summaries.

Every function here takes a history (a list of ``{"role": ..., "content": ...}``
dicts, as the loop of notebook 01 builds it) and returns a **new** list: the input
is never changed, so a learner can try several strategies on the same history.

A *turn* starts at a user message and runs up to the next one: the question and
the reply (and anything between them). Strategies drop whole turns, so an
assistant reply is never sent without the question it answers.

- `sliding_window(history, keep_turns)`: system messages + the last N turns.
- `trim_to_budget(history, max_prompt_tokens)`: drop the oldest turns until the
  prompt fits a token budget.
- Summaries of old turns, four designs behind one interface (`Summarizer`):
  `RewriteSummary` (the classic: the model rewrites "summary so far + new turns"),
  `FoldNotes` (one model-written note per fold, from the user's lines, appended by
  code), `JudgedNotes` (the model judges which of the user's sentences state facts,
  code copies them) and `UserStatements` (the default: code copies the user's own
  statements word for word; the model only compacts them past a cap).
- `SummaryBuffer`: summarize-and-continue. Recent turns verbatim, older ones
  folded into a running summary once the history passes a threshold.

Why the default copies instead of rewriting: every rewrite of a summary is another
chance to drop a fact, and a fact dropped once is gone for every later summary (a
game of telephone). The facts a user gives live in the user's own lines; the
assistant's replies are long and mostly restate the question. Notebook 03 measures
the three designs fold by fold.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from .backend.client import count_text_tokens, count_tokens, current_settings
from .backend.usage import read_usage
from .errors import HelpersError
from .types import Message, TokenCounter

SummaryPlacement = Literal["system", "user_data"]


class HistoryTooLongError(HelpersError, ValueError):
    """Even the smallest history a strategy may send (system messages and the newest turn) is over budget."""

    def __init__(self, message: str, *, needed: int, budget: int):
        super().__init__(message)
        self.needed = needed
        self.budget = budget


class SummaryError(HelpersError):
    """The summarizer returned no usable text; nothing was changed."""


def split_turns(history: Sequence[Message]) -> tuple[list[int], list[list[int]]]:
    """Positions of the system messages, and of each turn's messages, in `history`.

    A turn starts at a user message; non-system messages before the first user
    message (an assistant greeting, say) form a turn of their own.
    """
    system_positions: list[int] = []
    turns: list[list[int]] = []
    for position, message in enumerate(history):
        role = message.get("role")
        if role in ("system", "developer"):
            system_positions.append(position)
        elif role == "user" or not turns:
            turns.append([position])
        else:
            turns[-1].append(position)
    return system_positions, turns


def _keep(history: Sequence[Message], system_positions: list[int], turns: list[list[int]]) -> list[Message]:
    """Copies of the system messages and the given turns, in their original order."""
    keep = set(system_positions)
    for turn in turns:
        keep.update(turn)
    return [copy.deepcopy(message) for position, message in enumerate(history) if position in keep]


def count_turns(history: Sequence[Message]) -> int:
    """How many turns `history` holds (system messages are not turns)."""
    return len(split_turns(history)[1])


def sliding_window(history: Sequence[Message], keep_turns: int) -> list[Message]:
    """Every system message plus the last `keep_turns` turns, in order, as a new list.

    >>> h = [{"role": "system", "content": "s"}, {"role": "user", "content": "a"},
    ...      {"role": "assistant", "content": "A"}, {"role": "user", "content": "b"}]
    >>> [m["content"] for m in sliding_window(h, 1)]
    ['s', 'b']
    """
    if keep_turns < 1:
        raise ValueError(f"keep_turns must be at least 1 (the newest turn), not {keep_turns}")
    system_positions, turns = split_turns(history)
    return _keep(history, system_positions, turns[-keep_turns:])


def trim_to_budget(
    history: Sequence[Message],
    max_prompt_tokens: int,
    *,
    count: TokenCounter = count_tokens,
    pinned: Callable[[Message], bool] | Collection[Message] | None = None,
) -> list[Message]:
    """The newest turns that fit in `max_prompt_tokens`, with every system message, as a new list.

    Drops the oldest turns one at a time until `count(messages)` (by default
    `helpers.count_tokens`, exact on the embedded model) is within the budget. The
    system messages (a running summary included) and the newest turn are always
    kept; when even they do not fit, raises `HistoryTooLongError` with the figures.

    `pinned` names other messages that are never dropped, kept in their place:
    a predicate (``pinned=lambda m: m is summary``), or a collection of the message
    objects themselves, matched by identity (``pinned=[summary, memories]``). Pin
    the messages your own code made (a summary sent as data, retrieved memories),
    never by what their text looks like: a user can type anything. Pinned
    messages are not part of any turn; the turns are formed from the rest.
    """
    if max_prompt_tokens < 1:
        raise ValueError(f"max_prompt_tokens must be positive, not {max_prompt_tokens}")
    if pinned is None:
        pinned_positions: set[int] = set()
    elif callable(pinned):
        pinned_positions = {position for position, message in enumerate(history) if pinned(message)}
    else:
        pinned_ids = {id(message) for message in pinned}
        pinned_positions = {position for position, message in enumerate(history) if id(message) in pinned_ids}
    system_positions, _ = split_turns(history)
    kept = set(system_positions) | pinned_positions
    free = [position for position in range(len(history)) if position not in kept]
    _, free_turns = split_turns([history[position] for position in free])
    turns = [[free[index] for index in turn] for turn in free_turns]
    always = sorted(kept)
    if not turns:
        raise ValueError("the history has no user turn to send")
    # Fewest turns first would need n counts in the common case; a binary search needs log n.
    low, high = 1, len(turns)  # the answer: the most turns that fit, at least 1
    smallest = _keep(history, always, turns[-1:])
    needed = int(count(smallest))
    if needed > max_prompt_tokens:
        what = "system messages" if len(always) == len(system_positions) else "system and pinned messages"
        raise HistoryTooLongError(
            f"The {what} and the newest turn alone take {needed} prompt tokens, over the budget of "
            f"{max_prompt_tokens}. Shorten the newest message or the system prompt, or raise the budget.",
            needed=needed,
            budget=max_prompt_tokens,
        )
    while low < high:  # prompt size only grows with more turns kept
        middle = (low + high + 1) // 2
        if int(count(_keep(history, always, turns[-middle:]))) <= max_prompt_tokens:
            low = middle
        else:
            high = middle - 1
    return _keep(history, always, turns[-low:])


# --- Summaries -----------------------------------------------------------------

SUMMARY_INSTRUCTIONS = (
    "You keep a short running summary of a conversation between a user and an assistant. "
    "Keep every fact the user gave about themselves: name, dates, numbers, budget, allergies, "
    "preferences, plans. Keep decisions and recommendations the assistant made. "
    "Write plain sentences in the third person, at most {max_words} words, with no introduction."
)
CHAT_ROLES = ("user", "assistant")


def transcript(messages: Sequence[Message], roles: Sequence[str] = CHAT_ROLES) -> str:
    """The messages of `roles` as plain text, one ``role: text`` line each (tool results as ``tool``)."""
    lines = []
    for message in messages:
        if message.get("role") not in roles:
            continue
        text = " ".join(str(message.get("content") or "").split())
        lines.append(f"{message['role']}: {text}")
    return "\n".join(lines)


def summary_request(
    messages: Sequence[Message], previous_summary: str = "", *, max_words: int = 60, roles: Sequence[str] = CHAT_ROLES
) -> list[Message]:
    """The messages a summarizer call sends: instructions, the summary so far, and only the new turns.

    The turns travel as quoted text inside one user message, not as chat turns,
    so the model summarizes them instead of continuing the conversation. Both are
    `helpers.sanitize.data_block`s: markers with a random nonce, and every ``<`` and
    ``>`` inside escaped, so no user text can close the block and speak as instructions.
    """
    from .sanitize import data_block

    parts = []
    if previous_summary:
        parts.append(f"Summary so far:\n{data_block(previous_summary, 'summary').text}\n")
    parts.append(f"New turns:\n{data_block(transcript(messages, roles), 'turns').text}\n")
    parts.append(
        "Write the updated summary: the summary so far extended with the new turns."
        if previous_summary
        else "Write the summary."
    )
    return [
        {"role": "system", "content": SUMMARY_INSTRUCTIONS.format(max_words=max_words)},
        {"role": "user", "content": "\n".join(parts)},
    ]


@dataclass(frozen=True)
class SummaryCall:
    """One fold of the summary: the new summary text and the model tokens it cost (all calls of the fold)."""

    text: str
    folded_messages: int
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    truncated: bool
    calls: int = 1
    dropped: tuple[str, ...] = ()  # notes compacted to stay under the cap (UserStatements)

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


def _clean_summary(text: str, truncated: bool) -> str:
    text = " ".join(text.split())
    if truncated:  # cut at max_tokens: drop the unfinished sentence, if a finished one exists
        end = max(text.rfind(". "), text.rfind("! "), text.rfind("? "))
        if text.endswith((".", "!", "?")):
            end = len(text) - 1
        if end > 0:
            text = text[: end + 1]
    return text


def _has_turns(messages: Sequence[Message]) -> None:
    if not any(m.get("role") not in ("system", "developer") for m in messages):
        raise ValueError("nothing to summarize: give at least one user or assistant message")


def summarize(
    messages: Sequence[Message],
    client: Any,
    *,
    previous_summary: str = "",
    model: str | None = None,
    max_words: int = 60,
    max_tokens: int = 100,
    roles: Sequence[str] = CHAT_ROLES,
) -> SummaryCall:
    """A model-written summary of `messages`, extending `previous_summary` if given.

    Incremental: only `messages` (the turns not yet summarized) and the previous
    summary are sent, so the cost does not grow with the whole conversation.
    The reply is capped at `max_tokens`; a reply cut by the cap is trimmed back to
    its last full sentence. Raises `SummaryError` when the model returns no text,
    and lets the SDK's errors (`openai.APIError`) through untouched.
    """
    _has_turns(messages)
    response = client.chat.completions.create(
        model=model or current_settings().model,
        messages=summary_request(messages, previous_summary, max_words=max_words, roles=roles),
        max_tokens=max_tokens,
    )
    text, truncated = _summary_reply(response)
    if not text:
        raise SummaryError("The summarizer returned no text; the history was left as it was.")
    return _model_call(text, messages, response, truncated)


def _summary_reply(response: Any) -> tuple[str, bool]:
    """The reply's text, trimmed back to a full sentence if the cap cut it, and whether it was cut."""
    choice = response.choices[0]
    truncated = choice.finish_reason == "length"
    return _clean_summary(choice.message.content or "", truncated), truncated


def _model_call(text: str, messages: Sequence[Message], response: Any, truncated: bool) -> SummaryCall:
    """A fold that made one model call: its text and the tokens `response` reports."""
    usage = read_usage(response.usage)
    return SummaryCall(
        text=text,
        folded_messages=len(messages),
        prompt_tokens=usage.prompt_tokens,
        completion_tokens=usage.completion_tokens,
        cached_tokens=usage.cached_tokens or 0,
        truncated=truncated,
    )


class Summarizer(Protocol):
    """Folds old turns into the running summary. A failed fold raises and changes nothing."""

    name: str

    def fold(self, messages: Sequence[Message], previous: str, client: Any, model: str | None) -> SummaryCall:
        """The new summary after folding `messages` into `previous`, with what it cost."""
        ...


@dataclass(frozen=True)
class RewriteSummary:
    """The classic design: the model rewrites the summary so far plus the new turns (`summarize`).

    Every fold rewrites everything: a fact survives only if every rewrite copies it forward.
    `roles=("user",)` summarizes the user's lines only.
    """

    max_words: int = 60
    max_tokens: int = 100
    roles: tuple[str, ...] = CHAT_ROLES
    name: str = "rewrite"

    def fold(self, messages: Sequence[Message], previous: str, client: Any, model: str | None) -> SummaryCall:
        return summarize(
            messages,
            client,
            previous_summary=previous,
            model=model,
            max_words=self.max_words,
            max_tokens=self.max_tokens,
            roles=self.roles,
        )


NOTE_INSTRUCTIONS = (
    "Write one short note, at most {max_words} words, of what the user says about themselves below: "
    "names, dates, numbers, health needs, preferences and plans. Copy names and numbers exactly. "
    "If they say nothing about themselves, write NONE."
)


@dataclass(frozen=True)
class FoldNotes:
    """One model-written note per fold, from the folded user lines only; code appends it to the earlier notes.

    No earlier note is rewritten, so a fact kept once stays; each note is still the model's paraphrase.
    """

    max_words: int = 30
    max_tokens: int = 60
    name: str = "note per fold"

    def request(self, messages: Sequence[Message]) -> list[Message]:
        return [
            {"role": "system", "content": NOTE_INSTRUCTIONS.format(max_words=self.max_words)},
            {"role": "user", "content": f"<user_lines>\n{transcript(messages, ('user',))}\n</user_lines>"},
        ]

    def fold(self, messages: Sequence[Message], previous: str, client: Any, model: str | None) -> SummaryCall:
        _has_turns(messages)
        response = client.chat.completions.create(
            model=model or current_settings().model, messages=self.request(messages), max_tokens=self.max_tokens
        )
        note, truncated = _summary_reply(response)
        keep = note and "NONE" not in note.upper().split()
        text = "\n".join(line for line in (previous, f"- {note}" if keep else "") if line)
        if not text:
            raise SummaryError("The note-taker found nothing to note yet; the history was left as it was.")
        return _model_call(text, messages, response, truncated)


_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[\"'(A-Z0-9])")


def sentences(text: str) -> list[str]:
    """`text` split into sentences (at ., ! or ? followed by a capital, a digit or a quote)."""
    return [part.strip() for part in _SENTENCE_END.split(" ".join(str(text).split())) if part.strip()]


def is_statement(sentence: str, min_words: int = 3) -> bool:
    """True for a sentence that tells rather than asks: not a question, and more than a greeting."""
    return not sentence.rstrip().endswith("?") and len(sentence.split()) >= min_words


def statements(text: str) -> list[str]:
    """The parts of `text` that tell rather than ask: its sentences that are not questions, and the
    leading clauses of its questions ("I'm vegetarian" in "I'm vegetarian, so what can I order?").

    >>> statements("Hi! I land on 2 June. As a vegetarian, what should I eat? Is Porto nice?")
    ['I land on 2 June.', 'As a vegetarian']
    """
    kept = []
    for sentence in sentences(text):
        if is_statement(sentence):
            kept.append(sentence)
        elif sentence.rstrip().endswith("?"):
            clauses = [clause.strip() for clause in re.split(r",\s+", sentence)]
            kept += [clause for clause in clauses[:-1] if len(clause.split()) >= 2 and not _asks(clause)]
    return kept


# Words that open a question ("What is a ryokan, and ...?"): a clause starting with one asks, it does not tell.
QUESTION_OPENERS = frozenset(
    "what which who whom whose where when why how is are am was were do does did can could should would will shall "
    "may might must".split()
)


def _asks(clause: str) -> bool:
    first = clause.split()[0].strip("\"'(").lower()
    return first in QUESTION_OPENERS


def _notes(summary: str) -> list[str]:
    return [line[2:] for line in summary.splitlines() if line.startswith("- ")]


def _bullets(notes: Sequence[str]) -> str:
    return "\n".join(f"- {note}" for note in notes)


@dataclass(frozen=True)
class UserStatements:
    """The default: the user's own statements, copied word for word by code; no model call per fold.

    Of the folded messages, only the user's are read (the facts a user gives live there), and
    of those only `statements`: sentences that tell rather than ask, and the leading clauses of
    questions ("As a vegetarian, what should I eat?" keeps "As a vegetarian"); greetings and
    plain questions are left out. Each is appended verbatim to the earlier notes, so names and
    numbers are never paraphrased and no note is ever rewritten. Past `cap_tokens`, the oldest
    notes are compacted: the model rewrites them into one line (`summarize`), whose cost is
    counted in that fold and which can lose facts, as every rewrite can. What it misses: a fact
    asked about without a leading clause ("Is shellfish safe for my allergy?").
    """

    cap_tokens: int = 200
    compact_max_words: int = 40
    name: str = "user statements"

    def fold(self, messages: Sequence[Message], previous: str, client: Any, model: str | None) -> SummaryCall:
        _has_turns(messages)
        notes = [line for line in previous.splitlines() if line.strip()]
        for message in messages:
            if message.get("role") == "user":
                for statement in statements(message.get("content") or ""):
                    if f"- {statement}" not in notes:
                        notes.append(f"- {statement}")
        prompt_tokens = completion_tokens = cached = calls = 0
        dropped: tuple[str, ...] = ()
        if _lines_tokens(notes, client) > self.cap_tokens:  # compaction: the oldest half becomes one model-written line
            half = max(2, len(notes) // 2)
            oldest, rest = notes[:half], notes[half:]
            call = summarize(
                [{"role": "user", "content": "\n".join(oldest)}],
                client,
                model=model,
                max_words=self.compact_max_words,
                roles=("user",),
            )
            notes = [f"Earlier: {call.text}", *rest]
            prompt_tokens, completion_tokens, cached, calls = (
                call.prompt_tokens,
                call.completion_tokens,
                call.cached_tokens,
                1,
            )
            dropped = tuple(oldest)
        return SummaryCall(
            text="\n".join(notes),
            folded_messages=len(messages),
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            cached_tokens=cached,
            truncated=False,
            calls=calls,
            dropped=dropped,
        )


FACT_CHECK_INSTRUCTIONS = "You sort the messages a user wrote to an assistant."
FACT_CHECK_QUESTION = (
    'Message: "{sentence}"\n'
    "Does this message tell the assistant a fact about the user, such as their name, a date, a number, a place, "
    "a health need, a preference or a plan? Answer Yes or No."
)


def fact_check_request(sentence: str) -> list[Message]:
    """The question `JudgedNotes` asks the model about one of the user's sentences (its answer is Yes or No)."""
    return [
        {"role": "system", "content": FACT_CHECK_INSTRUCTIONS},
        {"role": "user", "content": FACT_CHECK_QUESTION.format(sentence=sentence.replace('"', "'"))},
    ]


@dataclass(frozen=True)
class JudgedNotes:
    """The model judges each of the user's sentences ("does it state a fact about the user?"); code copies the
    ones it accepts word for word.

    The judgement is the model's probability of "Yes" against "No" (`helpers.recall.answer_shares`:
    exact on the embedded model, `top_logprobs` on a provider; a provider without logprobs is asked
    for the word). A big model judges well; notebook 03 measures how a 135M model does.
    """

    threshold: float = 0.5
    name: str = "model-judged sentences"

    def fact_share(self, sentence: str, client: Any, model: str | None) -> tuple[float, int]:
        """The model's share for "Yes" (this sentence states a fact about the user), and the prompt tokens spent."""
        from .recall import RecallUnavailableError, answer_shares

        request = fact_check_request(sentence)
        try:
            shares = answer_shares(
                client,
                request[:1],
                request[1],
                answer_prefix="",
                candidates=["Yes", "No"],
                model=model,
                calibrate=False,
            )
            return shares["Yes"], int(count_tokens(request, client=client))
        except RecallUnavailableError:  # a server without logprobs: ask for the word
            response = client.chat.completions.create(
                model=model or current_settings().model, messages=request, max_tokens=2, temperature=0
            )
            answer = (response.choices[0].message.content or "").strip().lower()
            return float(answer.startswith("yes")), read_usage(response.usage).prompt_tokens

    def fold(self, messages: Sequence[Message], previous: str, client: Any, model: str | None) -> SummaryCall:
        _has_turns(messages)
        notes = _notes(previous)
        prompt_tokens = calls = 0
        for message in messages:
            if message.get("role") != "user":
                continue
            for sentence in sentences(message.get("content") or ""):
                share, spent = self.fact_share(sentence, client, model)
                prompt_tokens, calls = prompt_tokens + spent, calls + 1
                if share >= self.threshold and sentence not in notes:
                    notes.append(sentence)
        return SummaryCall(
            text=_bullets(notes),
            folded_messages=len(messages),
            prompt_tokens=prompt_tokens,
            completion_tokens=0,
            cached_tokens=0,
            truncated=False,
            calls=calls,
        )


def _lines_tokens(lines: Sequence[str], client: Any) -> int:
    """The tokens of `lines` as the summary's text, counted for `client` (exact on a llama.cpp server)."""
    return int(count_text_tokens("".join(f"{line}\n" for line in lines), client=client))


SUMMARY_HEADER = "Summary of the earlier conversation (facts the user gave and what was decided):"


def summary_message(summary: str, placement: SummaryPlacement = "system") -> Message:
    """The running summary as a message to send before the verbatim turns.

    ``"system"`` (the default here): a system message, which the model treats as
    instructions. ``"user_data"``: a user message holding the summary as a
    delimited block of data, which gives the summary no system authority (see
    notebook 06 for why that matters when a user turn carried an injection).
    """
    if placement == "system":
        return {"role": "system", "content": f"{SUMMARY_HEADER}\n{summary}"}
    if placement == "user_data":
        from .sanitize import data_message

        return data_message(summary, "conversation_summary", what="notes about our earlier conversation")
    raise ValueError(f"placement must be 'system' or 'user_data', not {placement!r}")


@dataclass(frozen=True)
class BufferSettings:
    """How a summary buffer folds, validated once for every user of it (notebooks, widget, runner, checks).

    Once the verbatim turns hold more than `threshold` messages, every turn but the last `keep_turns` is folded.
    """

    threshold: int = 8
    keep_turns: int = 2

    def __post_init__(self) -> None:
        if isinstance(self.keep_turns, bool) or not isinstance(self.keep_turns, int) or self.keep_turns < 1:
            raise ValueError(f"keep_turns must be a whole number of at least 1, not {self.keep_turns!r}")
        if (
            isinstance(self.threshold, bool)
            or not isinstance(self.threshold, int)
            or self.threshold < 2 * self.keep_turns
        ):
            raise ValueError(
                f"threshold ({self.threshold!r} messages) must be at least 2 * keep_turns ({2 * self.keep_turns}), "
                "or every fold would keep more than it may hold"
            )


@dataclass
class SummaryBuffer:
    """Summarize-and-continue: a running summary plus the most recent turns verbatim.

    Use it in the loop of notebook 01 in place of the plain list::

        memory = SummaryBuffer(system=SYSTEM)                 # fold past 8 messages, keep 2 turns
        for text in user_turns:
            memory.append({"role": "user", "content": text})
            memory.fold_if_needed(client)            # summarize old turns, if over the threshold
            response = client.chat.completions.create(model=MODEL, messages=memory.payload())
            memory.append(assistant_message(response))

    Once the verbatim history holds more than `settings.threshold` messages, everything but
    the last `settings.keep_turns` turns is folded into `summary` by the `summarizer`
    (default `UserStatements`). The state changes only after the fold succeeds: a failed
    fold leaves `summary` and `messages` exactly as they were. Each fold is recorded
    in `summarizer_calls`.
    """

    system: Message
    settings: BufferSettings = field(default_factory=BufferSettings)
    summarizer: Summarizer = field(default_factory=UserStatements)
    placement: SummaryPlacement = "system"
    model: str | None = None
    summary: str = ""
    messages: list[Message] = field(default_factory=list)
    summarizer_calls: list[SummaryCall] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.system.get("role") != "system":
            raise ValueError("system must be a system message")
        if self.placement not in ("system", "user_data"):
            raise ValueError(f"placement must be 'system' or 'user_data', not {self.placement!r}")

    def append(self, message: Message) -> None:
        """Add one message to the verbatim turns: a user turn, the assistant's reply, or a tool result."""
        role = message.get("role")
        if role not in ("user", "assistant", "tool"):
            raise ValueError(f"append user, assistant or tool messages; got role {role!r}")
        kept = {key: message[key] for key in ("role", "content", "tool_calls", "tool_call_id") if key in message}
        self.messages.append(copy.deepcopy(kept))

    def needs_fold(self) -> bool:
        """True when the verbatim turns hold more than `threshold` messages and older turns exist."""
        return len(self.messages) > self.settings.threshold and count_turns(self.messages) > self.settings.keep_turns

    def fold_if_needed(self, client: Any) -> SummaryCall | None:
        """Fold all but the last `keep_turns` turns into the summary, if over the threshold.

        Returns the fold, or None when nothing needed folding. On any error (from the
        SDK, or `SummaryError`) the buffer is unchanged.
        """
        if not self.needs_fold():
            return None
        _, turns = split_turns(self.messages)
        first_kept = turns[-self.settings.keep_turns][0]
        old, recent = self.messages[:first_kept], self.messages[first_kept:]
        call = self.summarizer.fold(old, self.summary, client, self.model)
        # Only now, after the fold succeeded, does the state change.
        self.summary = call.text
        self.messages = copy.deepcopy(recent)
        self.summarizer_calls.append(call)
        return call

    def summary_message(self) -> Message | None:
        """The summary as the message `payload()` sends (None before the first fold, or while it is empty)."""
        return summary_message(self.summary, self.placement) if self.summary else None

    def payload(self) -> list[Message]:
        """What to send: the system message, the summary (if any), then the verbatim turns."""
        summary = self.summary_message()
        return [dict(self.system), *([summary] if summary else []), *copy.deepcopy(self.messages)]

    @property
    def summarizer_tokens(self) -> int:
        """Prompt plus completion tokens spent by all folds so far."""
        return sum(call.tokens for call in self.summarizer_calls)
