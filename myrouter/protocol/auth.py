"""Authentication: mysql_native_password, caching_sha2_password and MariaDB's
client_ed25519, on both sides of the proxy.

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
reveals the plain text. An ed25519 login reveals nothing reusable (a signature of
the proxy's nonce): the proxy logs in to backends with what the configuration gives.
A password configured as ``$ED$`` + the base64 public key (MariaDB's stored form)
lets clients log in with client_ed25519 only, and gives no backend credentials.
Secrets are never logged: their ``repr`` hides them.
"""

from __future__ import annotations

import base64
import binascii
import enum
import hashlib
import hmac
import os
from dataclasses import dataclass, field

from .constants import (
    AUTH_MORE_DATA_HEADER,
    CACHING_SHA2_PASSWORD,
    CLIENT_ED25519,
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
        from cryptography.hazmat.primitives import serialization  # lazy: protocol imports no third party at load
        from cryptography.hazmat.primitives.asymmetric import rsa

        self._key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
        self.size_bytes = bits // 8
        self.public_pem = self._key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def decrypt(self, blob: bytes) -> bytes:
        from cryptography.hazmat.primitives import hashes  # lazy: protocol imports no third party at load
        from cryptography.hazmat.primitives.asymmetric import padding

        return self._key.decrypt(
            blob, padding.OAEP(mgf=padding.MGF1(algorithm=hashes.SHA1()), algorithm=hashes.SHA1(), label=None)
        )

    def __repr__(self) -> str:
        return "RSAKeyPair(<hidden>)"


def rsa_encrypt_password(public_pem: bytes, password: bytes, nonce: bytes) -> bytes:
    from cryptography.hazmat.primitives import hashes, serialization  # lazy: no third party at load
    from cryptography.hazmat.primitives.asymmetric import padding

    key = serialization.load_pem_public_key(public_pem)
    message = xor_with_nonce(password + b"\0", nonce)
    return key.encrypt(  # type: ignore[union-attr]
        message, padding.OAEP(mgf=padding.MGF1(algorithm=hashes.SHA1()), algorithm=hashes.SHA1(), label=None)
    )


# --- client_ed25519 (MariaDB's auth_ed25519) ---------------------------------
#
# MariaDB's scheme (plugin/auth_ed25519/ref10/sign.c): the secret is expanded from the password
# itself, az = SHA512(password) of any length, where standard Ed25519 hashes a 32-byte seed; the
# scalar is az[:32] clamped, the nonce SHA512(az[32:] + message). Signatures verify as standard
# Ed25519 against the public key [scalar]B, stored by the server as 43 characters of base64.
# cryptography derives keys from 32-byte seeds only, so libsodium's low-level operations are used
# (PyNaCl; the same ones PyMySQL's client_ed25519 uses).

ED25519_NONCE_LENGTH = 32
ED25519_SIGNATURE_LENGTH = 64
ED25519_KEY_PREFIX = "$ED$"  # mysql_users.password: "$ED$" + MariaDB's stored form (ProxySQL's format)


def _ed25519_secret(password: bytes) -> tuple[bytes, bytes]:
    """(scalar reduced mod L, nonce prefix) derived from the password as MariaDB does."""
    from nacl.bindings import crypto_core_ed25519_scalar_reduce  # lazy: only for client_ed25519

    az = hashlib.sha512(password).digest()
    scalar = bytearray(az[:32])
    scalar[0] &= 248
    scalar[31] &= 63
    scalar[31] |= 64
    return crypto_core_ed25519_scalar_reduce(bytes(scalar) + bytes(32)), az[32:]


def ed25519_public_key(password: bytes) -> bytes:
    """The 32-byte public key of a password (base64 of it: MariaDB's ``ed25519_password()``)."""
    from nacl.bindings import crypto_scalarmult_ed25519_base_noclamp  # lazy: only for client_ed25519

    scalar, _ = _ed25519_secret(password)
    return crypto_scalarmult_ed25519_base_noclamp(scalar)


def ed25519_sign(password: bytes, message: bytes) -> bytes:
    """client_ed25519's answer: the 64-byte signature of the server's nonce."""
    from nacl.bindings import (  # lazy: only for client_ed25519
        crypto_core_ed25519_scalar_add,
        crypto_core_ed25519_scalar_mul,
        crypto_core_ed25519_scalar_reduce,
        crypto_scalarmult_ed25519_base_noclamp,
    )

    scalar, prefix = _ed25519_secret(password)
    r = crypto_core_ed25519_scalar_reduce(hashlib.sha512(prefix + message).digest())
    big_r = crypto_scalarmult_ed25519_base_noclamp(r)
    big_a = crypto_scalarmult_ed25519_base_noclamp(scalar)
    k = crypto_core_ed25519_scalar_reduce(hashlib.sha512(big_r + big_a + message).digest())
    return big_r + crypto_core_ed25519_scalar_add(crypto_core_ed25519_scalar_mul(k, scalar), r)


def ed25519_verify(public_key: bytes, signature: bytes, message: bytes) -> bool:
    from nacl.bindings import crypto_sign_open  # lazy: only for client_ed25519
    from nacl.exceptions import CryptoError

    if len(signature) != ED25519_SIGNATURE_LENGTH or len(public_key) != 32:
        return False
    try:
        crypto_sign_open(signature + message, public_key)
    except CryptoError:
        return False
    return True


def ed25519_key_text(public_key: bytes) -> str:
    """MariaDB's stored form: base64 without padding (43 characters)."""
    return base64.b64encode(public_key).decode().rstrip("=")


def parse_ed25519_password(text: str) -> bytes | None:
    """The public key of a ``$ED$`` + base64 password (prefix in any case); None if malformed."""
    if text[:4].upper() != ED25519_KEY_PREFIX:
        return None
    body = text[4:]
    if len(body) != 43:
        return None
    try:
        key = base64.b64decode(body + "=", validate=True)
    except (binascii.Error, ValueError):
        return None
    return key if len(key) == 32 else None


def is_ed25519_password(text: str) -> bool:
    """The password has the ``$ED$`` prefix (reserved: a malformed one is an error, not plain text)."""
    return text[:4].upper() == ED25519_KEY_PREFIX


# --- what the proxy knows of a password ------------------------------------


@dataclass(frozen=True, slots=True)
class Credential:
    """A configured user's password: the stage-2 hash, and the plain text when configured; or,
    for a ``$ED$`` password, only its ed25519 public key (``ed25519_only``)."""

    stage2: bytes = field(repr=False)
    plain: bytes | None = field(default=None, repr=False)
    ed25519_key: bytes | None = field(default=None, repr=False)  # a $ED$ password's public key

    @classmethod
    def from_config(cls, password: str) -> Credential:
        if is_native_hash(password):
            return cls(bytes.fromhex(password[1:]))
        if is_ed25519_password(password):
            # a malformed key (refused by the config loader) matches no signature: access denied
            return cls(b"", None, parse_ed25519_password(password) or b"")
        pw = password.encode()
        return cls(native_stage2(pw) if pw else b"", pw)

    @property
    def empty(self) -> bool:
        return not self.stage2 and not self.plain and self.ed25519_key is None

    @property
    def ed25519_only(self) -> bool:
        return self.ed25519_key is not None

    def ed25519_public_key(self) -> bytes | None:
        """The key client_ed25519 signatures are checked against: stored, or derived from the plain text."""
        if self.ed25519_key is not None:
            return self.ed25519_key
        return ed25519_public_key(self.plain) if self.plain is not None else None

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

    @property
    def unknown(self) -> bool:
        """Nothing to log in with (a client that logged in with a $ED$-only password)."""
        return self.plain is None and self.stage1 is None

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
        self._nonce = b""  # client_ed25519's 32-byte nonce

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
            if plugin == CLIENT_ED25519:
                return self._switch_to_ed25519()  # as for a known user; denied at the end
            if plugin == CACHING_SHA2_PASSWORD and token:
                # Ask for full authentication as for a known user, so the reply does not
                # tell a prober which user names exist; it is denied at the end.
                self.plugin = plugin
                self._state = _S.WAIT_FULL_AUTH
                return Step(send=[bytes((AUTH_MORE_DATA_HEADER, SHA2_PERFORM_FULL_AUTHENTICATION))])
            return self._deny()
        if self._cred.ed25519_only or (plugin == CLIENT_ED25519 and self._cred.ed25519_public_key() is not None):
            # ed25519 is the only way to check a $ED$ password; a client that asks for it gets it
            return self._switch_to_ed25519()
        if plugin not in SUPPORTED_AUTH_PLUGINS:
            # The client started with a plugin we do not serve: ask it to switch.
            self.plugin = self.default_plugin
            self._state = _S.WAIT_SWITCH_RESPONSE
            return Step(send=[auth_switch_request(self.plugin, self.scramble)])
        self.plugin = plugin
        return self._verify(token)

    def _switch_to_ed25519(self) -> Step:
        self.plugin = CLIENT_ED25519
        self._nonce = os.urandom(ED25519_NONCE_LENGTH)
        self._state = _S.WAIT_SWITCH_RESPONSE
        return Step(send=[auth_switch_request(CLIENT_ED25519, self._nonce, nul_ended=False)])

    def receive(self, payload: bytes) -> Step:
        """Handle a further packet from the client during authentication."""
        st = self._state
        if st is _S.WAIT_SWITCH_RESPONSE:
            self._used_password = bool(payload)
            if self._cred is None:
                return self._deny()  # an unknown user that was asked to switch to client_ed25519
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
        if self.plugin == CLIENT_ED25519:
            key = cred.ed25519_public_key()
            if key is None or not ed25519_verify(key, token, self._nonce):
                return self._deny()
            plain = cred.plain
            self.secret = BackendSecret(plain=plain, stage1=native_stage1(plain) if plain else None)
            return self._success()
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
        if self.secret.unknown:
            raise MySQLError(
                1251,
                f"the proxy has no password to log in to the backend as '{self.username}': its "
                "mysql_users password is an ed25519 public key ($ED$...), which only checks clients: "
                "configure the plain-text password",
                "08004",
            )
        if plugin == NATIVE_PASSWORD:
            return self.secret.native_token(scramble)
        if self.secret.plain is None:
            raise MySQLError(
                1251,
                f"backend requires {plugin} for user '{self.username}' but the proxy knows only a "
                "mysql_native_password hash of its password: configure the plain-text password "
                "(and admin-hash_passwords = false, which otherwise hashes it in the runtime)",
                "08004",
            )
        if plugin == CLIENT_ED25519:
            if len(scramble) != ED25519_NONCE_LENGTH:
                raise MalformedPacket(f"client_ed25519 nonce of {len(scramble)} bytes (expected 32)")
            return ed25519_sign(self.secret.plain, scramble)
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
            if switch.plugin == CLIENT_ED25519:
                # the nonce is exactly 32 bytes, any of them NUL: taken as sent, not NUL-stripped
                self.plugin = CLIENT_ED25519
                nonce = payload[2 + len(CLIENT_ED25519):]
                return Step(send=[self._token(CLIENT_ED25519, nonce)])
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
