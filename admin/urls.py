"""Database URLs as they may be shown or logged: the one masking function.

A light module (SQLAlchemy's URL parser only): the job worker and the engine use it
without loading the panel's settings model.
"""

from __future__ import annotations

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

# libpq parameters that carry a secret when given in a URL's query string.
SECRET_QUERY_KEYS = frozenset({"password", "sslpassword", "sslkey", "passfile", "sslcrl"})
_MASK = "***"
_MASK_SENTINEL = "MASKEDSECRETVALUE"


def mask_url(value: str | URL) -> str:
    """The one way a database URL is shown or logged: secrets replaced by ``***``.

    Masks the userinfo password and every libpq secret given as a query parameter
    (``?password=``, ``sslpassword=``, ``sslkey=``...: valid libpq syntax). A value that
    does not parse as a URL is not shown at all.
    """
    try:
        url = make_url(value) if isinstance(value, str) else value
    except (ArgumentError, ValueError):
        return "(a database URL that cannot be read)"
    secret = {key: _MASK_SENTINEL for key in url.query if key.lower() in SECRET_QUERY_KEYS}
    if secret:
        url = url.update_query_dict(secret)
    return url.render_as_string(hide_password=True).replace(_MASK_SENTINEL, _MASK)
