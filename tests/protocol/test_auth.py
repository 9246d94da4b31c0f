"""auth: scrambles checked against PyMySQL's independent implementation, and the ServerAuth/ClientAuth machines."""

from __future__ import annotations

import hashlib
import random

import pymysql._auth as pyauth
import pytest

from myrouter.protocol.auth import (
    BackendSecret,
    ClientAuth,
    Credential,
    RSAKeyPair,
    ServerAuth,
    Step,
    ed25519_key_text,
    ed25519_public_key,
    ed25519_sign,
    ed25519_verify,
    is_native_hash,
    native_hash_text,
    native_stage1,
    native_stage2,
    native_token,
    native_token_from_stage1,
    native_verify,
    new_scramble,
    parse_ed25519_password,
    rsa_encrypt_password,
    sha2_digest2,
    sha2_fast_verify,
    sha2_token,
    xor_with_nonce,
)
from myrouter.protocol.constants import CACHING_SHA2_PASSWORD, CLIENT_ED25519, NATIVE_PASSWORD
from myrouter.protocol.errors import MalformedPacket, MySQLError
from myrouter.protocol.messages import AuthSwitch, HandshakeV10, error_payload

from . import fixtures as F

NATIVE, SHA2 = NATIVE_PASSWORD, CACHING_SHA2_PASSWORD
OK_PACKET = b"\x00\x00\x00\x02\x00\x00\x00"
HOST = "192.0.2.7"

PASSWORDS = [b"app", b"x", b"p@ss w0rd!", "pässwörd-漢字".encode(), b"\xff\x00\x01binary", b"L" * 200]


def scrambles(n: int, seed: int = 3) -> list[bytes]:
    rng = random.Random(seed)
    return [bytes(rng.randrange(1, 128) for _ in range(20)) for _ in range(n)]


@pytest.fixture(scope="module")
def rsa() -> RSAKeyPair:
    return RSAKeyPair()


# --------------------------------------------------------------------------- scrambles


@pytest.mark.parametrize("password", PASSWORDS)
def test_native_token_known_answer_against_pymysql(password):
    for scramble in scrambles(5):
        assert native_token(password, scramble) == pyauth.scramble_native_password(password, scramble)
        # a scramble with its NUL terminator still attached gives the same token
        assert native_token(password, scramble + b"\0") == native_token(password, scramble)


def test_native_token_of_an_empty_password_is_empty():
    assert native_token(b"", scrambles(1)[0]) == b"" == pyauth.scramble_native_password(b"", scrambles(1)[0])


def test_native_hash_matches_the_servers_password_function():
    # SELECT PASSWORD('app') as computed by MariaDB itself (captured)
    server_hash = F.EOF_SELECT_PASSWORD.packets()[3][1][1:].decode()
    assert server_hash.startswith("*") and len(server_hash) == 41
    assert native_hash_text(b"app") == server_hash
    assert native_stage2(b"app") == bytes.fromhex(server_hash[1:])
    assert native_stage1(b"app") == hashlib.sha1(b"app").digest()


@pytest.mark.parametrize("password", PASSWORDS)
def test_native_verify_recovers_stage1(password):
    stage2 = native_stage2(password)
    for scramble in scrambles(3):
        token = pyauth.scramble_native_password(password, scramble)
        assert native_verify(token, scramble, stage2) == hashlib.sha1(password).digest()
        assert native_token_from_stage1(native_verify(token, scramble, stage2), scramble) == token


def test_native_verify_refuses_wrong_tokens():
    scramble = scrambles(1)[0]
    stage2 = native_stage2(b"right")
    good = native_token(b"right", scramble)
    assert native_verify(native_token(b"wrong", scramble), scramble, stage2) is None
    assert native_verify(good, scrambles(2)[1], stage2) is None  # another scramble
    assert native_verify(good[:19], scramble, stage2) is None
    assert native_verify(good + b"\0", scramble, stage2) is None
    assert native_verify(b"", scramble, stage2) is None
    flipped = bytes((good[0] ^ 1,)) + good[1:]
    assert native_verify(flipped, scramble, stage2) is None


