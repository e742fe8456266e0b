"""Named errors, so a learner sees what went wrong and what to do next.

Errors that come back from a model call (a context that is too long, an unknown
model) are the `openai` SDK's own exceptions, for the embedded model too, so the
same `except openai.BadRequestError` works against every backend.
"""

from __future__ import annotations


class HelpersError(Exception):
    """Base class for the errors this package raises itself."""


class ConfigurationError(HelpersError):
    """The environment variables (or `.env`) describe no usable backend."""


class MissingAPIKeyError(ConfigurationError):
    """A hosted provider is selected but no API key is set."""


class ProviderUnreachableError(HelpersError, ConnectionError):
    """The provider's server did not accept a connection; the message names its URL."""


class EmbeddedModelError(HelpersError):
    """The embedded model could not be found or loaded."""
