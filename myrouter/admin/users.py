"""mysql_users as the runtime holds them: ``admin-hash_passwords``.

As ProxySQL, with ``admin-hash_passwords = true`` (the default) a plain-text password of
``mysql_users`` becomes its mysql_native_password hash (``*`` + 40 hex digits) when the users
go to the runtime (LOAD MYSQL USERS TO RUNTIME, and at startup); ``runtime_mysql_users`` shows
the hash and SAVE MYSQL USERS FROM RUNTIME brings it back to memory. Memory and the TOML
files keep what was written there.

What the proxy can still do with a hash (see myrouter.protocol.auth): check native and
caching_sha2 clients (caching_sha2's full authentication sends the password itself, checked
against the hash; fast authentication follows from its cache), and log in to backends with
mysql_native_password (a native client's login reveals SHA1(pw); a caching_sha2 client's the
plain text). A backend account that requires caching_sha2_password (MySQL 8) needs the plain
text, which a session of a mysql_native_password client then lacks: such a login fails with
ERR 1251 saying so; so does a backend account IDENTIFIED VIA ed25519 (MariaDB). Set
``admin-hash_passwords = false`` for such accounts.
"""

from __future__ import annotations

import dataclasses

from ..config import Config, UserConfig
from ..protocol.auth import is_ed25519_password, is_native_hash, native_hash_text


def hashed_user(user: UserConfig) -> UserConfig:
    """``user`` with a plain-text password replaced by its mysql_native_password hash (a hash, or a
    ``$ED$`` ed25519 key, is kept as it is)."""
    if not user.password or is_native_hash(user.password) or is_ed25519_password(user.password):
        return user
    return dataclasses.replace(user, password=native_hash_text(user.password.encode()))


def runtime_users(config: Config) -> Config:
    """``config`` as the runtime holds it: passwords hashed when ``admin-hash_passwords`` is on."""
    if not config.admin_variables.hash_passwords:
        return config
    users = tuple(hashed_user(u) for u in config.mysql_users)
    if users == config.mysql_users:
        return config
    return dataclasses.replace(config, mysql_users=users)