@pytest.mark.parametrize("password", PASSWORDS)
def test_caching_sha2_token_known_answer_against_pymysql(password):
    for nonce in scrambles(5, seed=9):
        token = sha2_token(password, nonce)
        assert token == pyauth.scramble_caching_sha2(password, nonce)
        assert sha2_fast_verify(token, nonce, sha2_digest2(password))
        assert not sha2_fast_verify(token, nonce, sha2_digest2(password + b"!"))
        assert not sha2_fast_verify(token[:31], nonce, sha2_digest2(password))


def test_caching_sha2_token_of_an_empty_password_is_empty():
    assert sha2_token(b"", b"n" * 20) == b"" == pyauth.scramble_caching_sha2(b"", b"n" * 20)


def test_new_scramble():
    seen = set()
    for _ in range(200):
        s = new_scramble()
        assert len(s) == 20
        assert all(0 < b < 0x80 and b != 0x24 for b in s)  # no NUL, no '$', 7-bit
        seen.add(s)
    assert len(seen) == 200


def test_is_native_hash():
    good = native_hash_text(b"pw")
    assert is_native_hash(good)
    assert is_native_hash(good.lower())
    for bad in ("", "pw", good[1:], good + "0", "#" + good[1:], "*" + "G" * 40):
        assert not is_native_hash(bad)


def test_xor_with_nonce_and_rsa_encrypt_match_pymysql(rsa):
    nonce = scrambles(1)[0]
    assert xor_with_nonce(b"secret\0", nonce) == pyauth._xor_password(b"secret\0", nonce)
    # both encryptions decrypt to the same message (OAEP is randomised, so compare plaintexts)
    ours = rsa.decrypt(rsa_encrypt_password(rsa.public_pem, b"secret", nonce))
    theirs = rsa.decrypt(pyauth.sha2_rsa_encrypt(b"secret", nonce, rsa.public_pem))
    assert ours == theirs == xor_with_nonce(b"secret\0", nonce)


def test_secrets_are_hidden_in_reprs(rsa):
    c = Credential.from_config("hunter2")
    s = BackendSecret(plain=b"hunter2", stage1=native_stage1(b"hunter2"))
    for text in (repr(c), repr(s), repr(rsa)):
        assert "hunter2" not in text and native_stage1(b"hunter2").hex() not in text
    assert "PRIVATE" not in repr(rsa)


# --------------------------------------------------------------------------- Credential


def test_credential_from_config():
    plain = Credential.from_config("pw")
    assert plain.plain == b"pw" and plain.stage2 == native_stage2(b"pw") and not plain.empty
    hashed = Credential.from_config(native_hash_text(b"pw"))
    assert hashed.plain is None and hashed.stage2 == native_stage2(b"pw") and not hashed.empty
    empty = Credential.from_config("")
    assert empty.empty and empty.plain == b""
    for c in (plain, hashed):
        assert c.matches_plain(b"pw")
        assert not c.matches_plain(b"pW")
        assert not c.matches_plain(b"")
    assert empty.matches_plain(b"") and not empty.matches_plain(b"x")


def test_backend_secret_native_token():
    scramble = scrambles(1)[0]
    expected = pyauth.scramble_native_password(b"pw", scramble)
    assert BackendSecret(plain=b"pw").native_token(scramble) == expected
    assert BackendSecret(stage1=native_stage1(b"pw")).native_token(scramble) == expected
    assert BackendSecret().native_token(scramble) == b""
    assert BackendSecret(plain=b"").empty_password and not BackendSecret(plain=b"x").empty_password


# --------------------------------------------------------------------------- ServerAuth


