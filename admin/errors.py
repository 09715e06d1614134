"""One exception hierarchy: every error a person may see says what to do next."""

from __future__ import annotations


class AdminError(Exception):
    """An error with a message meant for the person who caused it.

    ``status`` is the HTTP status the web layer answers with, ``title`` the heading of
    the error page; the CLI prints ``str(error)`` on one line and exits non-zero.
    """

    status: int = 400
    title: str = "Request refused"
    exit_code: int = 1
    # True once a service has audited this refusal itself; the web layer then does not.
    audited: bool = False

    def __init__(self, message: str, *, title: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if title is not None:
            self.title = title

    def __str__(self) -> str:
        return self.message


class ConfigError(AdminError):
    """A setting has a bad value; start-up stops with exit code 2."""

    status = 500
    title = "Configuration error"
    exit_code = 2


class InvalidInput(AdminError):
    status = 400
    title = "Invalid input"


class NotAuthenticated(AdminError):
    status = 401
    title = "Sign-in required"


class PermissionDenied(AdminError):
    status = 403
    title = "Not allowed"


class NotFound(AdminError):
    status = 404
    title = "Not found"


class Conflict(AdminError):
    status = 409
    title = "Conflict"


class TooManyRequests(AdminError):
    """Refused for now; ``retry_after`` (seconds) becomes the Retry-After header."""

    status = 429
    title = "Too many attempts"

    def __init__(
        self, message: str, *, title: str | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(message, title=title)
        self.retry_after = retry_after


class Unavailable(AdminError):
    """A database or tool the panel depends on does not answer."""

    status = 503
    title = "Unavailable"


def describe(exc: BaseException) -> str:
    """The first line of a (database) error's own message, without SQLAlchemy's wrapping."""
    inner = getattr(exc, "orig", None) or exc
    lines = str(inner).strip().splitlines()
    text = lines[0] if lines else ""
    return f"{inner.__class__.__name__}: {text}" if text else inner.__class__.__name__
