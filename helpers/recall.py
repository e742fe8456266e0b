"""Recall you can measure: the model's probability of the right answer, among candidates.

A 135M model often answers a question badly even when the fact is right there in the prompt,
and a big model can guess a common answer with no fact at all. So "did the reply contain the
word?" says little on its own. `answer_shares` asks a sharper question: of a few candidate
answers, how much of the model's probability goes to each, given what was sent?

    shares = answer_shares(client, sent, "What is my name?", answer_prefix="Your name is",
                           candidates=["Maya", "Sofia", "Emma", "Lena", "Hana"])
    shares["Maya"]   # 0.96 with the fact in the prompt; near 0.2 or below without it

- **A llama.cpp server (the embedded one, or any other): exact.** The reply is scored as it
  would be written: the conversation, the question, then the assistant's ``answer_prefix``
  followed by each candidate. Normalised over the candidates (a softmax of the log-likelihoods), that is ``raw_shares``.
- **Corrected for guessing** (``shares``, the default). With no conversation at all, a model still
  prefers some answers ("peanuts" is a likelier allergy than "shellfish"), and that preference
  is not memory. So each candidate's probability is divided by its probability when only the
  system message is sent (``prior_shares``), then normalised: memory is what the conversation
  *adds*. With no conversation, every candidate gets an equal share. (This is "contextual
  calibration", Zhao et al., 2021, "Calibrate Before Use".) ``calibrate=False`` skips it.
- **A provider: approximate, where the server allows.** Hosted chat APIs don't score a given
  reply, but many return `top_logprobs` for the tokens they generate. The question is sent with
  an instruction to answer with the candidate only, and the first token's top log-probabilities
  are matched to each candidate's first word. Candidates outside the top 20 share what is left.
  A server that returns no logprobs raises `RecallUnavailableError`, which says so.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import openai

from .backend import llamacpp
from .backend.client import current_settings
from .errors import HelpersError
from .types import Message

TOP_LOGPROBS = 20


class RecallUnavailableError(HelpersError):
    """The server cannot score answers (it returns no log-probabilities): use the reply's words instead."""


@dataclass(frozen=True)
class AnswerShares(Mapping[str, float]):
    """Each candidate's share of the model's probability (they sum to 1), and how it was measured.

    `shares` is what the mapping returns: corrected for guessing when `prior_shares` is given,
    else equal to `raw_shares`.
    """

    shares: dict[str, float]
    method: str
    exact: bool
    log_likelihoods: dict[str, float]
    raw_shares: dict[str, float]
    prior_shares: dict[str, float] | None = None

    def __getitem__(self, candidate: str) -> float:
        return self.shares[candidate]

    def __iter__(self) -> Iterator[str]:
        return iter(self.shares)

    def __len__(self) -> int:
        return len(self.shares)

    @property
    def best(self) -> str:
        """The candidate the model favours."""
        return max(self.shares, key=self.shares.get)

    def __repr__(self) -> str:
        shares = ", ".join(f"{candidate!r}: {share:.2f}" for candidate, share in self.shares.items())
        return f"AnswerShares({{{shares}}}, {'exact' if self.exact else 'approximate'}: {self.method})"


def softmax(log_likelihoods: Mapping[str, float]) -> dict[str, float]:
    """Normalise log-likelihoods into shares that sum to 1."""
    top = max(log_likelihoods.values())
    weights = {key: math.exp(value - top) for key, value in log_likelihoods.items()}
    total = sum(weights.values())
    return {key: weight / total for key, weight in weights.items()}


def _question_message(question: str | Message) -> Message:
    return {"role": "user", "content": question} if isinstance(question, str) else dict(question)


def _check_candidates(candidates: Sequence[str]) -> list[str]:
    candidates = [str(candidate) for candidate in candidates]
    if len(candidates) < 2 or len(set(candidates)) != len(candidates):
        raise ValueError("give at least two distinct candidate answers")
    return candidates


def answer_shares(
    client: Any,
    messages: Sequence[Message],
    question: str | Message,
    *,
    answer_prefix: str,
    candidates: Sequence[str],
    model: str | None = None,
    calibrate: bool = True,
) -> AnswerShares:
    """Each candidate answer's share of the model's probability, after `messages` plus `question`.

    `messages` is what a strategy would send before the question (system message first);
    `answer_prefix` starts the assistant's reply ("Your name is"), and each candidate completes
    it ("Maya"). On the embedded model the scores are exact log-likelihoods; on a provider they
    come from the first answer token's `top_logprobs` (see the module docstring). With
    `calibrate`, the shares are corrected for what the model guesses from the system message alone.
    """
    candidates = _check_candidates(candidates)
    model = model or current_settings().model
    question_message = _question_message(question)
    scores, method, exact = _scores(
        client, [dict(m) for m in messages] + [question_message], answer_prefix, candidates, model
    )
    raw = softmax(scores)
    if not calibrate:
        return AnswerShares(raw, method, exact, scores, raw)
    prior_scores = guess_scores(client, messages, question_message, answer_prefix=answer_prefix,
                                candidates=candidates, model=model)
    corrected = softmax({c: scores[c] - prior_scores[c] for c in candidates})
    return AnswerShares(
        corrected,
        method + ", corrected for guessing (divided by the system-message-only prior)",
        exact,
        scores,
        raw,
        softmax(prior_scores),
    )