ED_KEY = "$ED$" + ed25519_key_text(ed25519_public_key(b"ed-pw"))
USERS = {
    "alice": Credential.from_config("alice-pw"),
    "ed": Credential.from_config(ED_KEY),
    "hashed": Credential.from_config(native_hash_text(b"hashed-pw")),
    "nopw": Credential.from_config(""),
}


def server(default_plugin=NATIVE, rsa=None, cache=None, secure=False, scramble=None) -> ServerAuth:
    return ServerAuth(
        scramble=scramble or new_scramble(),
        lookup=USERS.get,
        default_plugin=default_plugin,
        rsa=rsa,
        sha2_cache={} if cache is None else cache,
        client_host=HOST,
        secure_transport=secure,
    )


def assert_denied(step: Step, user: str, using_password: bool) -> None:
    assert step.done and step.send == []
    assert step.error is not None
    assert step.error.code == 1045 and step.error.sqlstate == "28000"
    yes = "YES" if using_password else "NO"
    assert step.error.message == f"Access denied for user '{user}'@'{HOST}' (using password: {yes})"


def assert_ok(step: Step, s: ServerAuth, send=()) -> None:
    assert step.done and step.error is None
    assert step.send == list(send)
    assert s.done


def test_native_ok():
    s = server()
    step = s.start("alice", pyauth.scramble_native_password(b"alice-pw", s.scramble), NATIVE)
    assert_ok(step, s)
    assert (s.username, s.plugin) == ("alice", NATIVE)
    assert s.secret.plain == b"alice-pw" and s.secret.stage1 == native_stage1(b"alice-pw")


def test_native_ok_without_plugin_name_defaults_to_native():
    s = server()
    assert_ok(s.start("alice", native_token(b"alice-pw", s.scramble), None), s)


def test_native_hashed_credential_learns_stage1_only():
    s = server()
    assert_ok(s.start("hashed", pyauth.scramble_native_password(b"hashed-pw", s.scramble), NATIVE), s)
    assert s.secret.plain is None
    assert s.secret.stage1 == native_stage1(b"hashed-pw")
    # ...which is enough to log in to a backend with mysql_native_password
    other = scrambles(1)[0]
    assert s.secret.native_token(other) == pyauth.scramble_native_password(b"hashed-pw", other)


@pytest.mark.parametrize("user", ["alice", "hashed"])
def test_native_bad_password_is_access_denied_and_sticky(user):
    s = server()
    step = s.start(user, pyauth.scramble_native_password(b"wrong", s.scramble), NATIVE)
    assert_denied(step, user, True)
    assert not s.done and s.secret is None
    with pytest.raises(RuntimeError):
        s.receive(b"anything")
    with pytest.raises(RuntimeError):
        s.start(user, b"", NATIVE)


@pytest.mark.parametrize(("token", "yes"), [(b"\x01" * 20, True), (b"", False)], ids=["token", "no-token"])
@pytest.mark.parametrize("plugin", [NATIVE, SHA2])
def test_unknown_user_is_access_denied(token, yes, plugin):
    s = server()
    step = s.start("mallory", token, plugin)
    if plugin == SHA2 and token:
        # asked for full authentication like a known user (no user-name probing), then denied
        assert step == Step(send=[b"\x01\x04"])
        step = s.receive(b"\x02")  # without an RSA key the request itself is denied
        if not step.done:
            step = s.receive(pyauth.sha2_rsa_encrypt(b"pw", s.scramble, step.send[0][1:]))
    assert_denied(step, "mallory", yes)
    if plugin == NATIVE:
        # the same reply as a wrong password for a known user
        wrong = server().start("alice", token, plugin)
        assert error_payload(wrong.error).replace(b"alice", b"mallory") == error_payload(step.error)


def test_empty_password_user():
    s = server()
    step = s.start("nopw", b"", NATIVE)
    assert_ok(step, s)
    assert s.secret.empty_password
    s = server()
    assert_denied(s.start("nopw", native_token(b"something", s.scramble), NATIVE), "nopw", True)
    s = server(default_plugin=SHA2)
    assert_ok(s.start("nopw", b"", SHA2), s)
    s = server(default_plugin=SHA2)
    assert_ok(s.start("nopw", b"\0", SHA2), s)  # some clients send a lone NUL


