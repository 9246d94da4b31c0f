"""The schema of the file's other settings: the top-level keys and ``[cluster]``.

Paths are checked against the file system by the loader (:mod:`myrouter.config`), which
knows the configuration file's directory; the schema checks their type and form.
"""

import re
from typing import Annotated, Any

from pydantic import BeforeValidator, field_validator, model_validator
from pydantic.dataclasses import dataclass
from pydantic_core import PydanticCustomError

from .fields import Choice, NonEmpty, SchemaError, Str

__all__ = ["TopLevel", "ClusterConfig", "LOG_FORMATS"]

LOG_FORMATS = ("text", "json")

_ETCD_URL_RE = re.compile(r"https?://(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):\d{1,5}/?")
_CLUSTER_NAME_RE = re.compile(r"[A-Za-z0-9_.-]+")

LogFormat = Choice(LOG_FORMATS, "lower")


@dataclass(frozen=True, slots=True)
class TopLevel:
    """The top-level keys of the file (myrouter's own; ProxySQL's general variables are the loader's)."""

    # query rule files (*.toml), relative to the configuration file's directory
    rules_dir: NonEmpty = "rules"
    # format of the process log on stderr, "text" or "json" (one object per line);
    # ``myrouter serve --log-format`` overrides it
    log_format: LogFormat = "text"
    # ProxySQL's datadir: the TLS files of the client port (see Config.datadir); "" = none
    datadir: Str = ""


def _endpoints(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list | tuple) or not value or not all(isinstance(e, str) for e in value):
        raise PydanticCustomError("config", 'expected a non-empty array of URLs like "http://127.0.0.1:2379"')
    endpoints = []
    for url in value:
        if _ETCD_URL_RE.fullmatch(url.strip()) is None:
            raise PydanticCustomError("config", f'{url!r} is not an etcd URL like "http://127.0.0.1:2379" '
                                                'or "https://etcd1:2379"'.replace("{", "{{").replace("}", "}}"))
        endpoints.append(url.strip().rstrip("/"))
    if len({e.split(":", 1)[0] for e in endpoints}) > 1:
        raise PydanticCustomError("config", "all endpoints must use the same scheme (http:// or https://)")
    return tuple(endpoints)


@dataclass(frozen=True, slots=True)
class ClusterConfig:
    """``[cluster]``: several myrouter instances sharing their configuration through etcd
    (myrouter/cluster/). ``instance`` empty: host name + client port, chosen at start."""

    etcd_endpoints: Annotated[tuple[str, ...], BeforeValidator(_endpoints)]
    name: NonEmpty
    instance: Str = ""
    etcd_ca: Str = ""  # CA file for https:// endpoints (empty: the system's CAs)
    etcd_cert: Str = ""  # client certificate file for https:// endpoints (with etcd_key)
    etcd_key: Str = ""
    etcd_username: Str = ""  # etcd's own authentication (with etcd_password)
    etcd_password: Str = ""

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _CLUSTER_NAME_RE.fullmatch(value):
            raise ValueError(f"invalid name {value!r}: letters, digits, '_', '-' and '.' only "
                             "(it is a key prefix in etcd)")
        return value

    @field_validator("instance")
    @classmethod
    def _instance(cls, value: str) -> str:
        if value and not _CLUSTER_NAME_RE.fullmatch(value.replace(":", "_")):
            raise ValueError(f"invalid instance {value!r}: letters, digits, '_', '-', '.' and ':' only")
        return value

    def check_pairs(self) -> None:
        """SchemaError unless etcd_cert and etcd_key go together (called by the loader once it has checked
        that the files exist: a file that does not exist is the first thing to say)."""
        if bool(self.etcd_cert) != bool(self.etcd_key):
            missing = "etcd_key" if self.etcd_cert else "etcd_cert"
            raise SchemaError(f"etcd_cert and etcd_key go together: {missing} is missing",
                              "etcd_cert" if self.etcd_cert else "etcd_key")

    @model_validator(mode="after")
    def _credentials(self) -> "ClusterConfig":
        if self.etcd_password and not self.etcd_username:
            raise SchemaError("etcd_password without etcd_username", "etcd_password")
        return self
