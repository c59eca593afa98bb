"""The ``mlwarden`` command: run, check-config, plugins, token, keys, audit verify."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import TYPE_CHECKING

from ._version import __version__
from .errors import ConfigError, PluginError

if TYPE_CHECKING:  # the CLI starts fast: the daemon is imported by the command that runs
    from .daemon.core.config import Config
    from .daemon.keys.at_rest import EncryptionAtRest

__all__ = ["main"]


def _config_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config", "-c", metavar="FILE", help="TOML configuration file (default: embedded)"
    )


def _client_args(parser: argparse.ArgumentParser) -> None:
    """How to reach a running daemon (HTTPS with a private CA, mutual TLS, a token)."""
    parser.add_argument("--url", help="the daemon's URL (default: from daemon.listen and [tls])")
    parser.add_argument(
        "--token", default=os.environ.get("MLWARDEN_TOKEN", ""), help="admin bearer token"
    )
    parser.add_argument(
        "--cacert",
        metavar="FILE",
        default=os.environ.get("MLWARDEN_CA_BUNDLE", ""),
        help="CA bundle that signed the daemon's certificate (env MLWARDEN_CA_BUNDLE)",
    )
    parser.add_argument("--cert", metavar="FILE", default="", help="client certificate (mTLS)")
    parser.add_argument("--key", metavar="FILE", default="", help="client certificate's key")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mlwarden", description="Keep machine-learning models healthy in production."
    )
    parser.add_argument("--version", action="version", version=f"mlwarden {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the daemon")
    _config_args(run)
    run.add_argument("--listen", metavar="HOST:PORT", help="override daemon.listen")

    check = sub.add_parser("check-config", help="print the effective configuration or errors")
    _config_args(check)

    plugins = sub.add_parser("plugins", help="list the plugins: name, kind, version, origin")
    _config_args(plugins)
    plugins.add_argument("--json", action="store_true", help="print JSON")

    demo = sub.add_parser("demo", help="run the daemon on a simulated BTC/USDT market")
    demo.add_argument("--listen", metavar="HOST:PORT", default="127.0.0.1:9741")
    demo.add_argument(
        "--base-path", metavar="DIR", default="./mlwarden-demo", help="state directory"
    )
    demo.add_argument(
        "--apprise-url",
        metavar="URL",
        action="append",
        default=[],
        help="also send alerts to this apprise URL (repeatable)",
    )
    demo.add_argument(
        "--shift-after",
        metavar="SECONDS",
        type=float,
        default=45.0,
        help="seconds of calm market before the regime shift",
    )
    demo.add_argument(
        "--duration",
        metavar="SECONDS",
        type=float,
        help="stop after this many seconds (default: run until Ctrl-C)",
    )
    demo.add_argument("--tls-cert", metavar="FILE", default="", help="serve HTTPS: certificate")
    demo.add_argument("--tls-key", metavar="FILE", default="", help="serve HTTPS: its key")
    demo.add_argument(
        "--cacert",
        metavar="FILE",
        default=os.environ.get("MLWARDEN_CA_BUNDLE", ""),
        help="CA bundle that signed the certificate (env MLWARDEN_CA_BUNDLE)",
    )

    sub.add_parser("token", help="mint a bearer token and print its SHA-256 for the config")

    keys = sub.add_parser("keys", help="encryption keys: new, rotate, status")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    new = keys_sub.add_parser("new", help="make a key ring (a file, or print the entry)")
    new.add_argument("--key-file", metavar="FILE", help="write the ring here (mode 0600)")
    _config_args(new)
    for name, text in (
        ("rotate", "add a key, re-wrap every data key with it, retire the old ones"),
        ("status", "the keys and how many stored objects each one wraps"),
    ):
        cmd = keys_sub.add_parser(name, help=text)
        _config_args(cmd)
        _client_args(cmd)

    backfill = sub.add_parser(
        "backfill", help="load past predictions (and labels) from a Parquet or CSV file"
    )
    backfill.add_argument("model", help="the watched model to load them into")
    backfill.add_argument("file", type=Path, help="a .parquet or .csv file, one row a prediction")
    backfill.add_argument("--url", default="http://127.0.0.1:9741", help="the daemon's URL")
    backfill.add_argument("--token", default=None, help="a token with the operator role")
    backfill.add_argument("--batch-rows", type=int, default=10_000, help="rows per request")
    backfill.add_argument("--label-column", default="label", help="column of the labels")

    reference = sub.add_parser("reference", help="a model's uploaded reference data")
    reference_sub = reference.add_subparsers(dest="reference_command", required=True)
    upload = reference_sub.add_parser(
        "upload", help="put a Parquet, CSV, Arrow or Feather file in force as the reference"
    )
    remove = reference_sub.add_parser("remove", help="remove it: the configured one is back")
    for cmd in (upload, remove):
        cmd.add_argument("model", help="the watched model")
    upload.add_argument("file", type=Path, help="a .parquet, .csv, .arrow or .feather file")
    for cmd in (upload, remove):
        cmd.add_argument("--url", default="http://127.0.0.1:9741", help="the daemon's URL")
        cmd.add_argument(
            "--token", default=os.environ.get("MLWARDEN_TOKEN") or None, help="an operator token"
        )

    audit = sub.add_parser("audit", help="audit log tools")
    audit_sub = audit.add_subparsers(dest="audit_command", required=True)
    verify = audit_sub.add_parser("verify", help="verify the audit log's hash chain")
    _config_args(verify)

    report = sub.add_parser("report", help="fetch a report from the running daemon")
    report_sub = report.add_subparsers(dest="report_kind", required=True)
    model = report_sub.add_parser("model", help="a model's report")
    model.add_argument("name", help="the model")
    experiment = report_sub.add_parser("experiment", help="an experiment's report")
    experiment.add_argument("name", metavar="ID", help="the experiment's id")
    compliance = report_sub.add_parser("compliance", help="the compliance report")
    compliance.add_argument("--model", action="append", default=[], help="only this model")
    for p in (model, experiment, compliance):
        _daemon_args(p, ("html", "json"))

    export = sub.add_parser("export", help="export a history from the running daemon")
    export.add_argument(
        "kind", help="drift | performance | profiles | experiments | rollouts | audit"
    )
    export.add_argument("--model", help="only this model")
    _daemon_args(export, ("csv", "parquet", "json"))
    return parser


def _daemon_args(parser: argparse.ArgumentParser, formats: tuple[str, ...]) -> None:
    _config_args(parser)
    parser.add_argument("--format", choices=formats, default=formats[0])
    parser.add_argument(
        "--from", dest="since", help="Unix seconds or ISO 8601 (default: 30 days ago)"
    )
    parser.add_argument("--to", dest="until", help="Unix seconds or ISO 8601 (default: now)")
    parser.add_argument("--output", "-o", metavar="FILE", help="write here (default: stdout)")
    parser.add_argument("--url", help="the daemon's URL (default: http://<daemon.listen>)")
    parser.add_argument(
        "--token", default=os.environ.get("MLWARDEN_TOKEN", ""),
        help="bearer token (default: $MLWARDEN_TOKEN)",
    )  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from .daemon.core.tracking import disable_telemetry

    disable_telemetry()
    try:
        return COMMANDS[args.command](args)
    except (ConfigError, PluginError) as exc:
        print(f"mlwarden: error: {exc}", file=sys.stderr)
        return 1 if args.command == "check-config" else 2
    except KeyboardInterrupt:
        return 130


def _load(args: argparse.Namespace, overrides: dict[str, str] | None = None):
    from .daemon.core.config_loader import load_config

    return load_config(args.config, overrides=overrides)


def cmd_run(args: argparse.Namespace) -> int:
    from .daemon.core.memory import tune_malloc

    tune_malloc()  # before any worker thread allocates (daemon/core/memory.py says why)
    from .daemon.app import Daemon

    overrides = {"daemon.listen": args.listen} if args.listen else {}
    config = _load(args, overrides)
    logging.basicConfig(
        level=config.daemon.log_level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    from .daemon.core.redaction import install_redactor

    install_redactor(config)
    daemon = Daemon(config, config_path=args.config, overrides=overrides)
    return asyncio.run(daemon.serve())


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo.run import run_demo

    return run_demo(
        args.base_path,
        args.listen,
        apprise_urls=args.apprise_url,
        shift_after=args.shift_after,
        duration=args.duration,
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
        cafile=args.cacert,
    )


def cmd_backfill(args: argparse.Namespace) -> int:
    from .client.backfill import backfill

    try:
        summary = backfill(
            args.url,
            args.model,
            args.file,
            token=args.token,
            batch_rows=args.batch_rows,
            label_column=args.label_column,
        )
    except (OSError, ValueError) as exc:
        print(f"mlwarden: error: {exc}", file=sys.stderr)
        return 2
    print(
        f"{args.file}: {summary.loaded} of {summary.rows} predictions loaded into "
        f"{args.model!r} in {summary.batches} batches, {summary.labels} labels"
    )
    for first, last, why in summary.refused:
        print(f"rows {first}-{last} refused, nothing of them stored: {why}")
    return 0 if summary.ok else 1


def cmd_reference(args: argparse.Namespace) -> int:
    from .client import Client, ReferenceRefused

    client = Client(args.url, token=args.token)
    try:
        if args.reference_command == "upload":
            info = client.upload_reference(args.model, args.file)
            print(
                f"{args.file}: in force as the reference of {args.model!r}: {info['rows']} "
                f"rows, features {', '.join(info['features'])}, fingerprint "
                f"{info['fingerprint']}"
            )
        else:
            info = client.remove_reference(args.model)
            print(f"{args.model!r}: uploaded reference removed; in force: {info['in_force']}")
    except ReferenceRefused as exc:
        print(f"mlwarden: refused: {exc}", file=sys.stderr)
        return 1
    except (OSError, ValueError) as exc:
        print(f"mlwarden: error: {exc}", file=sys.stderr)
        return 2
    finally:
        client.close(timeout=1.0)
    return 0


def cmd_check_config(args: argparse.Namespace) -> int:
    from .daemon.core.config import redacted
    from .daemon.core.config_checks import deprecation_warnings, secret_file_warnings
    from .daemon.core.plugin_checks import plugin_problems
    from .daemon.core.plugins import PluginCatalog, make_plugin_manager

    config = _load(args)
    pm = make_plugin_manager(config.daemon.plugins, config.daemon.disable_plugins)
    problems = plugin_problems(config, PluginCatalog(pm, config.daemon.disable_plugins))
    if problems:
        raise ConfigError(problems, config.source)
    for warning in deprecation_warnings(config) + secret_file_warnings(config):
        print(f"mlwarden: warning: {warning}", file=sys.stderr)
    print(json.dumps(redacted(config), indent=2, sort_keys=True))
    return 0


def cmd_plugins(args: argparse.Namespace) -> int:
    from .daemon.core.plugins import PluginCatalog, make_plugin_manager

    config = _load(args)
    pm = make_plugin_manager(config.daemon.plugins, config.daemon.disable_plugins)
    infos = PluginCatalog(pm, config.daemon.disable_plugins).infos()
    if args.json:
        print(json.dumps([i.to_dict() for i in infos], indent=2))
        return 0
    rows = [("NAME", "KIND", "VERSION", "PLUGIN", "ORIGIN")]
    rows += [(i.name, i.kind, i.version, i.plugin, i.origin) for i in infos]
    widths = [max(len(r[c]) for r in rows) for c in range(4)]
    for row in rows:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=False)) + "  " + row[4])
    return 0


def cmd_token(args: argparse.Namespace) -> int:
    from .daemon.api.auth import mint_token

    token, digest = mint_token()
    print(f"token:  {token}")
    print(f"sha256: {digest}")
    print("\nAdd to the configuration (the token itself is shown only now):\n")
    print(f'[[auth.tokens]]\nname = "CHANGE-ME"\nsha256 = "{digest}"\nrole = "viewer"')
    return 0


def cmd_keys(args: argparse.Namespace) -> int:
    from .daemon.keys import command

    if args.keys_command == "new":
        key_file = args.key_file or (_load(args).encryption.key_file if args.config else "")
        print(command.keys_new(key_file))
        return 0
    config = _load(args)
    client = command.DaemonClient(
        url=args.url or command.default_url(config),
        token=args.token,
        cafile=args.cacert,
        certfile=args.cert,
        keyfile=args.key,
    )
    if args.keys_command == "rotate":
        return command.keys_rotate(config, client, _offline_at_rest, sys.stdout)
    status = command.keys_status(config, client, _offline_at_rest)
    print(json.dumps(status, indent=2, sort_keys=True))
    return 0


def _offline_at_rest(config: Config) -> AbstractAsyncContextManager[EncryptionAtRest]:
    """The store's key ring opened here (no daemon answers); the Warden imported only then."""
    from .daemon.warden import offline_at_rest

    return offline_at_rest(config)


