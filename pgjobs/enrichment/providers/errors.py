"""Provider errors: the one exception hierarchy every upstream failure is translated into at the edge.

    ProviderError                 base; .code (enrichment_log error_code), .retryable, .provider,
    │                             .status (HTTP status or None), .upstream_code (API's own code)
    ├── NotFound        NOT_FOUND        404, CAA "no art", Cloudflare 5404          not retryable
    ├── RateLimited     RATE_LIMITED     429, MusicBrainz 503, 503 + Retry-After,    retryable;
    │                                    Cloudflare 971                              .retry_after s
    ├── Unavailable     UNAVAILABLE      other 5xx, Cloudflare 55xx                  retryable
    │                   TIMEOUT          connect/read/write/pool timeout
    │                   CONNECTION_ERROR refused, reset, dropped mid-response
    ├── BadResponse     BAD_RESPONSE     HTML page, truncated/invalid JSON,          retryable
    │                                    unexpected shape (usually a cut connection
    │                                    or a proxy page; the attempt budget bounds it)
    ├── AuthError       AUTH_FAILED      401/403, Cloudflare 10000, Spotify          not retryable
    │                   NOT_CONFIGURED   invalid_client; credentials missing
    └── Rejected        REJECTED         other 4xx: the API refused this input       not retryable
                                         (Cloudflare 5400 origin fetch failed, 5413, 5455)

Cloudflare's 5409 "already exists" never escapes: the Cloudflare provider turns it into a success
flagged `already_cached`. Messages never carry credentials: providers scrub every configured
secret out of text before it reaches an exception.
"""

from __future__ import annotations


class ProviderError(Exception):
    """Base of every error a provider raises; `code` is stable and fit for enrichment_log.error_code."""

    code: str = "PROVIDER_ERROR"
    retryable: bool = False

    def __init__(
        self,
        message: str,
        *,
        provider: str,
        status: int | None = None,
        code: str | None = None,
        upstream_code: int | str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.provider = provider
        self.status = status
        self.upstream_code = upstream_code
        if code is not None:
            self.code = code  # a more specific code within the class, e.g. TIMEOUT

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(code={self.code!r}, provider={self.provider!r}, "
            f"status={self.status!r}, message={self.message!r})"
        )


class NotFound(ProviderError):
    code = "NOT_FOUND"
    retryable = False


class RateLimited(ProviderError):
    code = "RATE_LIMITED"
    retryable = True

    def __init__(self, message: str, *, provider: str, retry_after: float, **kwargs: object) -> None:
        super().__init__(message, provider=provider, **kwargs)  # type: ignore[arg-type]
        self.retry_after = retry_after

    def __repr__(self) -> str:
        return f"{super().__repr__()[:-1]}, retry_after={self.retry_after!r})"


class Unavailable(ProviderError):
    code = "UNAVAILABLE"
    retryable = True


class BadResponse(ProviderError):
    code = "BAD_RESPONSE"
    retryable = True


class AuthError(ProviderError):
    code = "AUTH_FAILED"
    retryable = False


class Rejected(ProviderError):
    code = "REJECTED"
    retryable = False
