"""A small etcd v3 client over etcd's JSON gateway (``/v3/...``), with httpx on Trio.

Why not a maintained Python client: the ones on PyPI (``etcd3``, ``aetcd``, ``etcd3gw``)
are gRPC/asyncio or thread based; the proxy runs on Trio. The gateway is part of
every etcd server since 3.4 (same port as gRPC), so the whole API myrouter needs is
a few JSON POSTs: ``kv/range``, ``kv/txn``, ``watch`` (a streaming POST: one JSON
object per line), ``lease/grant``, ``lease/keepalive`` and ``auth/authenticate``.
Keys and values are base64 in JSON; 64-bit integers are JSON strings.

Endpoints are tried in order from the last one that answered: a member that is
down costs one refused connection. :class:`EtcdUnavailable` when none answers.
"""

from __future__ import annotations

import base64
import json
import logging
import ssl
from collections.abc import AsyncIterator
from typing import Any

import httpx

log = logging.getLogger("myrouter.cluster")

__all__ = ["EtcdClient", "EtcdError", "EtcdUnavailable", "KV", "b64", "header_revision", "unb64"]


class EtcdError(Exception):
    """etcd answered with an error."""


class EtcdUnavailable(EtcdError):
    """No endpoint could be reached (or none answered in time)."""


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def unb64(text: str | None) -> bytes:
    return base64.b64decode(text or "")


class KV:
    """One key-value of a range or watch answer."""

    __slots__ = ("key", "value", "mod_revision", "lease")

    def __init__(self, raw: dict[str, Any]) -> None:
        try:
            self.key = unb64(raw.get("key"))
            self.value = unb64(raw.get("value"))
            self.mod_revision = int(raw.get("mod_revision", 0))
            self.lease = int(raw.get("lease", 0))
        except (ValueError, TypeError, AttributeError):
            raise EtcdError(f"unexpected key-value from etcd: {raw!r:.200}") from None