def cmd_audit(args: argparse.Namespace) -> int:
    from .daemon.core.audit import AUDIT_SCHEMA, AuditLog
    from .daemon.core.audit_seal import AuditKeyError, checkpoint_dir, load_key
    from .daemon.core.store import Store

    config = _load(args)
    try:
        key = load_key(config.base_path)  # never created here: verify only reads
    except (AuditKeyError, OSError) as exc:
        print(f"audit verify: {exc}", file=sys.stderr)
        return 2
    directory = checkpoint_dir(config.base_path)

    async def verify():
        store = Store(config.database_url, config.store)
        await store.open([AUDIT_SCHEMA])
        try:
            return await AuditLog(store).verify(key, directory)
        finally:
            await store.close()

    result = asyncio.run(verify())
    if result.ok:
        legacy = f", {result.legacy} legacy unkeyed" if result.legacy else ""
        print(
            f"audit log OK: {result.rows} entries{legacy}, hash chain intact, "
            f"{result.checkpoints} checkpoints (newest at row {result.checkpoint_id})"
        )
        if result.legacy:
            print(
                f"note: rows 1-{result.legacy} predate the audit key (plain SHA-256): an "
                "edit that recomputes their hashes would not be detected"
            )
        return 0
    where = f"row {result.bad_id}" if result.bad_id is not None else "the log"
    print(f"audit log TAMPERED at {where}: {result.reason}", file=sys.stderr)
    return 1


