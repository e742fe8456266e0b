"""Check functions for the challenges in notebook 05 (cross-session memory).

Each check either passes (it prints what it verified and returns the figures) or
raises `ChallengeNotPassed` (an `AssertionError`) whose message is a hint. No
check calls a model: each builds a small memory store of its own in a temporary
folder, runs the learner's function on it and inspects the store, the file and
what the function would send. Read one with `check_recall??` in a notebook.
"""

from __future__ import annotations

import copy
import re
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..backend.client import count_tokens
from ..memory import MemoryStore
from . import ChallengeNotPassed
from . import require as _require

__all__ = ["ChallengeNotPassed", "check_forget_user", "check_recall"]

MAYA_FACTS = (
    "Maya is allergic to shellfish, so seafood dishes are out.",
    "Maya prefers a window seat on trains.",
    "Maya's food budget is 40 dollars a day.",
    "Maya travels to Kyoto in April.",
    "Maya's passport number is zqx-pass-7731.",
)
BEN_FACTS = (
    "Ben loves shellfish and seafood dishes.",
    "Ben prefers an aisle seat on trains.",
    "Ben's passport is kept in the hotel safe.",
)


def _fixture_store(folder: Path) -> tuple[Path, dict[str, list[Any]]]:
    path = folder / "memory.db"
    with MemoryStore(path) as store:
        stored = {
            "maya": store.add_facts("maya", MAYA_FACTS, session_id="session-1"),
            "ben": store.add_facts("ben", BEN_FACTS, session_id="session-b"),
        }
    return path, stored


def _file_bytes(path: Path) -> bytes:
    return b"".join(p.read_bytes() for p in path.parent.iterdir() if p.name.startswith(path.name))


ForgetUser = Callable[[MemoryStore, str], int]


def check_forget_user(forget_user: ForgetUser) -> dict[str, int]:
    """Challenge 1: "forget me". `forget_user(store, user_id)` deletes every fact of one user.

    It must return how many facts it deleted, leave every other user's facts as
    they were, and leave nothing behind: not in `list_facts`, not in search, not
    after reopening the file, and not as text in the file itself.
    """
    with tempfile.TemporaryDirectory(prefix="forget-") as folder:
        path, stored = _fixture_store(Path(folder))
        with MemoryStore(path) as store:
            deleted = forget_user(store, "maya")
            _require(
                isinstance(deleted, int) and not isinstance(deleted, bool),
                f"forget_user returned {deleted!r}; return the number of facts deleted (an int).",
            )
            _require(deleted == len(MAYA_FACTS), f"Maya had {len(MAYA_FACTS)} facts; forget_user reported {deleted}.")
            _require(
                store.list_facts("maya") == [],
                "Some of Maya's facts are still listed: delete each one (store.delete_fact).",
            )
            _require(
                store.list_facts("ben") == stored["ben"],
                "Ben's facts changed: delete only the given user's facts (list_facts(user_id) gives their ids).",
            )
        with MemoryStore(path) as store:
            _require(
                store.count("maya") == 0,
                "After reopening the file Maya's facts are back: the deletes were not committed.",
            )
            for question in ("passport number", "shellfish seafood", "window seat trains"):
                _require(
                    store.search("maya", question) == [],
                    f"Searching Maya's memory for {question!r} still finds something.",
                )
            _require(len(store.search("ben", "passport")) == 1, "Ben's facts should still be searchable.")
            _require(store.integrity_check() == "ok", "The file or its search index is damaged after forget_user.")
        _require(
            b"zqx" not in _file_bytes(path),
            "Maya's passport number is still readable in the database file: rows deleted with raw SQL leave their text "
            "in the full-text index and in free pages. Use store.delete_fact, which merges the index and overwrites "
            "the freed space (secure_delete).",
        )
    print(
        f"Passed: {deleted} of Maya's facts deleted and gone from list, search, a reopened file and the file's bytes; "
        f"Ben's {len(BEN_FACTS)} facts untouched."
    )
    return {"deleted": deleted, "kept": len(BEN_FACTS)}


Recall = Callable[[MemoryStore, str, list, str, int], list]

SYSTEM = {"role": "system", "content": "You are a concise travel assistant."}
QUESTION = "Which seafood dishes should I try for dinner on the trains?"
_MARKER = re.compile(r"</?memory-[0-9a-f]{8,64}>")