@pytest.mark.parametrize("plugin", [NATIVE, SHA2])
def test_empty_token_for_a_user_with_a_password_is_denied_using_password_no(plugin):
    s = server()
    assert_denied(s.start("alice", b"", plugin), "alice", False)


def sha2_full_auth(s: ServerAuth, user: str, password: bytes) -> Step:
    """A caching_sha2 client without a cache hit over plain TCP, as PyMySQL does it."""
    step = s.start(user, pyauth.scramble_caching_sha2(password, s.scramble), SHA2)
    assert step == Step(send=[b"\x01\x04"])  # perform full authentication
    step = s.receive(b"\x02")  # request the public key
    assert not step.done and len(step.send) == 1 and step.send[0][:1] == b"\x01"
    pem = step.send[0][1:]
    assert pem.startswith(b"-----BEGIN PUBLIC KEY-----")
    return s.receive(pyauth.sha2_rsa_encrypt(password, s.scramble, pem))


@pytest.mark.parametrize("user", ["alice", "hashed"])
def test_caching_sha2_full_auth_via_rsa_then_fast_auth_from_the_cache(rsa, user):
    password = f"{user}-pw".encode()
    cache: dict = {}
    s = server(SHA2, rsa, cache)
    assert_ok(sha2_full_auth(s, user, password), s)
    assert s.secret.plain == password and s.secret.stage1 == native_stage1(password)
    assert cache[user][0] == sha2_digest2(password)
    # second login: a new scramble, the cache allows fast authentication
    s2 = server(SHA2, rsa, cache)
    step = s2.start(user, pyauth.scramble_caching_sha2(password, s2.scramble), SHA2)
    assert_ok(step, s2, send=[b"\x01\x03"])  # fast auth success (the OK follows)
    assert s2.secret.plain == password
    # a wrong password with a warm cache: full authentication (the entry may be stale), then denied
    s3 = server(SHA2, rsa, cache)
    assert_denied(sha2_full_auth(s3, user, b"nope"), user, True)
    # the password changed since the entry was cached: full authentication lets the new one in
    s4 = server(SHA2, rsa, {user: (sha2_digest2(b"old-password"), cache[user][1])})
    assert_ok(sha2_full_auth(s4, user, password), s4)


def test_caching_sha2_full_auth_wrong_password_is_denied_and_not_cached(rsa):
    cache: dict = {}
    s = server(SHA2, rsa, cache)
    assert_denied(sha2_full_auth(s, "alice", b"wrong"), "alice", True)
    assert cache == {}


def test_caching_sha2_full_auth_over_a_secure_transport_takes_the_clear_password():
    cache: dict = {}
    s = server(SHA2, None, cache, secure=True)
    step = s.start("alice", sha2_token(b"alice-pw", s.scramble), SHA2)
    assert step.send == [b"\x01\x04"]
    assert_ok(s.receive(b"alice-pw\0"), s)
    assert "alice" in cache


def test_caching_sha2_full_auth_without_an_rsa_key_is_denied():
    s = server(SHA2, None)
    assert s.start("alice", sha2_token(b"alice-pw", s.scramble), SHA2).send == [b"\x01\x04"]
    assert_denied(s.receive(b"\x02"), "alice", True)


@pytest.mark.parametrize("blob", [b"", b"\x00" * 256, b"garbage"], ids=["empty", "zeros", "short"])
def test_caching_sha2_undecryptable_blob_is_denied_not_raised(rsa, blob):
    s = server(SHA2, rsa)
    s.start("alice", sha2_token(b"alice-pw", s.scramble), SHA2)
    s.receive(b"\x02")
    assert_denied(s.receive(blob), "alice", True)


