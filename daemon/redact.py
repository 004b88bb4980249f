"""Keep secrets out of everything elasticd writes: logs, errors, the audit, metrics, health.

One place decides what a secret looks like, so every path out of the process (a log line, an
error message, an audit record, a /readyz reason) can run its text through the same function:

- a URL's password (``http://user:s3cret@host`` -> ``http://user:***@host``), or its whole
  userinfo when there is no password, since a lone userinfo is usually a token;
- query parameters named like credentials (``token``, ``password``, ``api_key``,
  ``X-Amz-Signature``...), in URLs and as ``key=value`` in free text;
- ``Bearer <token>`` and ``Basic <credentials>`` as they appear in Authorization headers;
- any value registered with ``register_secret`` (a token read from a file, a password from an
  environment variable), wherever it appears.

Redaction never raises: a malformed URL is still scrubbed as text.
"""

from __future__ import annotations

import re
import threading
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

__all__ = ["MASK", "redact_text", "redact_url", "register_secret"]

MASK = "***"

# Names (compared lower-case, without '-' and '_') of query parameters and key=value pairs
# whose value is a credential.
_SECRET_KEYS = frozenset(
    {
        "token",
        "accesstoken",
        "authtoken",
        "idtoken",
        "refreshtoken",
        "bearertoken",
        "password",
        "passwd",
        "pwd",
        "secret",
        "clientsecret",
        "apikey",
        "signature",
        "xamzsignature",
        "xamzcredential",
        "xamzsecuritytoken",
        "authorization",
    }
)

# A URL: a scheme, "://", then everything up to whitespace or a quote/bracket that ends it in
# reprs and messages ("URL('http://...')", "<http://...>").
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>()\[\]{}]+")
# ``key=value`` outside URLs, e.g. in an error body echoed back to us. Not ``key: value``:
# config errors read ``basic_auth.password: must be set`` and must stay readable.
_PAIR = re.compile(r"\b([A-Za-z][A-Za-z0-9_-]*)(=)([^\s&'\",;)\]}]+)")
_AUTH_SCHEME = re.compile(r"(?i)\b(Bearer|Basic)\s+[A-Za-z0-9._~+/=-]+")

# Substrings (lower-case) without which no URL, key=value credential or auth header can be in
# a text: _SECRET_KEYS all contain one of them.
_HINTS = (
    "://",
    "token",
    "pass",
    "pwd",
    "secret",
    "key",
    "signature",
    "cred",
    "authorization",
    "bearer",
    "basic",
)

# Secrets shorter than this are not registered: masking every "a" in a log would hide more
# than it protects, and such a secret is not one.
_MIN_SECRET_LENGTH = 4

_registered: set[str] = set()
_registered_lock = threading.Lock()


def register_secret(value: str) -> None:
    """Mask ``value`` wherever ``redact_text`` finds it from now on (tokens, passwords)."""
    value = value.strip()
    if len(value) >= _MIN_SECRET_LENGTH:
        with _registered_lock:
            _registered.add(value)


def _secret_key(name: str) -> bool:
    return name.lower().replace("-", "").replace("_", "") in _SECRET_KEYS


def redact_url(url: str) -> str:
    """``url`` with its password (or lone userinfo) and credential query parameters masked."""
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
        if "@" in netloc:
            userinfo, _, hostport = netloc.rpartition("@")
            user, has_password, _ = userinfo.partition(":")
            netloc = f"{user}:{MASK}@{hostport}" if has_password else f"{MASK}@{hostport}"
        query = parts.query
        if query:
            pairs = parse_qsl(query, keep_blank_values=True)
            if any(_secret_key(key) for key, _ in pairs):
                query = urlencode(
                    [(key, MASK if _secret_key(key) else value) for key, value in pairs],
                    safe="*",
                )
        text = urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
    except ValueError:
        # urlsplit refuses some malformed netlocs (an unclosed "[" for IPv6): scrub as text.
        text = _redact_pairs(re.sub(r"//[^/@\s]*@", f"//{MASK}@", url))
    return _redact_registered(text)


def redact_text(text: str) -> str:
    """``text`` with every secret this module knows how to spot masked."""
    if not text:
        return text
    lowered = text.lower()
    if not any(hint in lowered for hint in _HINTS):
        # Most log lines hold none of these: skip the regular expressions (3x cheaper).
        return _redact_registered(text)
    text = _URL.sub(lambda match: redact_url(match.group(0)), text)
    text = _AUTH_SCHEME.sub(lambda match: f"{match.group(1)} {MASK}", text)
    return _redact_registered(_redact_pairs(text))


def _redact_pairs(text: str) -> str:
    def mask(match: re.Match[str]) -> str:
        key, separator, value = match.groups()
        if not _secret_key(key) or value == MASK:
            return match.group(0)
        return f"{key}{separator}{MASK}"

    return _PAIR.sub(mask, text)


def _redact_registered(text: str) -> str:
    with _registered_lock:
        secrets = sorted(_registered, key=len, reverse=True)
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, MASK)
    return text