def _facts_in(text: str) -> list[str]:
    return [fact for fact in MAYA_FACTS + BEN_FACTS if fact in text]


def check_recall(recall: Recall) -> dict[str, int]:
    """Challenge 2: recall within a token budget.

    `recall(store, user_id, history, question, budget)` returns the messages to
    send: `history`, then the user's best-matching facts as a memory message
    (`helpers.memory.memory_message` / `with_memory`), then the question. The
    memory may add at most `budget` prompt tokens (measured as
    ``count_tokens(sent) - count_tokens(history + [question])``): keep the
    best-ranked facts that fit, and send no memory message when none fits or
    none matches. Only that user's facts, and never in a system message.
    """
    history = [SYSTEM, {"role": "user", "content": "Hi!"}, {"role": "assistant", "content": "Hello! How can I help?"}]
    question = {"role": "user", "content": QUESTION}
    base = history + [question]
    base_tokens = int(count_tokens(base))
    figures: dict[str, int] = {}
    with tempfile.TemporaryDirectory(prefix="recall-") as folder:
        path, _ = _fixture_store(Path(folder))
        with MemoryStore(path) as store:
            ranking = [fact.text for fact in store.search("maya", QUESTION, k=10)]
            for budget in (1000, 100, 50):
                before = copy.deepcopy(history)
                sent = recall(store, "maya", history, QUESTION, budget)
                _require(history == before, "recall changed the history it was given: build a new list.")
                _require(
                    isinstance(sent, list)
                    and all(isinstance(m, dict) and "role" in m and "content" in m for m in sent),
                    "recall must return a list of {'role': ..., 'content': ...} messages.",
                )
                extra = [m for m in sent if m not in base]
                included = _facts_in(" ".join(str(m["content"]) for m in extra))
                _require(
                    not any(m["role"] == "system" for m in extra) and sent[0] == SYSTEM,
                    "The facts went into a system message, or changed it: the system message stays the developer's; "
                    "send the facts as data in a user message (memory_message).",
                )
                _require(
                    sent[: len(history)] == history and sent[-1] == question,
                    "Send the history as it was, with the question as the last message.",
                )
                added = int(count_tokens(sent)) - base_tokens
                _require(
                    not set(included) & set(BEN_FACTS), "Ben's facts were sent to Maya: search with her user_id only."
                )
                _require(
                    added <= budget,
                    f"With a budget of {budget} tokens the memory added {added}: drop the lowest-ranked "
                    "facts until count_tokens(sent) - count_tokens(history + [question]) fits.",
                )
                if budget == 1000:
                    _require(
                        included,
                        "No fact was sent: search the store with the question (store.search(user_id, question)).",
                    )
                    _require(
                        len(extra) == 1 and extra[0]["role"] == "user" and _MARKER.search(extra[0]["content"]),
                        "Put the facts in one user message as a delimited block: helpers.memory.memory_message(facts).",
                    )
                    _require(
                        sent.index(extra[0]) == len(sent) - 2,
                        "Insert the memory message just before the question (with_memory).",
                    )
                    _require(
                        set(included) == set(ranking),
                        f"{len(ranking)} of Maya's facts match the question and fit in "
                        f"{budget} tokens; {len(included)} were sent.",
                    )
                    figures["all_facts_tokens"] = added
                if budget == 100:
                    _require(
                        0 < len(included) < len(ranking),
                        f"A budget of {budget} tokens fits some of the matching facts "
                        f"but not all {len(ranking)}; {len(included)} were sent.",
                    )
                    order = sorted(included, key=ranking.index)
                    _require(
                        order == ranking[: len(included)],
                        "Keep the best-ranked facts (search returns them best first) and drop from the end.",
                    )
                    figures["facts_within_100"] = len(included)
                if budget == 50:
                    _require(
                        sent == base,
                        "No fact fits in 50 tokens (the header and markers alone cost more): send history + question "
                        "with no memory message.",
                    )
            unrelated = recall(store, "maya", history, "What time is it in Lisbon?", 1000)
            _require(
                unrelated == history + [{"role": "user", "content": "What time is it in Lisbon?"}],
                "A question that matches no fact should be sent with no memory message.",
            )
    print(
        f"Passed: all {len(ranking)} matching facts cost {figures['all_facts_tokens']} tokens; a 100-token budget "
        f"kept the best {figures['facts_within_100']}; 50 tokens kept none; Ben's facts never sent; no system message "
        "added."
    )
    return figures