@pytest.mark.parametrize("default", [NATIVE, SHA2])
def test_auth_switch_when_the_client_starts_with_an_unsupported_plugin(rsa, default):
    s = server(default, rsa)
    step = s.start("alice", b"\x11" * 64, "dialog")  # MariaDB PAM: not served
    assert not step.done and len(step.send) == 1
    sw = AuthSwitch.parse(step.send[0])
    assert sw == AuthSwitch(default, s.scramble)
    if default == NATIVE:
        assert_ok(s.receive(pyauth.scramble_native_password(b"alice-pw", sw.data)), s)
    else:
        step = s.receive(pyauth.scramble_caching_sha2(b"alice-pw", sw.data))
        assert step.send == [b"\x01\x04"]
        pem = s.receive(b"\x02").send[0][1:]
        assert_ok(s.receive(pyauth.sha2_rsa_encrypt(b"alice-pw", sw.data, pem)), s)
    assert s.plugin == default


def test_auth_switch_answered_with_a_wrong_or_empty_password():
    s = server()
    s.start("alice", b"\x11" * 64, "client_ed25519")
    assert_denied(s.receive(native_token(b"bad", s.scramble)), "alice", True)
    s = server()
    s.start("alice", b"\x11" * 64, "client_ed25519")
    assert_denied(s.receive(b""), "alice", False)


def test_unsupported_default_plugin_falls_back_to_native():
    assert server(default_plugin="client_ed25519").default_plugin == NATIVE


def test_receive_before_start_is_a_programming_error():
    with pytest.raises(RuntimeError):
        server().receive(b"x")


def test_the_client_may_use_the_other_supported_plugin_than_the_default(rsa):
    s = server(NATIVE, rsa)
    step = s.start("alice", sha2_token(b"alice-pw", s.scramble), SHA2)
    assert step.send == [b"\x01\x04"] and s.plugin == SHA2


# --------------------------------------------------------------------------- ClientAuth


def test_client_auth_against_the_captured_mariadb_auth_switch():
    c = ClientAuth(username="app", secret=BackendSecret(plain=b"app"))
    plugin, token = c.first_response("client_ed25519", b"s" * 20)  # unknown plugin: offer native
    assert plugin == NATIVE
    (_, switch), = F.EOF_AUTH_SWITCH.packets()
    step = c.receive(switch)
    assert step.send == [F.EOF_AUTH_SWITCH_OK.request] and not step.done
    (_, ok), = F.EOF_AUTH_SWITCH_OK.packets()
    assert c.receive(ok) == Step(done=True)


def test_client_auth_with_the_captured_greeting_and_access_denied():
    g = HandshakeV10.parse(F.GREETING[4:])
    c = ClientAuth(username="app", secret=BackendSecret(stage1=native_stage1(b"app")))
    assert c.first_response(g.auth_plugin, g.auth_data) == (NATIVE, pyauth.scramble_native_password(b"app", g.auth_data))
    (_, err), = F.EOF_LOGIN_BAD_PASSWORD.packets()
    step = c.receive(err)
    assert step.done and step.error.code == 1045 and step.error.sqlstate == "28000"


def test_client_auth_offers_native_when_only_stage1_is_known():
    c = ClientAuth(username="u", secret=BackendSecret(stage1=native_stage1(b"pw")))
    nonce = scrambles(1)[0]
    assert c.first_response(SHA2, nonce) == (NATIVE, pyauth.scramble_native_password(b"pw", nonce))
    # and refuses a switch to caching_sha2 with a clear error
    with pytest.raises(MySQLError) as info:
        c.receive(b"\xfe" + SHA2.encode() + b"\0" + nonce + b"\0")
    assert info.value.code == 1251


def test_client_auth_refuses_a_switch_to_an_unsupported_plugin():
    c = ClientAuth(username="u", secret=BackendSecret(plain=b"pw"))
    c.first_response(NATIVE, scrambles(1)[0])
    with pytest.raises(MySQLError) as info:
        c.receive(b"\xfedialog\0" + b"\x04Password: ")
    assert info.value.code == 1251 and "dialog" in info.value.message


