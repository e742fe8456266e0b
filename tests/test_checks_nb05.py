"""helpers.checks.nb05: the notebook 05 challenge checks pass good answers and reject weak ones with a hint."""

import pytest

from helpers import count_tokens
from helpers.checks.nb05 import ChallengeNotPassed, check_forget_user, check_recall
from helpers.memory import memory_message, with_memory

# --- challenge 1: forget a user -------------------------------------------------------------


def forget_user(store, user_id):
    facts = store.list_facts(user_id)
    for fact in facts:
        store.delete_fact(user_id, fact.id)
    return len(facts)


def forget_with_raw_sql(store, user_id):
    with store.write() as db:
        return db.execute("DELETE FROM facts WHERE user_id = ?", (user_id,)).rowcount


def forget_everyone(store, user_id):
    count = len(store.list_facts(user_id))
    for other in ("maya", "ben"):
        for fact in store.list_facts(other):
            store.delete_fact(other, fact.id)
    return count


def forget_one(store, user_id):
    store.delete_fact(user_id, store.list_facts(user_id)[0].id)
    return 1


def test_a_good_forget_user_passes():
    assert check_forget_user(forget_user) == {"deleted": 5, "kept": 3}


@pytest.mark.parametrize(
    "function,hint",
    [
        (forget_with_raw_sql, "still readable in the database file"),
        (forget_everyone, "Ben's facts changed"),
        (forget_one, "reported 1"),
        (lambda store, user_id: None, "return the number"),
        (lambda store, user_id: 5, "still listed"),
    ],
)
def test_weak_forget_user_fails_with_a_hint(function, hint):
    with pytest.raises(ChallengeNotPassed, match=hint):
        check_forget_user(function)


# --- challenge 2: recall within a budget --------------------------------------------------------


def recall(store, user_id, history, question, budget):
    base = history + [{"role": "user", "content": question}]
    base_tokens = count_tokens(base)
    facts = store.search(user_id, question, k=5)
    while facts:
        sent = with_memory(base, facts)
        if count_tokens(sent) - base_tokens <= budget:
            return sent
        facts = facts[:-1]
    return base


def recall_without_budget(store, user_id, history, question, budget):
    return with_memory(history + [{"role": "user", "content": question}], store.search(user_id, question))


def recall_in_system(store, user_id, history, question, budget):
    facts = store.search(user_id, question)
    block = memory_message(facts)["content"] if facts else ""
    return [history[0], {"role": "system", "content": block}] + history[1:] + [{"role": "user", "content": question}]


def recall_every_user(store, user_id, history, question, budget):
    facts = store.search("maya", question) + store.search("ben", question)
    return with_memory(history + [{"role": "user", "content": question}], facts)


def recall_keeping_the_worst(store, user_id, history, question, budget):
    base = history + [{"role": "user", "content": question}]
    facts = store.search(user_id, question, k=5)
    while facts:
        sent = with_memory(base, facts)
        if count_tokens(sent) - count_tokens(base) <= budget:
            return sent
        facts = facts[1:]  # drops the best first
    return base


def recall_mutating(store, user_id, history, question, budget):
    history.append({"role": "user", "content": question})
    return recall(store, user_id, history[:-1], question, budget)


def recall_after_the_question(store, user_id, history, question, budget):
    sent = recall(store, user_id, history, question, budget)
    if len(sent) > len(history) + 1:
        sent[-2], sent[-1] = sent[-1], sent[-2]
    return sent


def test_a_good_recall_passes():
    figures = check_recall(recall)
    assert figures["facts_within_100"] == 1 and figures["all_facts_tokens"] > 100


@pytest.mark.parametrize(
    "function,hint",
    [
        (recall_without_budget, "With a budget of 100 tokens"),
        (recall_in_system, "system"),
        (recall_every_user, "Ben's facts"),
        (recall_keeping_the_worst, "best-ranked"),
        (recall_mutating, "changed the history"),
        (recall_after_the_question, "question as the last message"),
        (
            lambda store, user_id, history, question, budget: history + [{"role": "user", "content": question}],
            "No fact was sent",
        ),
    ],
)
def test_weak_recall_fails_with_a_hint(function, hint):
    with pytest.raises(ChallengeNotPassed, match=hint):
        check_recall(function)
