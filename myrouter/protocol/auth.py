"""Authentication: the two supported plugins, on both sides of the proxy.

``ServerAuth`` is the server side (a client logging in to myrouter); it checks
the client against myrouter's own users. ``ClientAuth`` is the client side (myrouter
logging in to a backend with the client's credentials). Both are sans-I/O state
machines: they take payloads and return ``Step``s saying what to send and
whether the exchange is over.

What the proxy knows of a password (``Credential``): always the
``mysql_native_password`` stage-2 hash SHA1(SHA1(pw)), and the plain text when
the configuration gives it. A client's successful login may teach it more
(``BackendSecret``): a native login reveals SHA1(pw) (enough to log in to a
backend with mysql_native_password), a caching_sha2 full authentication
reveals the plain text. Secrets are never logged: their ``repr`` hides them.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import os
from dataclasses import dataclass, field

from .constants import (
    AUTH_MORE_DATA_HEADER,
    CACHING_SHA2_PASSWORD,
    EOF_HEADER,
    ERR_HEADER,
    NATIVE_PASSWORD,
    OK_HEADER,
    SHA2_FAST_AUTH_SUCCESS,
    SHA2_PERFORM_FULL_AUTHENTICATION,
    SHA2_REQUEST_PUBLIC_KEY,
    SUPPORTED_AUTH_PLUGINS,
)
from .errors import MalformedPacket, MySQLError, access_denied
from .messages import AuthSwitch, auth_more_data, auth_switch_request, parse_err

SCRAMBLE_LENGTH = 20


def new_scramble() -> bytes:
    """20 random bytes without NUL or '$' (some clients stop at either)."""
    out = bytearray()
    while len(out) < SCRAMBLE_LENGTH:
        for b in os.urandom(SCRAMBLE_LENGTH):
            b &= 0x7F
            if b not in (0, 0x24) and len(out) < SCRAMBLE_LENGTH:
                out.append(b)
    return bytes(out)


def _xor(a: bytes, b: bytes) -> bytes:
    return bytes(x ^ y for x, y in zip(a, b))


def _sha1(*parts: bytes) -> bytes:
    h = hashlib.sha1()
    for p in parts:
        h.update(p)
    return h.digest()


def _sha256(*parts: bytes) -> bytes:
    h = hashlib.sha256()
    for p in parts:
        h.update(p)
    return h.digest()


# --- mysql_native_password -------------------------------------------------


def native_stage1(password: bytes) -> bytes:
    return _sha1(password)


def native_stage2(password: bytes) -> bytes:
    return _sha1(_sha1(password))


def native_hash_text(password: bytes) -> str:
    """The ``*``+40 hex digits form that mysql.user and ProxySQL store."""
    return "*" + native_stage2(password).hex().upper()


def is_native_hash(text: str) -> bool:
    if len(text) != 41 or text[0] != "*":
        return False
    try:
        bytes.fromhex(text[1:])
    except ValueError:
        return False
    return True


def native_token_from_stage1(stage1: bytes, scramble: bytes) -> bytes:
    """The client's reply: SHA1(pw) XOR SHA1(scramble + SHA1(SHA1(pw)))."""
    return _xor(stage1, _sha1(scramble[:SCRAMBLE_LENGTH], _sha1(stage1)))


def native_token(password: bytes, scramble: bytes) -> bytes:
    if not password:
        return b""
    return native_token_from_stage1(native_stage1(password), scramble)


def native_verify(token: bytes, scramble: bytes, stage2: bytes) -> bytes | None:
    """Check a native token against the stored stage-2 hash; return SHA1(pw) on success."""
    if len(token) != 20:
        return None
    stage1 = _xor(token, _sha1(scramble[:SCRAMBLE_LENGTH], stage2))
    if hmac.compare_digest(_sha1(stage1), stage2):
        return stage1
    return None


# --- caching_sha2_password -------------------------------------------------


def sha2_digest2(password: bytes) -> bytes:
    """SHA256(SHA256(pw)): what the server caches to allow fast authentication."""
    return _sha256(_sha256(password))


def sha2_token(password: bytes, nonce: bytes) -> bytes:
    """XOR(SHA256(pw), SHA256(SHA256(SHA256(pw)) + nonce))."""
    if not password:
        return b""
    p1 = _sha256(password)
    return _xor(p1, _sha256(_sha256(p1), nonce[:SCRAMBLE_LENGTH]))


