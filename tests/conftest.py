"""Shared fixtures: one embedded model and client for the whole test session."""

import os

import pytest

# The suite checks the offline default whatever a developer's .env says.
os.environ["LLM_PROVIDER"] = "embedded"


@pytest.fixture(scope="session")
def embedded_model():
    from helpers.backend.embedded import load_embedded_model

    return load_embedded_model()


@pytest.fixture(scope="session")
def client():
    from helpers import get_client

    return get_client()


@pytest.fixture(scope="session")
def model_name():
    from helpers import MODEL

    return MODEL
