"""Exact measures through a llama.cpp server's public endpoints, on any llama.cpp server.

Everything goes through the `openai.OpenAI` client it is given (its key, timeouts and retries); only the
paths differ from the OpenAI API: llama.cpp serves these at the server's root, beside `/v1`.
- `POST /apply-template {"messages"}` formats messages with the model's chat template;
  `POST /tokenize {"content", "add_special", "parse_special"}` turns the text into token ids. Together they
  give exactly what `usage.prompt_tokens` will say (`prompt_token_ids`).
- `POST /completion` with `prompt` as token ids, a grammar made of the candidate's token ids
  (`root ::= <[312]> <[4815]>`), `n_predict` = their number and `n_probs: 1` returns each forced token's
  log-probability (before sampling: the grammar only forces the choice): summed, a candidate answer's
  log-likelihood (`score_continuations`). A grammar on the candidate *string* would let the server pick an
  odd tokenization (" T", "omas", "z"): token ids keep the tokenization the text has.
- `GET /props` tells a llama.cpp server from others (`is_llamacpp`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import openai

# Servers answered once per base URL: whether each is a llama.cpp server.
_KIND: dict[str, bool] = {}


def server_root(client: Any) -> str:
    """The server's address without the `/v1` of the OpenAI API."""
    base = str(client.base_url).rstrip("/")
    return base[: -len("/v1")] if base.endswith("/v1") else base


# The endpoints this module calls at the server's root: measurements, not requests to the model's API.
MEASURING_ENDPOINTS = ("/props", "/apply-template", "/tokenize", "/completion")


def is_measuring_path(path: str) -> bool:
    """Whether a URL path is one of `MEASURING_ENDPOINTS` (at the root, not under the OpenAI API's `/v1`)."""
    return any(path.endswith(endpoint) and not path.endswith("/v1" + endpoint) for endpoint in MEASURING_ENDPOINTS)


def _call(client: Any, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    url = server_root(client) + path
    if method == "GET":
        return client.get(url, cast_to=object)
    return client.post(url, body=body, cast_to=object)


def is_llamacpp(client: Any) -> bool:
    """Whether `client` talks to a llama.cpp server (its `/props` names a chat template and slots).

    Asked once per address; a server that cannot be reached is not remembered, so it is asked again.
    """
    root = server_root(client)
    if root not in _KIND:
        try:
            props = _call(client.with_options(max_retries=0, timeout=5.0), "GET", "/props")
        except openai.APIConnectionError:
            return False
        except openai.APIStatusError:
            props = None
        _KIND[root] = isinstance(props, dict) and "default_generation_settings" in props and "chat_template" in props
    return _KIND[root]


def apply_template(client: Any, messages: Sequence[Any]) -> str:
    """The prompt text the server makes of `messages`, ending with the assistant header (or a prefill)."""
    return str(_call(client, "POST", "/apply-template", {"messages": [dict(m) for m in messages]})["prompt"])


def tokenize(client: Any, text: str, *, special: bool = False) -> list[int]:
    """`text`'s token ids. `special`: as a prompt (begin-of-text added, control tokens parsed)."""
    body = {"content": text, "add_special": special, "parse_special": special}
    return [int(token) for token in _call(client, "POST", "/tokenize", body)["tokens"]]


def prompt_token_ids(client: Any, messages: Sequence[Any]) -> list[int]:
    """The token ids the server will bill for `messages`: their number equals `usage.prompt_tokens`."""
    return tokenize(client, apply_template(client, messages), special=True)


def common_prefix(first: Sequence[int], second: Sequence[int]) -> int:
    """How many leading tokens two token lists share."""
    shared = 0
    for a, b in zip(first, second):
        if a != b:
            break
        shared += 1
    return shared


def _forced_logprobs(client: Any, prompt: list[int], tokens: list[int]) -> float:
    grammar = "root ::= " + " ".join(f"<[{token}]>" for token in tokens)
    body = {
        "prompt": prompt,
        "n_predict": len(tokens),
        "grammar": grammar,
        "n_probs": 1,
        "temperature": 0,
        "cache_prompt": True,
        "samplers": [],
    }
    produced = _call(client, "POST", "/completion", body)["completion_probabilities"]
    ids = [int(step["id"]) for step in produced]
    if ids != tokens:
        raise RuntimeError(f"the server produced tokens {ids}, not the forced {tokens}")
    return sum(float(step["logprob"]) for step in produced)


def score_continuations(
    client: Any, messages: Sequence[Any], answer_prefix: str, candidates: Sequence[str]
) -> dict[str, float]:
    """Each candidate's log-likelihood as the reply's continuation after `answer_prefix`.

    The reply scored is ``answer_prefix + " " + candidate`` (no space when the prefix is empty or ends in
    one), after the chat template's assistant header: ``log P(candidate | messages, answer_prefix)``,
    summed over the candidate's tokens. The shared prefix is cached by the server after the first.
    """
    context = prompt_token_ids(client, messages)
    separator = "" if not answer_prefix or answer_prefix.endswith((" ", "\n")) else " "
    prefix = tokenize(client, answer_prefix) if answer_prefix else []
    answers = {candidate: tokenize(client, f"{answer_prefix}{separator}{candidate}") for candidate in candidates}
    # Where the candidates start: after the prefix's tokens (earlier if one merges with the prefix's end).
    start = min(common_prefix(prefix, answer) for answer in answers.values())
    scores = {}
    for candidate, answer in answers.items():
        own = answer[start:]
        if not own:
            raise ValueError(f"candidate {candidate!r} adds no token after the answer prefix")
        scores[candidate] = _forced_logprobs(client, context + prefix[:start], own)
    return scores