def sha2_fast_verify(token: bytes, nonce: bytes, digest2: bytes) -> bool:
    if len(token) != 32:
        return False
    p1 = _xor(token, _sha256(digest2, nonce[:SCRAMBLE_LENGTH]))
    return hmac.compare_digest(_sha256(p1), digest2)


def xor_with_nonce(data: bytes, nonce: bytes) -> bytes:
    nonce = nonce[:SCRAMBLE_LENGTH]
    return bytes(b ^ nonce[i % len(nonce)] for i, b in enumerate(data))


class RSAKeyPair:
    """The proxy's RSA key for caching_sha2_password full authentication over plain TCP."""

    def __init__(self, bits: int = 2048) -> None:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa

        self._key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
        self.size_bytes = bits // 8
        self.public_pem = self._key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def decrypt(self, blob: bytes) -> bytes:
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding

        return self._key.decrypt(
            blob, padding.OAEP(mgf=padding.MGF1(algorithm=hashes.SHA1()), algorithm=hashes.SHA1(), label=None)
        )

    def __repr__(self) -> str:
        return "RSAKeyPair(<hidden>)"


def rsa_encrypt_password(public_pem: bytes, password: bytes, nonce: bytes) -> bytes:
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding

    key = serialization.load_pem_public_key(public_pem)
    message = xor_with_nonce(password + b"\0", nonce)
    return key.encrypt(  # type: ignore[union-attr]
        message, padding.OAEP(mgf=padding.MGF1(algorithm=hashes.SHA1()), algorithm=hashes.SHA1(), label=None)
    )


# --- what the proxy knows of a password ------------------------------------


@dataclass(frozen=True, slots=True)
class Credential:
    """A configured user's password: stage-2 hash always, plain text when configured."""

    stage2: bytes = field(repr=False)
    plain: bytes | None = field(default=None, repr=False)

    @classmethod
    def from_config(cls, password: str) -> Credential:
        if is_native_hash(password):
            return cls(bytes.fromhex(password[1:]))
        pw = password.encode()
        return cls(native_stage2(pw) if pw else b"", pw)

    @property
    def empty(self) -> bool:
        return not self.stage2 and not self.plain

    def matches_plain(self, password: bytes) -> bool:
        if self.plain is not None:
            return hmac.compare_digest(self.plain, password)
        return bool(password) and hmac.compare_digest(native_stage2(password), self.stage2)


@dataclass(frozen=True, slots=True)
class BackendSecret:
    """What the proxy can log in to a backend with, for one user."""

    plain: bytes | None = field(default=None, repr=False)
    stage1: bytes | None = field(default=None, repr=False)

    @property
    def empty_password(self) -> bool:
        return self.plain == b""

    def native_token(self, scramble: bytes) -> bytes:
        if self.plain is not None:
            return native_token(self.plain, scramble)
        if self.stage1 is not None:
            return native_token_from_stage1(self.stage1, scramble)
        return b""


# --- sans-I/O exchanges ----------------------------------------------------


@dataclass(slots=True)
class Step:
    """What an auth state machine wants done next."""

    send: list[bytes] = field(default_factory=list)  # payloads to send, in order
    done: bool = False  # the exchange is over (successfully unless ``error``)
    error: MySQLError | None = None


class _S(enum.Enum):
    START = 0
    WAIT_SWITCH_RESPONSE = 1
    WAIT_FULL_AUTH = 2
    WAIT_RSA = 3
    DONE = 4
    FAILED = 5