class EtcdClient:
    def __init__(self, endpoints: list[str] | tuple[str, ...], *, timeout: float = 2.0, ca: str = "",
                 cert: str = "", key: str = "", username: str = "", password: str = "") -> None:
        self.endpoints = list(endpoints)
        self.timeout = timeout
        self._current = 0
        self._username = username
        self._password = password
        self._token: str | None = None
        verify: ssl.SSLContext | bool = True
        if any(e.startswith("https://") for e in self.endpoints):
            context = ssl.create_default_context(cafile=ca or None)
            if cert:
                context.load_cert_chain(cert, key)
            verify = context
        self._http = httpx.AsyncClient(verify=verify, timeout=httpx.Timeout(timeout),
                                       limits=httpx.Limits(max_keepalive_connections=4))

    async def aclose(self) -> None:
        await self._http.aclose()

    # ------------------------------------------------------------------ transport

    def _order(self) -> list[int]:
        n = len(self.endpoints)
        return [(self._current + i) % n for i in range(n)]

    async def _authenticate(self, endpoint: str) -> None:
        resp = await self._http.post(f"{endpoint}/v3/auth/authenticate",
                                     json={"name": self._username, "password": self._password})
        body = _json(resp)
        if resp.status_code != 200 or "token" not in body:
            raise EtcdError(f"etcd authentication of user {self._username!r} failed: {_message(resp, body)}")
        self._token = body["token"]

    def _headers(self) -> dict[str, str]:
        return {"Authorization": self._token} if self._token else {}

    async def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST ``body`` to ``/v3/<path>`` on the first endpoint that answers; the answer's JSON."""
        errors = []
        for i in self._order():
            endpoint = self.endpoints[i]
            try:
                for attempt in (1, 2):
                    if self._username and self._token is None:
                        await self._authenticate(endpoint)
                    resp = await self._http.post(f"{endpoint}/v3/{path}", json=body, headers=self._headers())
                    answer = _json(resp)
                    if resp.status_code == 200 and "error" not in answer:
                        self._current = i
                        return answer
                    message = _message(resp, answer)
                    if self._username and attempt == 1 and _is_token_error(message):
                        self._token = None  # expired (simple tokens live 5 min): log in again
                        continue
                    if _is_unavailable(message):
                        raise httpx.TransportError(message)
                    if resp.status_code == 200 and not answer:
                        raise httpx.DecodingError(f"not a JSON answer: {resp.text[:100]!r}")
                    raise EtcdError(message)
            except httpx.HTTPError as exc:  # refused, reset, timed out, no leader: the next one
                errors.append(f"{endpoint}: {exc or type(exc).__name__}")
        raise EtcdUnavailable("no etcd endpoint answered (" + "; ".join(errors) + ")")

    # ------------------------------------------------------------------ KV

    async def range_prefix(self, prefix: bytes, end: bytes) -> tuple[int, list[KV]]:
        """(store revision, key-values) of every key in [prefix, end)."""
        answer = await self.post("kv/range", {"key": b64(prefix), "range_end": b64(end)})
        return header_revision(answer), [KV(kv) for kv in answer.get("kvs", [])]

    async def txn(self, compare: list[dict], success: list[dict], failure: list[dict]) -> dict[str, Any]:
        return await self.post("kv/txn", {"compare": compare, "success": success, "failure": failure})

    async def put(self, key: bytes, value: bytes, lease: int = 0) -> int:
        body: dict[str, Any] = {"key": b64(key), "value": b64(value)}
        if lease:
            body["lease"] = str(lease)
        answer = await self.post("kv/put", body)
        return header_revision(answer)

    # ------------------------------------------------------------------ leases

    async def lease_grant(self, ttl: int) -> int:
        answer = await self.post("lease/grant", {"TTL": ttl})
        try:
            return int(answer["ID"])
        except (KeyError, TypeError, ValueError):
            raise EtcdError(f"unexpected answer to lease/grant: {answer!r:.200}") from None

    async def lease_keepalive(self, lease: int) -> int:
        """Refresh a lease; its remaining TTL (0: the lease is gone)."""
        answer = await self.post("lease/keepalive", {"ID": str(lease)})
        return int(answer.get("result", {}).get("TTL", 0))

    async def lease_revoke(self, lease: int) -> None:
        await self.post("lease/revoke", {"ID": str(lease)})

    # ------------------------------------------------------------------ watch

    async def watch(self, prefix: bytes, end: bytes, start_revision: int) -> AsyncIterator[dict[str, Any]]:
        """The watch results for [prefix, end) from ``start_revision`` on, until the stream breaks
        (EtcdUnavailable) or etcd cancels the watch (EtcdError, e.g. the revision was compacted)."""
        errors = []
        for i in self._order():
            endpoint = self.endpoints[i]
            request = {"create_request": {"key": b64(prefix), "range_end": b64(end),
                                          "start_revision": str(start_revision)}}
            try:
                if self._username and self._token is None:
                    await self._authenticate(endpoint)
                async with self._http.stream("POST", f"{endpoint}/v3/watch", json=request, headers=self._headers(),
                                             timeout=httpx.Timeout(self.timeout, read=None)) as resp:
                    if resp.status_code != 200:
                        await resp.aread()
                        raise EtcdError(_message(resp, _json(resp)))
                    self._current = i
                    async for line in resp.aiter_lines():
                        if not line.strip():
                            continue
                        try:
                            message = json.loads(line)
                        except ValueError:
                            raise EtcdUnavailable(f"watch on {endpoint}: not JSON: {line[:100]!r}") from None
                        if "error" in message:
                            text = str(message["error"].get("message", message["error"]))
                            if self._username and _is_token_error(text):
                                self._token = None
                            raise EtcdUnavailable(f"watch on {endpoint} ended: {text}")
                        result = message.get("result", {})
                        if result.get("canceled"):
                            raise EtcdError(f"etcd canceled the watch: {result.get('cancel_reason', '')}"
                                            f" (compact_revision {result.get('compact_revision', 0)})")
                        yield result
                raise EtcdUnavailable(f"watch stream of {endpoint} ended")
            except httpx.HTTPError as exc:
                errors.append(f"{endpoint}: {exc or type(exc).__name__}")
        raise EtcdUnavailable("no etcd endpoint answered the watch (" + "; ".join(errors) + ")")


def header_revision(answer: dict[str, Any]) -> int:
    """The store revision in an answer's header; EtcdError if it has none."""
    try:
        return int(answer["header"]["revision"])
    except (KeyError, TypeError, ValueError):
        raise EtcdError(f"unexpected answer from etcd (no header revision): {answer!r:.200}") from None


def _json(resp: httpx.Response) -> dict[str, Any]:
    try:
        body = resp.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _message(resp: httpx.Response, body: dict[str, Any]) -> str:
    text = str(body.get("message") or body.get("error") or resp.text[:200]).strip()
    if "CommonName of client" in text:
        text += (" (with etcd authentication on, etcd's JSON gateway refuses client certificates that have a "
                 "CommonName: use etcd_cert without CN, etcd_username says who the client is)")
    return f"{text} (HTTP {resp.status_code})"


def _is_token_error(message: str) -> bool:
    return "invalid auth token" in message or "user name is empty" in message


def _is_unavailable(message: str) -> bool:
    """etcd errors that mean "ask another member": no leader, timeouts, a member stopping."""
    return any(s in message for s in ("no leader", "timed out", "leader changed", "stopping", "not capable",
                                      "too many requests"))
