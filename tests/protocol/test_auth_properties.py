"""auth, property-based: the token functions on any input, a whole login between the proxy's
client side and its server side (sans-I/O, no sockets) for any password, plugin and transport,
and both state machines fed any packets: a Step, or MalformedPacket / MySQLError, nothing else."""

from __future__ import annotations

import functools

from hypothesis import given
from hypothesis import strategies as st

from myrouter.protocol.auth import (
    BackendSecret,
    ClientAuth,
    Credential,
    RSAKeyPair,
    ServerAuth,
    is_native_hash,
    Step,
    native_stage1,
    native_stage2,
    native_token,
    native_verify,
    sha2_digest2,
    sha2_fast_verify,
    sha2_token,
)
from myrouter.protocol.constants import (
    AUTH_MORE_DATA_HEADER,
    CACHING_SHA2_PASSWORD,
    NATIVE_PASSWORD,
    SHA2_FAST_AUTH_SUCCESS,
    SHA2_PERFORM_FULL_AUTHENTICATION,
    SHA2_REQUEST_PUBLIC_KEY,
)
from myrouter.protocol.errors import MalformedPacket, MySQLError
from myrouter.protocol.messages import OK, auth_switch_request, encode_err

from .feeding import PROPERTIES, time_limit

SCRAMBLE = st.binary(min_size=20, max_size=20)
PASSWORD = st.binary(min_size=1, max_size=80).filter(lambda p: b"\0" not in p)
PLUGINS = st.sampled_from([NATIVE_PASSWORD, CACHING_SHA2_PASSWORD])


@functools.cache
def rsa() -> RSAKeyPair:
    return RSAKeyPair(1024)  # the size does not matter here; a small key keeps the examples fast


# --------------------------------------------------------------------------- tokens


@PROPERTIES
@given(password=PASSWORD, scramble=SCRAMBLE, other=st.binary(max_size=40))
def test_native_token_verifies_and_recovers_stage1_only_for_the_password(password, scramble, other):
    stage2 = native_stage2(password)
    assert native_verify(native_token(password, scramble), scramble, stage2) == native_stage1(password)
    if other != native_token(password, scramble):
        assert native_verify(other, scramble, stage2) is None


@PROPERTIES
@given(password=PASSWORD, nonce=SCRAMBLE, other=st.binary(max_size=40))
def test_sha2_token_verifies_only_for_the_password(password, nonce, other):
    digest2 = sha2_digest2(password)
    assert sha2_fast_verify(sha2_token(password, nonce), nonce, digest2)
    if other != sha2_token(password, nonce):
        assert not sha2_fast_verify(other, nonce, digest2)


# --------------------------------------------------------------------------- a whole login

OK_PAYLOAD = OK().encode(0xFFFFFFFF)


def converse(server: ServerAuth, client: ClientAuth, greeting_plugin: str, scramble: bytes, username: str) -> Step:
    """Run a login between the two state machines; return the server's last step."""
    plugin, token = client.first_response(greeting_plugin, scramble)
    step = server.start(username, token, plugin)
    for _ in range(10):  # a login takes a handful of round trips
        replies: list[bytes] = []
        for payload in step.send:
            replies += client.receive(payload).send
        if step.done:
            break
        assert len(replies) == 1, "the client answers each server packet with one packet"
        step = server.receive(replies[0])
    else:
        raise AssertionError("the login did not end")
    if step.error is None:
        assert client.receive(OK_PAYLOAD).done
    return step


# passwords as configured (text); not one that reads as a stored '*' hash
CONFIGURED = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\0"), min_size=1,
                     max_size=40).filter(lambda p: not is_native_hash(p))