@pytest.mark.parametrize("bad", [b"", b"\x01\x03", b"\x7f", b"\x01\x09"])
def test_client_auth_unexpected_packets_are_malformed(bad):
    c = ClientAuth(username="u", secret=BackendSecret(plain=b"pw"))
    c.first_response(NATIVE, scrambles(1)[0])
    with pytest.raises(MalformedPacket):
        c.receive(bad)




@pytest.mark.parametrize("key", ["garbage", "ec-key"])
def test_client_auth_bad_public_key_from_the_server_is_malformed(key):
    if key == "ec-key":
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ec

        pem = ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    else:
        pem = b"-----BEGIN PUBLIC KEY-----\nnot a key\n-----END PUBLIC KEY-----\n"
    c = ClientAuth(username="u", secret=BackendSecret(plain=b"pw"))
    c.first_response(SHA2, scrambles(1)[0])
    assert c.receive(b"\x01\x04") == Step(send=[b"\x02"])
    with pytest.raises(MalformedPacket):
        c.receive(b"\x01" + pem)


def exchange(s: ServerAuth, c: ClientAuth, user: str, greeting_plugin: str) -> tuple[Step, list[bytes]]:
    """Run a whole login in memory; return the server's final step and every payload on the wire."""
    wire: list[bytes] = []
    plugin, token = c.first_response(greeting_plugin, s.scramble)
    wire.append(token)
    step = s.start(user, token, plugin)
    for _ in range(10):  # a login takes at most a handful of round trips
        to_client = list(step.send)
        if step.done:
            to_client.append(error_payload(step.error) if step.error else OK_PACKET)
        answer: list[bytes] = []
        for p in to_client:
            wire.append(p)
            cstep = c.receive(p)
            answer += cstep.send
            if cstep.done:
                assert step.done, "the client finished before the server"
                assert (cstep.error is None) == (step.error is None)
                if cstep.error is not None:
                    assert (cstep.error.code, cstep.error.message) == (step.error.code, step.error.message)
                return step, wire
        assert answer, "nobody has anything to say: a stalled exchange"
        for p in answer:
            wire.append(p)
            step = s.receive(p)
    raise AssertionError("login did not finish in 10 round trips")


SECRETS = {
    "plain": lambda pw: BackendSecret(plain=pw),
    "stage1": lambda pw: BackendSecret(stage1=native_stage1(pw)),
}


@pytest.mark.parametrize("secure", [False, True], ids=["tcp", "tls"])
@pytest.mark.parametrize("warm", [False, True], ids=["cold-cache", "warm-cache"])
@pytest.mark.parametrize("secret", ["plain", "stage1"])
@pytest.mark.parametrize("default", [NATIVE, SHA2])
@pytest.mark.parametrize("user", ["alice", "hashed"])
def test_client_auth_against_server_auth_end_to_end(rsa, user, default, secret, warm, secure):
    password = f"{user}-pw".encode()
    cache: dict = {}
    if warm:
        first = server(SHA2, rsa, cache)
        assert_ok(sha2_full_auth(first, user, password), first)
    s = server(default, rsa, cache, secure=secure)
    c = ClientAuth(username=user, secret=SECRETS[secret](password), secure_transport=secure)
    step, wire = exchange(s, c, user, default)
    assert step.error is None and s.done
    uses_sha2 = default == SHA2 and secret == "plain"
    assert s.plugin == (SHA2 if uses_sha2 else NATIVE)
    assert s.secret.stage1 == native_stage1(password)
    if uses_sha2 and not warm:
        if secure:
            assert password + b"\0" in wire  # the clear password, only over TLS
        else:
            assert b"\x02" in wire and password + b"\0" not in wire  # key request, then RSA
            assert any(p.startswith(b"\x01-----BEGIN PUBLIC KEY") for p in wire)
    if uses_sha2 and warm:
        assert b"\x01\x03" in wire  # fast auth
    if uses_sha2:
        assert cache[user][0] == sha2_digest2(password)


