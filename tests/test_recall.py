"""helpers.recall: the model's probability share for each candidate answer, exact on the embedded model."""

import math

import pytest

from helpers.backend.llamacpp import is_llamacpp
from helpers.fake_server import Fail, FakeServer, chat_completion, top_logprobs
from helpers.recall import AnswerShares, RecallUnavailableError, answer_shares, softmax

SYSTEM = {"role": "system", "content": "You are a concise travel assistant."}
TOLD = [
    SYSTEM,
    {"role": "user", "content": "My name is Maya and I'm allergic to shellfish."},
    {"role": "assistant", "content": "Noted."},
]
NAMES = ["Maya", "Sofia", "Emma", "Lena", "Hana"]


def test_softmax_sums_to_one_and_keeps_order():
    shares = softmax({"a": -1.0, "b": -2.0, "c": -30.0})
    assert math.isclose(sum(shares.values()), 1.0) and shares["a"] > shares["b"] > shares["c"]


def test_the_embedded_server_is_recognised_as_llama_cpp(client):
    assert is_llamacpp(client)


def test_a_fact_in_the_conversation_wins_the_share(client):
    shares = answer_shares(client, TOLD, "What is my name?", answer_prefix="Your name is", candidates=NAMES)
    assert isinstance(shares, AnswerShares) and shares.exact
    assert math.isclose(sum(shares.values()), 1.0)
    assert shares.best == "Maya" and shares["Maya"] > 0.5


def test_with_no_conversation_the_corrected_shares_are_equal(client):
    shares = answer_shares(client, [SYSTEM], "What is my name?", answer_prefix="Your name is", candidates=NAMES)
    assert all(math.isclose(share, 1 / len(NAMES), abs_tol=1e-6) for share in shares.values())
    assert shares.prior_shares is not None and max(shares.prior_shares.values()) > 0.2, "the prior is not flat"


def test_shares_match_the_exact_log_likelihoods(client, embedded_model):
    question = {"role": "user", "content": "What is my name?"}
    scores = embedded_model.score_continuations(TOLD + [question], "Your name is", NAMES)
    shares = answer_shares(client, TOLD, question, answer_prefix="Your name is", candidates=NAMES, calibrate=False)
    # Exact up to float rounding: KV values computed in a batch of another shape differ in the last digits.
    assert shares.log_likelihoods == pytest.approx(scores, abs=0.25)
    assert shares.shares == pytest.approx(softmax(shares.log_likelihoods), abs=1e-9)


@pytest.mark.parametrize("candidates", [["Maya"], ["Maya", "Maya"], []])
def test_candidates_must_be_two_or_more_and_distinct(client, candidates):
    with pytest.raises(ValueError, match="two distinct"):
        answer_shares(client, TOLD, "What is my name?", answer_prefix="Your name is", candidates=candidates)


def provider(top: dict[str, float] | None = None) -> FakeServer:
    """A hosted server: answers with `top_logprobs` (`{token: probability}`) for the first token, or with none."""
    logprobs = top_logprobs({token: math.log(p) for token, p in top.items()}) if top is not None else None
    reply = chat_completion("Maya", prompt_tokens=9, completion_tokens=1, finish_reason="length", logprobs=logprobs)
    return FakeServer(lambda body: reply)


def test_a_provider_is_scored_from_the_first_tokens_top_logprobs():
    server = provider({"Maya": 0.7, "Em": 0.2, " Sofia": 0.05})
    shares = answer_shares(
        server.client, TOLD, "What is my name?", answer_prefix="Your name is", candidates=NAMES, model="m",
        calibrate=False,
    )
    assert not shares.exact and shares.best == "Maya"
    assert shares["Maya"] > shares["Emma"] > shares["Sofia"] > shares["Lena"]
    assert len(server.requests) == 1
    request = server.requests[0]
    assert request["logprobs"] is True and request["top_logprobs"] == 20 and request["max_tokens"] == 1


def test_a_provider_without_logprobs_is_a_named_error():
    with pytest.raises(RecallUnavailableError, match="no top_logprobs"):
        answer_shares(
            provider(None).client, TOLD, "What is my name?", answer_prefix="Your name is", candidates=NAMES, model="m"
        )


def test_a_server_that_refuses_logprobs_is_the_same_named_error():
    refusing = FakeServer(lambda body: Fail(500, "logprobs is not supported for models created with logits_all=False"))
    with pytest.raises(RecallUnavailableError, match="refused log-probabilities"):
        answer_shares(
            refusing.client, TOLD, "What is my name?", answer_prefix="Your name is", candidates=NAMES, model="m"
        )
    assert refusing.requests and refusing.requests[0]["logprobs"] is True
