"""Command line: ``myrouter serve | explain``."""

from __future__ import annotations

import argparse
import functools
import importlib.metadata
import logging
import logging.handlers
import signal
import sys

import trio

from .app import Proxy
from .config import load_config
from .engine import HostLoop
from .errors import ConfigError
from .net.tls import TLSSetupError
from .protocol import kernels
from .protocol.errors import MySQLError
from .routing.digest import Digester
from .routing.explain import explain, format_explain
from .runtime.config import load_rules_for
from .stats.jsonlog import JsonFormatter
from .stats.logsafe import SafeTextFormatter, quiet_parser_logs
from .stats.querylog import MaskPasswords
from .workers.supervisor import Supervisor, worker_command
from .workers.worker import run_worker

log = logging.getLogger("myrouter")


TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


_handler: logging.Handler | None = None  # the process log's stderr handler, once set up


def _setup_logging(level: str, log_format: str = "text") -> logging.Handler:
    """The process log on stderr: ``text`` lines, or ``json`` objects (one per line); either way
    one record per line whatever a client sent, and nothing from sqlglot's logger."""
    global _handler
    quiet_parser_logs()
    root = logging.getLogger()
    if _handler is not None:
        root.removeHandler(_handler)
    _handler = logging.StreamHandler(sys.stderr)
    _handler.setFormatter(_formatter(log_format))
    _handler.addFilter(MaskPasswords())  # passwords never logged
    root.addHandler(_handler)
    root.setLevel(getattr(logging, level.upper(), logging.INFO))
    return _handler


def _formatter(log_format: str) -> logging.Formatter:
    if log_format == "json":
        return JsonFormatter()
    return SafeTextFormatter(TEXT_FORMAT)


def _load_for_serve(args):
    """Load the configuration, then format the process log as ``--log-format`` or the config's
    ``log_format`` says; what loading logged is held back and written in that format."""
    handler = _handler
    if handler is None or args.log_format is not None:
        return _load(args.config)  # the format is already the command line's
    root = logging.getLogger()
    held = logging.handlers.MemoryHandler(capacity=1_000_000, flushLevel=logging.CRITICAL + 1)
    root.removeHandler(handler)
    root.addHandler(held)
    log_format = "text"
    try:
        config = _load(args.config)
        log_format = config.log_format
    finally:
        root.removeHandler(held)
        root.addHandler(handler)
        handler.setFormatter(_formatter(log_format))
        for record in held.buffer:
            if record.levelno >= handler.level:
                handler.handle(record)
        held.buffer.clear()
    return config


async def serve(config, *, ready=None, make_proxy=Proxy) -> None:
    """Run the proxy until SIGTERM/SIGINT, then drain and return."""
    proxy = make_proxy(config)
    # signals from the start: one sent while the proxy starts (workers take a moment) waits for it
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
        async with trio.open_nursery() as nursery:
            await nursery.start(proxy.run)
            if ready is not None:
                ready(proxy)
            async for signum in signals:
                if signum == signal.SIGHUP:
                    await _reload(proxy)
                    continue
                log.info("received %s: stopping (drain timeout %d ms)", signal.Signals(signum).name,
                         proxy.vars.shutdown_timeout)
                await proxy.drain_and_stop(proxy.vars.shutdown_timeout / 1000)
                break
            nursery.cancel_scope.cancel()


async def _reload(proxy) -> None:
    """SIGHUP: read the configuration files again and apply them, all or nothing."""
    log.info("received SIGHUP: reloading %s", proxy.config.path)
    try:
        await proxy.admin.reload_config()
    except MySQLError as exc:
        log.error("reload refused, the running configuration is unchanged: %s", exc.message)
    else:
        log.info("reload done: the configuration files are the running configuration")


