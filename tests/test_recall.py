"""helpers.recall: the model's probability share for each candidate answer, exact on the embedded model."""

import math
from types import SimpleNamespace

import pytest
from openai.types import CompletionUsage

from helpers.backend.llamacpp import is_llamacpp
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


class ProviderClient:
    """A hosted server: answers with `top_logprobs` for the first token, or with none."""

    base_url = "https://provider.test/v1"

    def __init__(self, top=None):
        self.top = top
        self.sent = []
        self.chat = SimpleNamespace(completions=SimpleNamespace(create=self.create))

    def create(self, **request):
        self.sent.append(request)
        logprobs = None
        if self.top is not None:
            items = [SimpleNamespace(token=token, logprob=math.log(p)) for token, p in self.top.items()]
            logprobs = SimpleNamespace(
                content=[SimpleNamespace(token=items[0].token, logprob=items[0].logprob, top_logprobs=items)]
            )
        choice = SimpleNamespace(logprobs=logprobs, message=SimpleNamespace(content="Maya"), finish_reason="length")
        return SimpleNamespace(
            choices=[choice], usage=CompletionUsage(prompt_tokens=9, completion_tokens=1, total_tokens=10)
        )


def test_a_provider_is_scored_from_the_first_tokens_top_logprobs():
    client = ProviderClient({"Maya": 0.7, "Em": 0.2, " Sofia": 0.05})
    shares = answer_shares(
        client, TOLD, "What is my name?", answer_prefix="Your name is", candidates=NAMES, model="m", calibrate=False
    )
    assert not shares.exact and shares.best == "Maya"
    assert shares["Maya"] > shares["Emma"] > shares["Sofia"] > shares["Lena"]
    request = client.sent[0]
    assert request["logprobs"] is True and request["top_logprobs"] == 20 and request["max_tokens"] == 1


def test_a_provider_without_logprobs_is_a_named_error():
    with pytest.raises(RecallUnavailableError, match="no top_logprobs"):
        answer_shares(
            ProviderClient(None), TOLD, "What is my name?", answer_prefix="Your name is", candidates=NAMES, model="m"
        )


def test_a_server_that_refuses_logprobs_is_the_same_named_error():
    import openai

    from helpers.backend._http import httpx

    class Refusing(ProviderClient):
        def create(self, **request):
            request = httpx.Request("POST", "http://server.test/v1/chat/completions")
            raise openai.InternalServerError("logprobs is not supported for models created with logits_all=False",
                                             response=httpx.Response(500, request=request), body=None)

    with pytest.raises(RecallUnavailableError, match="refused log-probabilities"):
        answer_shares(Refusing(), TOLD, "What is my name?", answer_prefix="Your name is", candidates=NAMES, model="m")