def cmd_fetch(args: argparse.Namespace) -> int:
    """``report`` and ``export``: stream the daemon's answer to a file or stdout."""
    import urllib.error
    import urllib.parse
    import urllib.request

    config = _load(args)
    base = args.url or f"http://{config.daemon.listen}"
    query: list[tuple[str, str]] = [("format", args.format)]
    for key, value in (("from", args.since), ("to", args.until)):
        if value:
            query.append((key, value))
    if args.command == "export":
        path = f"/api/exports/{urllib.parse.quote(args.kind)}"
        if args.model:
            query.append(("model", args.model))
    elif args.report_kind == "compliance":
        path = "/api/compliance/report"
        query.extend(("model", m) for m in args.model)
    elif args.report_kind == "experiment":
        path = f"/api/experiments/{urllib.parse.quote(args.name)}/report"
        query = [q for q in query if q[0] == "format"]
    else:
        path = f"/api/models/{urllib.parse.quote(args.name)}/report"
    request = urllib.request.Request(f"{base}{path}?{urllib.parse.urlencode(query)}")
    if args.token:
        request.add_header("Authorization", f"Bearer {args.token}")
    try:
        with urllib.request.urlopen(request, timeout=600) as response:
            out = open(args.output, "wb") if args.output else sys.stdout.buffer  # noqa: SIM115
            try:
                while chunk := response.read(1 << 16):
                    out.write(chunk)
            finally:
                if args.output:
                    out.close()
    except urllib.error.HTTPError as exc:
        print(
            f"mlwarden: error: {exc.code}: {exc.read().decode(errors='replace')}", file=sys.stderr
        )
        return 1
    except urllib.error.URLError as exc:
        print(f"mlwarden: error: cannot reach the daemon at {base}: {exc.reason}", file=sys.stderr)
        return 2
    return 0


COMMANDS = {
    "run": cmd_run,
    "demo": cmd_demo,
    "check-config": cmd_check_config,
    "plugins": cmd_plugins,
    "token": cmd_token,
    "backfill": cmd_backfill,
    "reference": cmd_reference,
    "audit": cmd_audit,
    "keys": cmd_keys,
    "report": cmd_fetch,
    "export": cmd_fetch,
}