class ServerAuth:
    """Checks one client login (initial handshake or COM_CHANGE_USER).

    ``lookup(username)`` returns the user's ``Credential`` or None. ``sha2_cache``
    maps usernames to (SHA256(SHA256(pw)), BackendSecret) for caching_sha2 fast
    authentication; it is filled after a successful full authentication, like
    the server's cache (the owner clears a user's entry when the password changes).
    After success, ``username`` and ``secret`` say who logged in and what the
    proxy now knows of the password. After a failure the state is sticky.
    """

    def __init__(
        self,
        *,
        scramble: bytes,
        lookup,
        default_plugin: str,
        rsa: RSAKeyPair | None,
        sha2_cache: dict[str, tuple[bytes, BackendSecret]],
        client_host: str,
        secure_transport: bool = False,
        cleartext_ok: bool = False,
    ) -> None:
        self.scramble = scramble
        # Accept a plain-text password in caching_sha2 full authentication (not only
        # an RSA-encrypted one): for TLS/unix sockets, and for loopback clients whose
        # bytes never leave the host.
        self.cleartext_ok = cleartext_ok
        self._lookup = lookup
        self.default_plugin = default_plugin if default_plugin in SUPPORTED_AUTH_PLUGINS else NATIVE_PASSWORD
        self._rsa = rsa
        self._sha2_cache = sha2_cache
        self.client_host = client_host
        self.secure_transport = secure_transport
        self._state = _S.START
        self.username = ""
        self.plugin = ""
        self.secret: BackendSecret | None = None
        self._cred: Credential | None = None
        self._used_password = False

    @property
    def done(self) -> bool:
        return self._state is _S.DONE

    def _deny(self) -> Step:
        self._state = _S.FAILED
        return Step(done=True, error=access_denied(self.username, self.client_host, self._used_password))

    def _success(self, send: list[bytes] | None = None) -> Step:
        self._state = _S.DONE
        return Step(send=send or [], done=True)

    def start(self, username: str, token: bytes, client_plugin: str | None) -> Step:
        """Handle the client's first answer (HandshakeResponse41 or COM_CHANGE_USER)."""
        if self._state is not _S.START:
            raise RuntimeError("ServerAuth.start called twice")
        self.username = username
        self._used_password = bool(token)
        self._cred = self._lookup(username)
        plugin = client_plugin or NATIVE_PASSWORD
        if self._cred is None:
            if plugin == CACHING_SHA2_PASSWORD and token:
                # Ask for full authentication as for a known user, so the reply does not
                # tell a prober which user names exist; it is denied at the end.
                self.plugin = plugin
                self._state = _S.WAIT_FULL_AUTH
                return Step(send=[bytes((AUTH_MORE_DATA_HEADER, SHA2_PERFORM_FULL_AUTHENTICATION))])
            return self._deny()
        if plugin not in SUPPORTED_AUTH_PLUGINS:
            # The client started with a plugin we do not serve: ask it to switch.
            self.plugin = self.default_plugin
            self._state = _S.WAIT_SWITCH_RESPONSE
            return Step(send=[auth_switch_request(self.plugin, self.scramble)])
        self.plugin = plugin
        return self._verify(token)

    def receive(self, payload: bytes) -> Step:
        """Handle a further packet from the client during authentication."""
        st = self._state
        if st is _S.WAIT_SWITCH_RESPONSE:
            self._used_password = bool(payload)
            return self._verify(payload)
        if st is _S.WAIT_FULL_AUTH:
            if payload == bytes((SHA2_REQUEST_PUBLIC_KEY,)) and not self.secure_transport:
                if self._rsa is None:
                    return self._deny()
                self._state = _S.WAIT_RSA
                return Step(send=[auth_more_data(self._rsa.public_pem)])
            return self._full_auth(payload)
        if st is _S.WAIT_RSA:
            return self._full_auth(payload)
        raise RuntimeError(f"ServerAuth.receive in state {st.name}")

    def _verify(self, token: bytes) -> Step:
        cred = self._cred
        assert cred is not None
        if self.plugin == NATIVE_PASSWORD:
            if not token:
                if cred.empty:
                    self.secret = BackendSecret(plain=b"")
                    return self._success()
                return self._deny()
            stage1 = native_verify(token, self.scramble, cred.stage2) if cred.stage2 else None
            if stage1 is None:
                return self._deny()
            self.secret = BackendSecret(plain=cred.plain, stage1=stage1)
            return self._success()
        # caching_sha2_password
        if not token or token == b"\0":
            if cred.empty:
                self.secret = BackendSecret(plain=b"")
                return self._success()
            return self._deny()
        cached = self._sha2_cache.get(self.username)
        if cached is not None:
            digest2, secret = cached
            if sha2_fast_verify(token, self.scramble, digest2):
                self.secret = secret
                return self._success([bytes((AUTH_MORE_DATA_HEADER, SHA2_FAST_AUTH_SUCCESS))])
            # A stale entry (the password changed): fall back to full authentication, as MySQL does.
        self._state = _S.WAIT_FULL_AUTH
        return Step(send=[bytes((AUTH_MORE_DATA_HEADER, SHA2_PERFORM_FULL_AUTHENTICATION))])

    def _full_auth(self, payload: bytes) -> Step:
        cred = self._cred
        if cred is None:
            self._used_password = True
            return self._deny()
        rsa_sized = self._rsa is not None and len(payload) == self._rsa.size_bytes
        if not rsa_sized and (self.secure_transport or self.cleartext_ok):
            # A client that considers the link safe sends the password itself, NUL-ended
            # (libmariadb does so even over TCP to 127.0.0.1).
            password = payload[:-1] if payload.endswith(b"\0") else payload
        else:
            if self._rsa is None:
                return self._deny()
            try:
                clear = self._rsa.decrypt(payload)
            except ValueError:
                return self._deny()
            password = xor_with_nonce(clear, self.scramble)
            nul = password.find(b"\0")
            if nul >= 0:
                password = password[:nul]
        self._used_password = True
        if not cred.matches_plain(password):
            return self._deny()
        self.secret = BackendSecret(plain=password, stage1=native_stage1(password))
        self._sha2_cache[self.username] = (sha2_digest2(password), self.secret)
        return self._success()


