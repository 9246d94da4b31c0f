"""The running configuration: the Config, its query rules and variables, and what is derived
from them (the users' credentials, the digest limits, the TLS context for servers), swapped as
one by :meth:`RuntimeConfig.apply` so that a session sees the old configuration or the new one,
never a mix.
"""

from __future__ import annotations

import logging
import ssl

from ..backend.connection import backend_tls_context
from ..config import Config, MySQLVariables, UserConfig
from ..net import tls
from ..protocol.auth import Credential
from ..protocol.errors import MySQLError
from ..routing.digest import Digester
from ..routing.rules import RuleSet, load_rules

log = logging.getLogger("myrouter")

_P2S = ("ssl_p2s_ca", "ssl_p2s_capath", "ssl_p2s_crl", "ssl_p2s_crlpath", "ssl_p2s_cert", "ssl_p2s_key",
        "ssl_p2s_cipher")


class RuntimeConfig:
    def __init__(self, config: Config, rules: RuleSet | None = None) -> None:
        """``rules``: the running query rules when they are not the files' (a worker gets the
        supervisor's); by default, the rules of ``config`` and its rules_dir."""
        self.config = config
        self.vars = config.mysql_variables
        try:
            self.backend_tls = backend_tls(self.vars)  # for servers with use_ssl (mysql-ssl_p2s_*)
        except tls.TLSSetupError as exc:
            raise config.error_at(str(exc), "mysql_variables", _p2s_culprit(self.vars)) from exc
        self.server_version = self.vars.server_version  # "auto": the app asks a server when it starts
        self.sha2_cache: dict = {}  # caching_sha2_password's fast authentication, per user
        self._users: dict[str, UserConfig] = {}
        self._credentials: dict[str, Credential] = {}
        self._load_users(config)
        self.rules = rules if rules is not None else load_rules_for(config)
        self.digester = Digester.from_vars(self.vars)  # mysql-query_digests_* limits

    # -- lookups -------------------------------------------------------------

    def user(self, name: str) -> UserConfig | None:
        """A frontend user that may log in (active), or None."""
        return self._users.get(name)

    def lookup_credential(self, name: str) -> Credential | None:
        return self._credentials.get(name)

    # -- change --------------------------------------------------------------

    def prepare_backend_tls(self, new: MySQLVariables) -> ssl.SSLContext | None:
        """A new TLS context for servers if ``new`` changes the mysql-ssl_p2s_* variables (None
        if not); MySQLError if it cannot be built, which refuses the whole change."""
        if all(getattr(new, k) == getattr(self.vars, k) for k in _P2S):
            return None
        try:
            return backend_tls(new)
        except tls.TLSSetupError as exc:
            raise MySQLError(1105, str(exc), "HY000") from exc

    def apply(self, config: Config, rules: RuleSet | None, new_backend_tls: ssl.SSLContext | None) -> None:
        """Make ``config`` (validated) the running one, with ``rules`` if given and the context
        ``prepare_backend_tls`` built, if any. Cannot fail."""
        new_vars = config.mysql_variables
        if config.mysql_users != self.config.mysql_users:
            self._load_users(config)
        if new_vars != self.vars:
            if new_vars.server_version != self.vars.server_version and new_vars.server_version != "auto":
                self.server_version = new_vars.server_version
            self.digester = Digester.from_vars(new_vars)
            if new_backend_tls is not None:
                self.backend_tls = new_backend_tls  # for new backend connections
            if new_vars.interfaces != self.vars.interfaces:
                log.warning("mysql-interfaces changed to %r: takes effect when myrouter restarts", new_vars.interfaces)
            self.vars = new_vars
        if rules is not None:
            self.rules = rules
        self.config = config

    def _load_users(self, config: Config) -> None:
        users = {}
        creds = {}
        for u in config.mysql_users:
            if u.frontend and u.active:
                users[u.username] = u
                creds[u.username] = Credential.from_config(u.password)
        for name in list(self.sha2_cache):
            old = self._credentials.get(name)
            if old is None or creds.get(name) != old:
                del self.sha2_cache[name]  # password changed or user gone: no more fast auth
        self._users = users
        self._credentials = creds


def load_rules_for(config: Config) -> RuleSet:
    """The query rules of a config: ``[[mysql_query_rules]]`` of the config file, then ``rules_dir/*.toml``.
    Raises ConfigError naming the file, line and column of a bad rule."""
    return load_rules(config.rules_dir if config.rules_dir.is_dir() else None, set(config.hostgroups()),
                      config_file=config.path if config.query_rules_raw else None)


def _p2s_culprit(v: MySQLVariables) -> str:
    """The mysql-ssl_p2s_* variable that keeps the backend TLS context from loading."""
    for name, kwargs in (("ssl_p2s_ca", {"ca": v.ssl_p2s_ca}),
                         ("ssl_p2s_cert", {"cert": v.ssl_p2s_cert}),
                         ("ssl_p2s_key", {"cert": v.ssl_p2s_cert, "key": v.ssl_p2s_key})):
        try:
            backend_tls_context(**kwargs)
        except (OSError, ssl.SSLError, ValueError):
            return name
    return "ssl_p2s_cipher"


def backend_tls(v: MySQLVariables) -> ssl.SSLContext:
    """The context for TLS to servers with use_ssl, from the mysql-ssl_p2s_* variables."""
    try:
        return backend_tls_context(v.ssl_p2s_ca, v.ssl_p2s_cert, v.ssl_p2s_key, v.ssl_p2s_cipher,
                                   capath=v.ssl_p2s_capath, crl=v.ssl_p2s_crl, crlpath=v.ssl_p2s_crlpath)
    except (OSError, ssl.SSLError, ValueError) as exc:
        raise tls.TLSSetupError(f"mysql-ssl_p2s_*: {exc}") from exc
