"""The ``respkv`` command: ``respkv server``, and the operator subcommands.

Flags override the config file, which overrides the defaults; every value goes through the one
validation in respkv.config, so a bad flag and a bad file line fail the same way.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from respkv.config import LOG_LEVELS, SETTINGS, Config, ConfigError, load_toml, sample_toml


class KeyValueFormatter(logging.Formatter):
    """Structured ``key=value`` log lines (journald keeps them as they are)."""

    def format(self, record: logging.LogRecord) -> str:
        msg = record.getMessage()
        line = f"level={record.levelname.lower()} logger={record.name} {msg}"
        if record.exc_info:
            line += " exc=" + repr(self.formatException(record.exc_info))
        return line




def setup_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(KeyValueFormatter())
    root = logging.getLogger("respkv")
    root.handlers[:] = [handler]
    root.setLevel(LOG_LEVELS.get(level, logging.INFO))
    root.propagate = False


def add_setting_flags(p: argparse.ArgumentParser) -> None:
    for s in SETTINGS:
        flag = "--" + s.key.replace("_", "-")
        p.add_argument(flag, dest="set_" + s.key, default=None, metavar=s.unit.upper() or "VALUE",
                       help=f"{s.doc} (default: {s.default})")


def build_config(ns: argparse.Namespace) -> Config:
    config = Config()
    if getattr(ns, "config", None):
        load_toml(ns.config, config)
    for s in SETTINGS:
        v = getattr(ns, "set_" + s.key, None)
        if v is not None:
            try:
                config.set(s.key, v)
            except ConfigError as e:
                raise ConfigError(f"--{s.key.replace('_', '-')}: {e}") from None
    return config


def startup_os_error(exc: BaseException) -> OSError | None:
    """The OSError that stopped start-up (a port in use, a bad TLS file), or None. trio wraps
    a task's exception in exception groups (strict_exception_groups), one per nursery level."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc if isinstance(exc, OSError) else None


def cmd_server(ns: argparse.Namespace) -> int:
    import trio

    from respkv.node.cluster_cli import apply_server_flags
    from respkv.node.server import run_node

    try:
        config = build_config(ns)
        apply_server_flags(ns, config)
    except ConfigError as e:
        print(f"respkv: configuration error: {e}", file=sys.stderr)
        return 2
    setup_logging(config.loglevel)
    try:
        trio.run(run_node, config)
    except (OSError, BaseExceptionGroup) as exc:
        err = startup_os_error(exc)
        if err is None:
            raise
        logging.getLogger("respkv").error("event=startup_failed error=%r", str(err))
        print(f"respkv: cannot start: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    return 0


def cmd_config_sample(ns: argparse.Namespace) -> int:
    sys.stdout.write(sample_toml())
    return 0


def cmd_config_check(ns: argparse.Namespace) -> int:
    """Exit 0 and print OK, or exit 2 with the same message start-up would stop with (and, with
    tls_port or peer_tls set, the certificate problem start-up would stop with)."""
    from respkv.node.cluster_cli import apply_server_flags

    try:
        config = load_toml(ns.file)
        apply_server_flags(argparse.Namespace(), config)  # the cluster settings' own checks
    except ConfigError as e:
        print(f"respkv: configuration error: {e}", file=sys.stderr)
        return 2
    from respkv.node.tls import server_ssl_context
    from respkv.node.tls_network import peer_ssl_contexts

    checks = [(config.tls_port, server_ssl_context), (config.peer_tls, peer_ssl_contexts)]
    for enabled, load in checks:  # certificate files load as start-up would load them
        if not enabled:
            continue
        try:
            load(config)
        except OSError as e:
            print(f"respkv: configuration error: {ns.file}: {e}", file=sys.stderr)
            return 2
    print(f"{ns.file}: OK")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="respkv", description="respkv: a Dynamo-style "
                                     "key-value store that speaks the Redis protocol")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("server", help="run a node")
    p.add_argument("--config", help="TOML config file (conf/respkv.toml documents every key)")
    add_setting_flags(p)
    from respkv.node.cluster_cli import add_cluster_command, add_server_flags

    add_server_flags(p)
    p.set_defaults(func=cmd_server)
    add_cluster_command(sub)
    from respkv.admin import add_admin_parser

    add_admin_parser(sub)
    p = sub.add_parser("config", help="the configuration file")
    csub = p.add_subparsers(dest="config_command", required=True)
    c = csub.add_parser("sample", help="print conf/respkv.toml: every setting, documented")
    c.set_defaults(func=cmd_config_sample)
    c = csub.add_parser("check", help="validate a TOML config file (exit 2 on a bad key or value)")
    c.add_argument("file")
    c.set_defaults(func=cmd_config_check)
    ns = parser.parse_args(argv)
    return int(ns.func(ns))


if __name__ == "__main__":
    sys.exit(main())