@pytest.mark.parametrize("default", [NATIVE, SHA2])
@pytest.mark.parametrize("secret", ["plain", "stage1"])
def test_client_auth_against_server_auth_wrong_password(rsa, default, secret):
    s = server(default, rsa)
    c = ClientAuth(username="alice", secret=SECRETS[secret](b"not-alice-pw"))
    step, _ = exchange(s, c, "alice", default)
    assert_denied(step, "alice", True)


def test_client_auth_against_server_auth_after_a_switch(rsa):
    # the server's greeting offers caching_sha2; a client that only knows SHA1(pw) answers native
    s = server(SHA2, rsa)
    c = ClientAuth(username="alice", secret=BackendSecret(stage1=native_stage1(b"alice-pw")))
    step, wire = exchange(s, c, "alice", SHA2)
    assert step.error is None and s.plugin == NATIVE


def test_client_auth_empty_password_end_to_end(rsa):
    for default in (NATIVE, SHA2):
        s = server(default, rsa)
        c = ClientAuth(username="nopw", secret=BackendSecret(plain=b""))
        step, wire = exchange(s, c, "nopw", default)
        assert step.error is None and s.secret.empty_password
        assert wire[0] == b""


# --------------------------------------------------------------------------- client_ed25519


def test_ed25519_public_key_known_answer_from_mariadb():
    # MariaDB's documentation: SELECT ed25519_password("secret")
    assert ed25519_key_text(ed25519_public_key(b"secret")) == "ZIgUREUg5PVgQ6LskhXmO+eZLS0nC8be6HPjYWR4YJY"


@pytest.mark.parametrize("password", [b""] + PASSWORDS)
def test_ed25519_signature_against_pymysql(password):
    for nonce in (bytes(32), b"\xff" * 32, bytes(range(32))):
        sig = ed25519_sign(password, nonce)
        assert sig == pyauth.ed25519_password(password, nonce)
        assert ed25519_verify(ed25519_public_key(password), sig, nonce)
        assert not ed25519_verify(ed25519_public_key(password + b"!"), sig, nonce)
        assert not ed25519_verify(ed25519_public_key(password), sig[:63] + bytes((sig[63] ^ 1,)), nonce)
        assert not ed25519_verify(ed25519_public_key(password), sig[:40], nonce)


@pytest.mark.parametrize("text", ["$ED$", "$ED$" + "A" * 42, "$ED$" + "A" * 44, "$ED$" + "*" * 43,
                                  "$ED$" + "A" * 42 + "-"])
def test_malformed_ed25519_passwords_parse_to_none(text):
    assert parse_ed25519_password(text) is None
    assert Credential.from_config(text).ed25519_only  # never taken as a plain-text password


def test_ed25519_password_prefix_in_any_case():
    assert parse_ed25519_password("$ed$" + ED_KEY[4:]) == ed25519_public_key(b"ed-pw")


def switch_nonce(step: Step) -> bytes:
    """The nonce of an AuthSwitchRequest to client_ed25519: exactly 32 bytes, no NUL after it."""
    payload = step.send[0]
    assert payload.startswith(b"\xfe" + CLIENT_ED25519.encode() + b"\0") and not step.done
    nonce = payload[2 + len(CLIENT_ED25519):]
    assert len(nonce) == 32
    return nonce


@pytest.mark.parametrize("client_plugin", [NATIVE, SHA2, None])
def test_ed25519_only_user_is_switched_to_client_ed25519(client_plugin):
    s = server()
    step = s.start("ed", b"\x01" * 20, client_plugin)
    nonce = switch_nonce(step)
    assert_ok(s.receive(ed25519_sign(b"ed-pw", nonce)), s)
    assert s.plugin == CLIENT_ED25519
    assert s.secret.unknown  # nothing to log in to a backend with


