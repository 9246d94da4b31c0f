"""The server side of the MySQL connection phase, shared by the client port and the admin port.

Greeting (HandshakeV10), an optional SSLRequest and TLS upgrade, the HandshakeResponse41, then
the auth exchange driven by :class:`~myrouter.protocol.auth.ServerAuth` (a sans-I/O machine:
this module only carries its packets). What differs between the two ports is a parameter:
the greeting (capabilities, default plugin), the TLS context (None: TLS refused with
``no_tls_message``), how the auth machine is made (credential lookup, caches) and the
largest packet accepted before login. Timeouts, handshake slots, counters, logs, audit and
what happens after the auth machine's verdict stay with the callers (``ClientSession``,
``admin.server``): the caller wraps :func:`accept_login` in its own deadline.

Errors: :class:`MySQLError` for a refusal the client gets as ERR (TLS not enabled, an
unreadable HandshakeResponse41); :class:`TLSFailed` when the TLS handshake itself failed (no
reply is possible); the stream's ``SequenceError``/``PacketTooLarge``/``MalformedPacket`` and
``ConnectionLost`` pass through.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

from ..net.stream import ConnectionLost, PacketStream, start_tls
from ..protocol import errors as E
from ..protocol.auth import ServerAuth
from ..protocol.constants import Capability
from ..protocol.errors import MalformedPacket, MySQLError
from ..protocol.messages import SSL_REQUEST_LENGTH, HandshakeResponse41, HandshakeV10

__all__ = ["LoginAttempt", "TLSFailed", "accept_login", "auth_exchange", "is_ssl_request"]

_SSL = int(Capability.SSL)


class TLSFailed(ConnectionLost):
    """The client asked for TLS and the TLS handshake failed: the connection is unusable."""


@dataclasses.dataclass
class LoginAttempt:
    """What the connection phase ended with: the client's response, the auth machine and its last
    step (``step.error`` is None when the password was right), the sequence id of the next packet
    to the client, the agreed capabilities (an int) and whether the connection is now TLS."""

    response: HandshakeResponse41
    auth: ServerAuth
    step: object
    seq: int
    capabilities: int
    tls: bool


def is_ssl_request(payload: bytes) -> bool:
    """An SSLRequest: the 32-byte prefix of a HandshakeResponse41 with CLIENT_SSL set."""
    return len(payload) == SSL_REQUEST_LENGTH and bool(int.from_bytes(payload[:4], "little") & _SSL)


async def accept_login(
    stream: PacketStream,
    greeting: HandshakeV10,
    *,
    tls_context,
    no_tls_message: str,
    make_auth: Callable[[bool], ServerAuth],
    max_packet: int | None = None,
) -> LoginAttempt:
    """Run the connection phase on ``stream`` up to the auth machine's verdict (not sent yet when it
    is a success: the caller sends OK, or an ERR of its own, with ``seq``).

    ``make_auth(tls)`` builds the auth machine once the transport is known. ``max_packet`` caps the
    packets accepted meanwhile (restored after)."""
    decoder = stream.decoder
    saved_max = decoder.max_payload
    if max_packet is not None:
        decoder.max_payload = min(max_packet, saved_max or max_packet)
    try:
        await stream.send_packet(greeting.encode(), 0)
        stream.decoder.expect_seq = 1
        pkt = await stream.read_packet()
        tls = False
        if is_ssl_request(pkt.payload):
            if tls_context is None:
                raise MySQLError(E.ER_HANDSHAKE_ERROR, no_tls_message, "08S01")
            # SSLRequest: TLS from here on; the full HandshakeResponse41 follows, encrypted
            try:
                await start_tls(stream, tls_context, server_side=True)
            except ConnectionLost as exc:
                raise TLSFailed(str(exc)) from exc
            tls = True
            stream.decoder.expect_seq = (pkt.seq + 1) & 0xFF
            pkt = await stream.read_packet()
        try:
            resp = HandshakeResponse41.parse(pkt.payload)
        except MalformedPacket as exc:
            raise E.bad_handshake() from exc
        capabilities = int(resp.capabilities & greeting.capabilities)  # an int: IntFlag operators are slow
        auth = make_auth(tls)
        step = auth.start(resp.username, resp.auth_response, resp.auth_plugin)
        step, seq = await auth_exchange(stream, auth, step, (pkt.seq + 1) & 0xFF, check_seq=True)
        return LoginAttempt(resp, auth, step, seq, capabilities, tls)
    finally:
        stream.decoder.expect_seq = None
        decoder.max_payload = saved_max


async def auth_exchange(stream: PacketStream, auth: ServerAuth, step, seq: int, *, check_seq: bool):
    """Send what the auth machine asks for and feed it the client's answers until it is done.
    Returns the last step and the sequence id of the next packet to the client."""
    while True:
        for out in step.send:
            seq = await stream.send_packet(out, seq)
        if step.done:
            return step, seq
        if check_seq:
            stream.decoder.expect_seq = seq
        pkt = await stream.read_packet()
        seq = (pkt.seq + 1) & 0xFF
        step = auth.receive(pkt.payload)
