"""Values written in ProxySQL's text forms: listener lists, credentials, password hashes, hosts.

Used by the schema's checks (:mod:`myrouter.schema.variables`, :mod:`myrouter.schema.tables`)
and by the code that acts on the values (listeners, the admin interface); re-exported by
:mod:`myrouter.config`.
"""

from __future__ import annotations

import ipaddress
import re

__all__ = ["parse_interfaces", "parse_credentials", "is_native_hash", "is_loopback_host", "is_ip"]

_HEX40_RE = re.compile(r"[0-9A-Fa-f]{40}")
_PORT_RE = re.compile(r"[0-9]{1,5}")


def parse_interfaces(s: str) -> list[tuple[str, int]]:
    """Parse ProxySQL's listener list: ``"host:port"`` or ``"host:port;host2:port2"``.

    IPv6 addresses are written in brackets (``"[::1]:6033"``) and returned
    without them. Port 0 asks the kernel for a free port (for tests; the bound
    port is then known from the socket). Raises ``ValueError`` with a readable
    message on bad input (empty list, missing port, port outside 0..65535,
    Unix socket path, duplicate entry).
    """
    if not isinstance(s, str):
        raise ValueError(f"expected a string like '127.0.0.1:6033', got {type(s).__name__}")
    out: list[tuple[str, int]] = []
    for raw in s.split(";"):
        item = raw.strip()
        if not item:
            continue
        if item.startswith("/"):
            raise ValueError(f"{item!r}: Unix socket listeners are not supported")
        if item.startswith("["):
            end = item.find("]")
            if end < 0 or not item.startswith("]:", end):
                raise ValueError(f"{item!r}: expected '[ipv6]:port'")
            host = item[1:end]
            port_text = item[end + 2 :]
            try:
                ipaddress.IPv6Address(host)
            except ValueError as exc:
                raise ValueError(f"{item!r}: {host!r} is not an IPv6 address") from exc
        else:
            host, sep, port_text = item.rpartition(":")
            if not sep or not host:
                raise ValueError(f"{item!r}: expected 'host:port'")
            if ":" in host:
                raise ValueError(f"{item!r}: write IPv6 addresses in brackets: '[{host}]:{port_text}'")
        if not _PORT_RE.fullmatch(port_text):
            raise ValueError(f"{item!r}: port {port_text!r} is not a number")
        port = int(port_text)
        if port > 65535:
            raise ValueError(f"{item!r}: port must be 1..65535 (or 0: any free port)")
        if any(ch.isspace() for ch in host):
            raise ValueError(f"{item!r}: host contains whitespace")
        if (host, port) in out:
            raise ValueError(f"{item!r} is listed twice")
        out.append((host, port))
    if not out:
        raise ValueError("no listener address given (expected 'host:port')")
    return out


def parse_credentials(s: str) -> list[tuple[str, str]]:
    """Parse ProxySQL's ``"user:pass;user2:pass2"``; the password is after the first ``:``.

    Raises ``ValueError`` for an entry without ``:``, an empty user name or
    password, or a user listed twice.
    """
    if not isinstance(s, str):
        raise ValueError(f"expected a string like 'user:password', got {type(s).__name__}")
    out: list[tuple[str, str]] = []
    for raw in s.split(";"):
        item = raw.strip()
        if not item:
            continue
        user, sep, password = item.partition(":")
        if not sep:
            raise ValueError(f"entry {user!r} has no ':' (expected 'user:password')")
        if not user:
            raise ValueError("empty user name (expected 'user:password')")
        if not password:
            raise ValueError(f"user {user!r} has an empty password")
        if any(u == user for u, _ in out):
            raise ValueError(f"user {user!r} is listed twice")
        out.append((user, password))
    if not out:
        raise ValueError("no credentials given (expected 'user:password')")
    return out


def is_native_hash(password: str) -> bool:
    """True when ``password`` is a mysql_native_password hash: ``*`` + 40 hex digits."""
    return len(password) == 41 and password[0] == "*" and _HEX40_RE.fullmatch(password, 1) is not None


def is_loopback_host(host: str) -> bool:
    """True for ``localhost`` and loopback IP addresses (127.0.0.0/8, ::1).

    Wildcards (``0.0.0.0``, ``::``) and other host names are not loopback.
    """
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def is_ip(host: str) -> bool:
    """True for an IPv4 or IPv6 address (no brackets)."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True