def _scores(
    client: Any, sent: list[Message], answer_prefix: str, candidates: list[str], model: str
) -> tuple[dict[str, float], str, bool]:
    if llamacpp.is_llamacpp(client):
        scores = llamacpp.score_continuations(client, sent, answer_prefix, candidates)
        return scores, "log-likelihood of each candidate after the answer prefix (llama.cpp server)", True
    return (
        _provider_scores(client, sent, answer_prefix, candidates, model),
        "first answer token's top_logprobs (approximate)",
        False,
    )


_PRIORS: dict[Any, dict[str, float]] = {}


def guess_scores(
    client: Any,
    messages: Sequence[Message],
    question: str | Message,
    *,
    answer_prefix: str,
    candidates: Sequence[str],
    model: str | None = None,
) -> dict[str, float]:
    """The candidates' scores after the system message of `messages` alone: the guess `answer_shares`
    corrects for. Memoised, so a second strategy asking the same question reuses it."""
    system_only = [dict(m) for m in messages if m.get("role") in ("system", "developer")][:1]
    return _prior(
        client,
        tuple(system_only),
        _question_message(question),
        answer_prefix,
        tuple(_check_candidates(candidates)),
        model or current_settings().model,
    )


def _prior(
    client: Any,
    system: tuple[Message, ...],
    question: Message,
    answer_prefix: str,
    candidates: tuple[str, ...],
    model: str,
) -> dict[str, float]:
    """The candidates' log-likelihoods with only the system message: what the model guesses (memoised)."""
    key = (
        llamacpp.server_root(client),
        model,
        tuple(sorted((k, str(v)) for m in system for k, v in m.items())),
        str(question.get("content")),
        answer_prefix,
        candidates,
    )
    if key not in _PRIORS:
        _PRIORS[key] = _scores(client, [*system, question], answer_prefix, list(candidates), model)[0]
    return _PRIORS[key]


def _first_word(text: str) -> str:
    return "".join(ch for ch in text.strip().split()[0].lower() if ch.isalnum()) if text.strip() else ""


def _provider_scores(
    client: Any, sent: list[Message], answer_prefix: str, candidates: list[str], model: str
) -> dict[str, float]:
    instruction = (
        f"Complete this answer with one of: {', '.join(candidates)}. Reply with that option only.\n"
        f"Answer: {answer_prefix} ..."
    )
    asked = sent[:-1] + [{"role": "user", "content": f"{sent[-1]['content']}\n\n{instruction}"}]
    try:
        response = client.chat.completions.create(
            model=model, messages=asked, max_tokens=1, temperature=0, logprobs=True, top_logprobs=TOP_LOGPROBS
        )
    except openai.APIStatusError as error:  # e.g. llama.cpp server without logits_all: 500 "logprobs not supported"
        if "logprob" not in str(error).lower():
            raise
        raise RecallUnavailableError(
            f"{model} at {client.base_url} refused log-probabilities ({error.status_code}: {error.message}), so "
            "answer probabilities can't be measured here: compare the replies' words instead."
        ) from error
    logprobs = getattr(response.choices[0], "logprobs", None)
    content = getattr(logprobs, "content", None) if logprobs else None
    if not content or not getattr(content[0], "top_logprobs", None):
        raise RecallUnavailableError(
            f"{model} at {client.base_url} returned no top_logprobs, so answer probabilities can't be measured "
            "here: compare the replies' words instead (or run on the embedded model)."
        )
    probability: dict[str, float] = {candidate: 0.0 for candidate in candidates}
    for item in content[0].top_logprobs:
        word = _first_word(item.token)
        for candidate in candidates:
            if word and _first_word(candidate).startswith(word):
                probability[candidate] += math.exp(item.logprob)
    leftover = max(0.0, 1.0 - sum(math.exp(item.logprob) for item in content[0].top_logprobs))
    unseen = [candidate for candidate, p in probability.items() if p == 0.0]
    for candidate in unseen:  # outside the top list: at most what the list left over, shared evenly
        probability[candidate] = leftover / len(unseen) if leftover else 1e-12
    return {candidate: math.log(max(p, 1e-12)) for candidate, p in probability.items()}
