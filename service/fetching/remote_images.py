"""`image_url` / `bg_image_url`: downloads for the asyncio server, as API errors.

The download is blocking I/O (DNS has no async form in the standard library), so it runs on
its own small thread pool, never the engine's: the event loop never waits on it, and a slow
remote server cannot hold an inference slot. At most `url_fetch_concurrency` downloads run
at once; beyond that the answer is 503, like a full engine queue, rather than a growing
backlog of threads.
"""

from __future__ import annotations

import asyncio
import ssl
import threading
from concurrent.futures import ThreadPoolExecutor

from service.config import Settings
from service.errors import ApiError, bad_request
from service.fetching.download import (
    Downloader,
    FetchPolicy,
    FetchRefused,
    Resolver,
    TooLarge,
    canonical_host,
    system_resolver,
)
from service.logging import get_logger

log = get_logger(__name__)

# The thread stops itself at the deadline; this is only for DNS, which cannot be interrupted.
GRACE_S = 1.0


def _mb(n: int) -> str:
    return f"{n / 1_048_576:.1f} MB"


class RemoteImages:
    def __init__(self, settings: Settings, resolver: Resolver = system_resolver, tls: ssl.SSLContext | None = None):
        policy = FetchPolicy(
            max_bytes=settings.max_file_bytes,
            timeout_s=settings.url_fetch_timeout_s,
            allow_hosts=frozenset(canonical_host(h) for h in settings.url_fetch_allow_hosts),
        )
        self.downloader = Downloader(policy, resolver, tls)
        self.concurrency = settings.url_fetch_concurrency
        self._executor = ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="url-fetch")
        # Taken on the event loop, given back by the worker thread when it is really done.
        self._slots = threading.BoundedSemaphore(self.concurrency)

    def shutdown(self) -> None:
        # Not waiting: a thread stuck in DNS must not hold up the server's stop.
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def fetch(self, field: str, url: str) -> bytes:
        """The bytes at `url`; ApiError 400 failed_image_download (or file_too_large) otherwise."""
        if not self._slots.acquire(blocking=False):
            raise ApiError(
                503,
                "overloaded",
                "Too many image downloads are running; try again shortly.",
                headers=[("retry-after", "2")],
            )
        policy = self.downloader.policy
        try:
            future = self._executor.submit(self._download, url)
        except BaseException:
            self._slots.release()
            raise
        try:
            return await asyncio.wait_for(asyncio.wrap_future(future), policy.timeout_s + GRACE_S)
        except TooLarge as exc:
            log.info("url_fetch_refused", field=field, reason="too_large")
            if exc.size is not None:
                detail = f"The image at {field} is {_mb(exc.size)} ({exc.size:,} bytes); the limit is {_mb(exc.limit)}."
            else:
                detail = f"The image at {field} is larger than the limit of {_mb(exc.limit)}; the download was stopped."
            raise bad_request("file_too_large", detail) from None
        except FetchRefused as exc:
            log.info("url_fetch_refused", field=field, reason=exc.reason)
            raise failed_download(field, exc.reason) from None
        except asyncio.TimeoutError:
            log.info("url_fetch_refused", field=field, reason="timeout (dns)")
            raise failed_download(field, f"timed out after {policy.timeout_s:g} s") from None

    def _download(self, url: str) -> bytes:
        try:
            return self.downloader.download(url)
        finally:
            self._slots.release()


def failed_download(field: str, reason: str) -> ApiError:
    return bad_request("failed_image_download", f"Could not download {field}: {reason}.")
