"""A deliberately simple blocking MySQL client for sending bad input on purpose.

It logs in with the project's own protocol codecs, then lets a test write any
bytes it likes and read back packets, so malformed and hostile input can be
aimed at the proxy.
"""

from __future__ import annotations

import socket

from myrouter.protocol.auth import native_token
from myrouter.protocol.constants import Capability as C
from myrouter.protocol.messages import HandshakeResponse41, HandshakeV10, parse_err
from myrouter.protocol.packets import PacketDecoder, frame

CLIENT_CAPS = (C.LONG_PASSWORD | C.PROTOCOL_41 | C.SECURE_CONNECTION | C.PLUGIN_AUTH | C.TRANSACTIONS
               | C.MULTI_RESULTS | C.PS_MULTI_RESULTS | C.CONNECT_WITH_DB)


class RawClient:
    def __init__(self, port: int, timeout: float = 10.0) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.decoder = PacketDecoder()
        self.greeting: HandshakeV10 | None = None

    def read_packet(self):
        while True:
            pkt = self.decoder.next_packet()
            if pkt is not None:
                return pkt
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("closed by the proxy")
            self.decoder.feed(data)

    def read_greeting(self) -> HandshakeV10:
        self.greeting = HandshakeV10.parse(self.read_packet().payload)
        return self.greeting

    def login(self, user: str = "app", password: str = "app", database: str = "test") -> bytes:
        g = self.read_greeting()
        resp = HandshakeResponse41(CLIENT_CAPS, 1 << 24, 45, user, native_token(password.encode(), g.auth_data),
                                   database, "mysql_native_password")
        self.send(frame(resp.encode(), 1))
        return self.read_packet().payload

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def command(self, payload: bytes, seq: int = 0) -> bytes:
        """Send one command; return the first response packet's payload."""
        self.send(frame(payload, seq))
        return self.read_packet().payload

    def is_closed(self, timeout: float = 5.0) -> bool:
        """True if the proxy closes the connection (EOF) within ``timeout`` seconds."""
        self.sock.settimeout(timeout)
        try:
            while True:
                data = self.sock.recv(65536)
                if not data:
                    return True
        except ConnectionResetError:
            return True
        except TimeoutError:
            return False

    def close(self) -> None:
        self.sock.close()


def error_of(payload: bytes):
    """The (code, sqlstate) of an ERR payload; fails the test if it is not one."""
    assert payload[:1] == b"\xff", f"expected an ERR packet, got {payload[:20]!r}"
    err = parse_err(payload)
    return err.code, err.sqlstate
