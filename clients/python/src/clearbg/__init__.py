"""ClearBG's Python SDK: background removal through the ClearBG REST API.

    from clearbg import ClearBG

    client = ClearBG()  # CLEARBG_API_KEY, CLEARBG_BASE_URL
    result = client.remove_background("photo.jpg", size="auto")
    result.save("photo-no-bg.png")

`AsyncClearBG` is the same for asyncio; `clearbg.grpc` is a typed gRPC client for
service-to-service callers; `clearbg` (the command) processes files and folders.
"""

from clearbg._async_client import AsyncClearBG
from clearbg._client import ClearBG
from clearbg._version import __version__
from clearbg.errors import (
    APIConnectionError,
    APIError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    ClearBGError,
    ConflictError,
    InsufficientCreditsError,
    InternalServerError,
    PermissionDeniedError,
    RateLimitError,
    ServiceUnavailableError,
    UnprocessableEntityError,
)
from clearbg.types import Account, Credits, Foreground, RateLimit, RemovalResult

__all__ = [
    "ClearBG",
    "AsyncClearBG",
    "RemovalResult",
    "Foreground",
    "RateLimit",
    "Account",
    "Credits",
    "ClearBGError",
    "APIError",
    "BadRequestError",
    "AuthenticationError",
    "InsufficientCreditsError",
    "PermissionDeniedError",
    "ConflictError",
    "UnprocessableEntityError",
    "RateLimitError",
    "InternalServerError",
    "ServiceUnavailableError",
    "APIConnectionError",
    "APITimeoutError",
    "__version__",
]
