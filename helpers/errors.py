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


class ModelNotFoundError(HelpersError):
    """The server answered that the requested model does not exist (retired, misspelled or not pulled).

    Raised by clients from `helpers.get_client()` as a subclass that is also the `openai` SDK's
    own error for the status (`openai.NotFoundError` for 404, `openai.BadRequestError` for 400),
    so `except openai.NotFoundError` keeps working. `model` and `base_url` say what was asked where.
    """

    model: str
    base_url: str


class UsageNotReportedError(HelpersError, ValueError):
    """A response carries no `usage` with prompt and completion token counts to read."""