def _load(path: str):
    try:
        return load_config(path)
    except ConfigError as exc:
        print(f"myrouter: configuration error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    except OSError as exc:
        print(f"myrouter: cannot read configuration {path}: {exc.strerror}", file=sys.stderr)
        raise SystemExit(2) from None


def run_proxy(config, *, ready=None, log_level: str = "info", log_format: str = "text") -> None:
    """``serve`` as production runs it: Trio (the control plane) as the guest of the engine's epoll
    loop, whose callbacks serve plain statements (the data plane). Under a bare ``trio.run`` every
    session would stay on Trio. With ``threads`` > 1 this process is the supervisor of that many
    worker processes (myrouter/workers), each serving clients so. Used by ``myrouter serve`` and
    the test bed's ``make run``."""
    make_proxy = Proxy
    if config.mysql_variables.threads > 1:
        make_proxy = functools.partial(Supervisor, worker_command=worker_command(log_level, log_format))
    with HostLoop() as loop:
        loop.run(functools.partial(serve, config, ready=ready, make_proxy=make_proxy))


def cmd_serve(args) -> int:
    config = _load_for_serve(args)
    status = 0
    try:
        run_proxy(config, log_level=args.log_level, log_format=args.log_format or config.log_format)
    except* OSError as group:  # a listener that cannot bind (address in use, ...)
        for exc in group.exceptions:
            print(f"myrouter: {exc}", file=sys.stderr)
        status = 1
    except* TLSSetupError as group:  # unusable certificate files in datadir
        table, key = ("", "datadir") if config.datadir is not None else ("mysql_variables", "have_ssl")
        for exc in group.exceptions:
            print(f"myrouter: configuration error: {config.error_at(f'TLS: {exc}', table, key)}", file=sys.stderr)
        status = 2
    except* ConfigError as group:  # found when the proxy starts: query rules, cross-checks
        for exc in group.exceptions:
            print(f"myrouter: configuration error: {exc}", file=sys.stderr)
        status = 2
    return status


def cmd_worker(args) -> int:
    """One worker of a supervisor (``threads`` > 1): started by it, never by hand."""
    _handler.addFilter(WorkerName(args.index))
    status = 0
    try:
        run_worker(args.channel_fd, args.index, args.threads, args.supervisor_pid)
    except* (OSError, TLSSetupError) as group:  # cannot bind the client port, unusable certificates
        for exc in group.exceptions:
            log.error("worker %d cannot serve: %s", args.index, exc)
        status = 1
    return status


class WorkerName(logging.Filter):
    """A worker's process log names it: ``myrouter[worker 1]``."""

    def __init__(self, index: int) -> None:
        super().__init__()
        self.suffix = f"[worker {index}]"

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.endswith(self.suffix):
            record.name += self.suffix
        return True


def cmd_explain(args) -> int:
    config = _load(args.config)

    try:
        rules = load_rules_for(config)
    except ConfigError as exc:
        print(f"myrouter: configuration error: {exc}", file=sys.stderr)
        return 2
    username = args.user
    if username is None and config.mysql_users:
        username = config.mysql_users[0].username
    user = config.user(username) if username else None
    result = explain(args.sql, username=username, schemaname=args.schema or (user.default_schema if user else ""),
                     rules=rules, default_hostgroup=user.default_hostgroup if user else 0,
                     digester=Digester.from_vars(config.mysql_variables))
    print(format_explain(result))
    return 0


def _version() -> str:
    """The package's version and which form of each compiled kernel runs (protocol/kernels.py)."""
    try:
        version = importlib.metadata.version("myrouter")
    except importlib.metadata.PackageNotFoundError:  # a source tree that was never installed
        version = "(not installed)"
    return f"myrouter {version}; kernels: {kernels.describe()}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="myrouter", description="MySQL-protocol proxy (ProxySQL-compatible)")
    parser.add_argument("--log-level", default="info", help="debug, info, warning, error (default: info)")
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("serve", help="run the proxy")
    p.add_argument("--config", "-c", required=True, help="path of the TOML configuration")
    p.add_argument("--log-format", choices=("text", "json"), default=None,
                   help="process log on stderr: text lines or one JSON object per line "
                        "(default: the config's log_format, else text)")
    p.set_defaults(func=cmd_serve)
    p = sub.add_parser("worker", help=argparse.SUPPRESS)  # started by the supervisor (threads > 1)
    p.add_argument("--channel-fd", type=int, required=True)
    p.add_argument("--index", type=int, required=True)
    p.add_argument("--threads", type=int, required=True)
    p.add_argument("--supervisor-pid", type=int, required=True)
    p.add_argument("--log-format", choices=("text", "json"), default="text")
    p.set_defaults(func=cmd_worker)
    p = sub.add_parser("explain", help="show how a statement would be digested, classified and routed")
    p.add_argument("--config", "-c", required=True)
    p.add_argument("--user", default=None, help="username (default: the first configured user)")
    p.add_argument("--schema", default="", help="current schema")
    p.add_argument("sql")
    p.set_defaults(func=cmd_explain)
    args = parser.parse_args(argv)
    _setup_logging(args.log_level, getattr(args, "log_format", None) or "text")
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
