"""The HTTP library the installed `openai` SDK is built on.

openai 3.x takes an `httpx2.Client` as `http_client`; 1.x and 2.x take an
`httpx.Client`. Both expose the same transport API, which is all we use.
"""

import openai

if int(openai.__version__.split(".")[0]) >= 3:
    import httpx2 as httpx
else:  # pragma: no cover - exercised only with an older SDK
    import httpx  # type: ignore[no-redef]

__all__ = ["httpx"]