class ClientAuth:
    """Logs in to a backend server with a user's credentials (client side)."""

    def __init__(self, *, username: str, secret: BackendSecret, secure_transport: bool = False) -> None:
        self.username = username
        self.secret = secret
        self.secure_transport = secure_transport
        self.plugin = ""
        self._nonce = b""
        self._state = "start"

    def first_response(self, server_plugin: str, scramble: bytes) -> tuple[str, bytes]:
        """(plugin, token) for the HandshakeResponse41, given the greeting's plugin and scramble."""
        self._nonce = scramble
        plugin = server_plugin or NATIVE_PASSWORD
        if plugin == CACHING_SHA2_PASSWORD and self.secret.plain is None:
            plugin = NATIVE_PASSWORD  # only SHA1(pw) is known: offer native, the server may switch
        if plugin not in SUPPORTED_AUTH_PLUGINS:
            plugin = NATIVE_PASSWORD
        self.plugin = plugin
        self._state = "wait"
        return plugin, self._token(plugin, scramble)

    def _token(self, plugin: str, scramble: bytes) -> bytes:
        if plugin == NATIVE_PASSWORD:
            return self.secret.native_token(scramble)
        if self.secret.plain is None:
            raise MySQLError(
                1251,
                f"backend requires {plugin} for user '{self.username}' but the proxy knows only a "
                "mysql_native_password hash of its password: configure the plain-text password",
                "08004",
            )
        return sha2_token(self.secret.plain, scramble)

    def receive(self, payload: bytes) -> Step:
        if not payload:
            raise MalformedPacket("empty packet during authentication")
        head = payload[0]
        if head == OK_HEADER:
            self._state = "done"
            return Step(done=True)
        if head == ERR_HEADER:
            self._state = "failed"
            return Step(done=True, error=parse_err(payload))
        if head == EOF_HEADER:
            switch = AuthSwitch.parse(payload)
            if switch.plugin not in SUPPORTED_AUTH_PLUGINS:
                raise MySQLError(
                    1251, f"backend asked for unsupported authentication plugin {switch.plugin!r}", "08004"
                )
            self.plugin = switch.plugin
            self._nonce = switch.data or self._nonce
            return Step(send=[self._token(switch.plugin, self._nonce)])
        if head == AUTH_MORE_DATA_HEADER and self.plugin == CACHING_SHA2_PASSWORD:
            data = payload[1:]
            if self._state == "wait_key":
                assert self.secret.plain is not None
                try:
                    blob = rsa_encrypt_password(data, self.secret.plain, self._nonce)
                except (ValueError, TypeError, AttributeError) as exc:
                    raise MalformedPacket(f"server sent an unusable RSA public key: {exc}") from exc
                return Step(send=[blob])
            if data == bytes((SHA2_FAST_AUTH_SUCCESS,)):
                return Step()  # the OK packet follows
            if data == bytes((SHA2_PERFORM_FULL_AUTHENTICATION,)):
                assert self.secret.plain is not None
                if self.secure_transport:
                    return Step(send=[self.secret.plain + b"\0"])
                self._state = "wait_key"
                return Step(send=[bytes((SHA2_REQUEST_PUBLIC_KEY,))])
        raise MalformedPacket(f"unexpected packet 0x{head:02x} during authentication with {self.plugin}")
