"""One reader for a response's `usage`, whatever the server fills in: `read_usage(response)`.

Every OpenAI-compatible server reports `prompt_tokens` and `completion_tokens`. The rest differs:

- OpenAI, OpenRouter, the embedded model: cached prompt tokens in `prompt_tokens_details.cached_tokens`,
  reasoning tokens in `completion_tokens_details.reasoning_tokens`.
- DeepSeek: cache hits in `prompt_cache_hit_tokens` (+ `prompt_cache_miss_tokens` = `prompt_tokens`),
  reasoning in `completion_tokens_details.reasoning_tokens`.
- OpenAI Responses API: `input_tokens_details.cached_tokens`, `output_tokens_details.reasoning_tokens`.
- Ollama, LM Studio, llama.cpp's server, older vLLM: neither.

`read_usage` returns a `Usage` whose `cached_tokens` / `reasoning_tokens` are None when the
server does not say (None is not 0: "not reported" is not "nothing cached"), and whose
`cached_source` / `reasoning_source` name the field each figure came from::

    usage = read_usage(response)
    print(usage.describe())   # prompt 128, completion 80, cached 108 (usage.prompt_tokens_details.cached_tokens), ...
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import UsageNotReportedError

__all__ = ["Usage", "read_usage"]


@dataclass(frozen=True)
class Usage:
    """Token counts of one response. `None` means the server did not report that figure."""

    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int | None
    reasoning_tokens: int | None
    cached_source: str | None = None
    reasoning_source: str | None = None

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    @property
    def uncached_prompt_tokens(self) -> int | None:
        """Prompt tokens billed at the full input price, or None when the cache figure is unknown."""
        return None if self.cached_tokens is None else self.prompt_tokens - self.cached_tokens

    def describe(self) -> str:
        """One line: every figure, with where it came from or that the server did not report it."""
        cached = "not reported" if self.cached_tokens is None else f"{self.cached_tokens} ({self.cached_source})"
        reasoning = (
            "not reported" if self.reasoning_tokens is None else f"{self.reasoning_tokens} ({self.reasoning_source})"
        )
        return (
            f"prompt {self.prompt_tokens}, completion {self.completion_tokens}, cached {cached}, reasoning {reasoning}"
        )


def _as_mapping(value: Any) -> Mapping[str, Any] | None:
    """A dict view of an SDK object (extra fields such as DeepSeek's included) or of a mapping."""
    if value is None:
        return None
    if hasattr(value, "model_dump"):
        return value.model_dump()
    if isinstance(value, Mapping):
        return value
    raise TypeError(f"expected a response, a usage object or a dict, not {type(value).__name__}")


def _count(usage: Mapping[str, Any], *path: str) -> int | None:
    """The non-negative integer at `usage[path[0]][path[1]]...`, or None when any step is absent."""
    value: Any = usage
    for key in path:
        if not isinstance(value, Mapping) or value.get(key) is None:
            return None
        value = value[key]
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise UsageNotReportedError(f"usage.{'.'.join(path)} is {value!r}, not a token count.")
    return value


def _first(usage: Mapping[str, Any], *paths: tuple[str, ...]) -> tuple[int | None, str | None]:
    for path in paths:
        value = _count(usage, *path)
        if value is not None:
            return value, "usage." + ".".join(path)
    return None, None


def read_usage(response_or_usage: Any) -> Usage:
    """Read the token counts of a chat completion or Responses API response (object or JSON dict).

    Accepts the response itself, its `.usage`, or the same as plain dicts. DeepSeek's
    `prompt_cache_hit_tokens` is preferred over `prompt_tokens_details.cached_tokens`, since
    it is the figure DeepSeek bills. Raises `UsageNotReportedError` when there is no usage
    with prompt and completion counts (e.g. a stream without `stream_options`), and
    `TypeError` for anything that is not a response, a usage object or a mapping.
    """
    data = _as_mapping(response_or_usage)
    if data is not None and "usage" in data:
        data = _as_mapping(data["usage"])
    if not data:
        raise UsageNotReportedError(
            "This response carries no usage. A streamed reply reports it only when asked: "
            "stream_options={'include_usage': True}."
        )
    prompt, _ = _first(data, ("prompt_tokens",), ("input_tokens",))
    completion, _ = _first(data, ("completion_tokens",), ("output_tokens",))
    if prompt is None or completion is None:
        raise UsageNotReportedError(f"usage has no prompt and completion token counts: {dict(data)!r}")
    cached, cached_source = _first(
        data,
        ("prompt_cache_hit_tokens",),
        ("prompt_tokens_details", "cached_tokens"),
        ("input_tokens_details", "cached_tokens"),
    )
    reasoning, reasoning_source = _first(
        data, ("completion_tokens_details", "reasoning_tokens"), ("output_tokens_details", "reasoning_tokens")
    )
    return Usage(prompt, completion, cached, reasoning, cached_source, reasoning_source)