@PROPERTIES
@given(
    stored=CONFIGURED,
    typed=st.none() | CONFIGURED,
    scramble=SCRAMBLE.filter(lambda s: b"\0" not in s),
    greeting_plugin=PLUGINS,
    default_plugin=PLUGINS,
    secure=st.booleans(),
    cleartext_ok=st.booleans(),
    cached=st.booleans(),
)
def test_login_between_the_proxys_two_sides_succeeds_exactly_with_the_right_password(
        stored, typed, scramble, greeting_plugin, default_plugin, secure, cleartext_ok, cached):
    password = stored if typed is None else typed
    cred = Credential.from_config(stored)
    cache: dict = {}
    if cached:  # a previous full authentication filled the caching_sha2 cache
        cache["app"] = (sha2_digest2(stored.encode()), BackendSecret(plain=stored.encode()))
    server = ServerAuth(scramble=scramble, lookup={"app": cred}.get, default_plugin=default_plugin, rsa=rsa(),
                        sha2_cache=cache, client_host="127.0.0.1", secure_transport=secure, cleartext_ok=cleartext_ok)
    client = ClientAuth(username="app", secret=BackendSecret(plain=password.encode()), secure_transport=secure)
    step = converse(server, client, greeting_plugin, scramble, "app")
    if password == stored:
        assert step.error is None and server.done
        assert server.secret is not None and server.secret.plain in (None, stored.encode())
    else:
        assert step.error is not None and step.error.code == 1045


# --------------------------------------------------------------------------- any packets


def _more_data(b: bytes) -> bytes:
    return bytes((AUTH_MORE_DATA_HEADER,)) + b


SERVER_PACKETS = st.lists(
    st.one_of(
        st.binary(max_size=40),
        st.sampled_from([OK_PAYLOAD, encode_err(1045, "denied", "28000"), b"\xfe",
                         _more_data(bytes((SHA2_FAST_AUTH_SUCCESS,))),
                         _more_data(bytes((SHA2_PERFORM_FULL_AUTHENTICATION,))),
                         _more_data(b"-----BEGIN PUBLIC KEY-----\nnot base64\n-----END PUBLIC KEY-----\n")]),
        st.tuples(PLUGINS | st.text(max_size=20), st.binary(max_size=25)).map(lambda t: auth_switch_request(*t)),
        st.binary(max_size=30).map(_more_data),
        st.just(None),  # stands for the proxy's real RSA public key
    ),
    max_size=5,
)


@PROPERTIES
@given(
    packets=SERVER_PACKETS,
    plain=st.none() | PASSWORD,
    greeting_plugin=PLUGINS | st.text(max_size=20),
    scramble=st.binary(max_size=30),
    secure=st.booleans(),
)
def test_client_side_fed_any_server_packets_steps_or_raises_protocol_errors(packets, plain, greeting_plugin, scramble,
                                                                             secure):
    secret = BackendSecret(plain=plain, stage1=None if plain else native_stage1(b"pw"))
    client = ClientAuth(username="app", secret=secret, secure_transport=secure)
    with time_limit(5):
        try:
            client.first_response(greeting_plugin, scramble)
            for payload in packets:
                payload = _more_data(rsa().public_pem) if payload is None else payload
                step = client.receive(payload)
                assert isinstance(step, Step)
                if step.done:
                    break
        except (MalformedPacket, MySQLError):
            pass  # the connection to that backend is given up


CLIENT_PACKETS = st.lists(
    st.one_of(
        st.binary(max_size=40),
        st.just(bytes((SHA2_REQUEST_PUBLIC_KEY,))),
        PASSWORD.map(lambda p: p + b"\0"),
        st.binary(min_size=128, max_size=128),  # the size of an RSA-encrypted password (1024-bit key)
    ),
    max_size=4,
)


@PROPERTIES
@given(
    username=st.sampled_from(["app", "nobody", "empty", "hashed"]),
    token=st.binary(max_size=40),
    plugin=st.none() | PLUGINS | st.text(max_size=20),
    packets=CLIENT_PACKETS,
    default_plugin=PLUGINS,
    secure=st.booleans(),
    cleartext_ok=st.booleans(),
)
def test_server_side_fed_any_client_packets_steps_until_done(username, token, plugin, packets, default_plugin, secure,
                                                             cleartext_ok):
    users = {"app": Credential.from_config("app"), "empty": Credential.from_config(""),
             "hashed": Credential.from_config("*" + native_stage2(b"pw").hex().upper())}
    server = ServerAuth(scramble=b"s" * 20, lookup=users.get, default_plugin=default_plugin, rsa=rsa(),
                        sha2_cache={}, client_host="127.0.0.1", secure_transport=secure, cleartext_ok=cleartext_ok)
    with time_limit(5):
        step = server.start(username, token, plugin)
        for payload in packets:
            assert isinstance(step, Step)
            if step.done:
                break
            step = server.receive(payload)
    if step.done and step.error is not None:
        assert step.error.code == 1045
    if username == "nobody":
        assert step.error is not None or not step.done