def test_ed25519_only_user_wrong_password_or_garbage_is_denied():
    for answer in (lambda n: ed25519_sign(b"wrong", n), lambda n: b"", lambda n: b"\x00" * 64,
                   lambda n: ed25519_sign(b"ed-pw", n)[:63]):
        s = server()
        nonce = switch_nonce(s.start("ed", b"", NATIVE))
        step = s.receive(answer(nonce))
        assert_denied(step, "ed", bool(answer(nonce)))


def test_ed25519_only_user_cannot_log_in_with_native():
    s = server()
    step = s.start("ed", pyauth.scramble_native_password(b"ed-pw", s.scramble), NATIVE)
    nonce = switch_nonce(step)  # never accepted on the native token
    assert_denied(s.receive(pyauth.scramble_native_password(b"ed-pw", nonce[:20])), "ed", True)


def test_plain_text_user_gets_ed25519_when_the_client_asks_for_it():
    s = server()
    nonce = switch_nonce(s.start("alice", b"", CLIENT_ED25519))
    assert_ok(s.receive(ed25519_sign(b"alice-pw", nonce)), s)
    assert s.secret.plain == b"alice-pw" and s.secret.stage1 == native_stage1(b"alice-pw")


def test_native_hash_user_cannot_use_ed25519_and_is_switched_to_native():
    s = server()
    step = s.start("hashed", b"", CLIENT_ED25519)
    assert AuthSwitch.parse(step.send[0]).plugin == NATIVE
    assert_ok(s.receive(pyauth.scramble_native_password(b"hashed-pw", s.scramble)), s)


def test_unknown_user_asking_for_ed25519_is_switched_then_denied():
    s = server()
    nonce = switch_nonce(s.start("mallory", b"", CLIENT_ED25519))  # as for a known user
    assert_denied(s.receive(ed25519_sign(b"pw", nonce)), "mallory", True)


def test_nonces_differ_per_login():
    assert len({switch_nonce(server().start("ed", b"", NATIVE)) for _ in range(20)}) == 20


def ed25519_switch(nonce: bytes) -> bytes:
    return b"\xfe" + CLIENT_ED25519.encode() + b"\0" + nonce


@pytest.mark.parametrize("nonce", [bytes(range(1, 33)), bytes(range(31)) + b"\0"], ids=["plain", "nul-ended"])
def test_client_answers_a_switch_to_client_ed25519(nonce):
    c = ClientAuth(username="app", secret=BackendSecret(plain=b"app", stage1=native_stage1(b"app")))
    c.first_response(NATIVE, scrambles(1)[0])
    step = c.receive(ed25519_switch(nonce))
    assert step.send == [pyauth.ed25519_password(b"app", nonce)] and not step.done
    assert c.receive(OK_PACKET).done


def test_client_without_plain_text_cannot_answer_ed25519():
    c = ClientAuth(username="app", secret=BackendSecret(stage1=native_stage1(b"app")))
    c.first_response(NATIVE, scrambles(1)[0])
    with pytest.raises(MySQLError) as info:
        c.receive(ed25519_switch(bytes(32)))
    assert info.value.code == 1251 and "plain-text password" in info.value.message


def test_client_with_an_ed25519_only_secret_refuses_before_sending_anything():
    c = ClientAuth(username="ed", secret=BackendSecret())
    with pytest.raises(MySQLError) as info:
        c.first_response(NATIVE, scrambles(1)[0])
    assert info.value.code == 1251 and "$ED$" in info.value.message


def test_client_refuses_a_short_ed25519_nonce():
    c = ClientAuth(username="app", secret=BackendSecret(plain=b"app"))
    c.first_response(NATIVE, scrambles(1)[0])
    with pytest.raises(MalformedPacket):
        c.receive(ed25519_switch(bytes(20)))
