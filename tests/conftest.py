"""Shared fixtures: one embedded server and client for the whole test session."""

import os
from dataclasses import dataclass
from typing import Any

import pytest

# The suite checks the offline default whatever a developer's .env says.
os.environ["LLM_PROVIDER"] = "embedded"


@dataclass
class ServerMeasures:
    """The embedded server's tokenizer and scorer, through a client (what helpers itself uses)."""

    client: Any

    def count_text_tokens(self, text: str) -> int:
        from helpers.backend import llamacpp

        return len(llamacpp.tokenize(self.client, text))

    def score_continuations(self, messages, answer_prefix, candidates):
        from helpers.backend import llamacpp

        return llamacpp.score_continuations(self.client, messages, answer_prefix, candidates)


@pytest.fixture(scope="session")
def client():
    from helpers import get_client

    return get_client()


@pytest.fixture(scope="session")
def embedded_model(client):
    return ServerMeasures(client)


@pytest.fixture(scope="session")
def model_name():
    from helpers import MODEL

    return MODEL
