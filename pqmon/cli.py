"""The ``pqmon`` command line (docs/cli.md). The only place errors become messages and exit codes."""

from __future__ import annotations

import argparse
import dataclasses
import getpass
import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from core.errors import PqmonError
from core.logs import configure as configure_logging
from core.settings import LANGS, Settings, load_settings

log = logging.getLogger("pqmon")


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date (YYYY-MM-DD)") from None


def _stop_event() -> threading.Event:
    """An event set by SIGTERM or SIGINT, so services flush and exit cleanly."""
    stop = threading.Event()

    def handler(signum: int, _frame: object) -> None:
        log.info("signal %s: stopping", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    return stop


def cmd_up(args: argparse.Namespace, settings: Settings) -> int:
    from pqmon.stack import up

    return up(
        accounts=args.accounts,
        seed=args.seed,
        speed=args.speed,
        days=args.days,
        dashboard_port=args.port,
    )


def cmd_collector(args: argparse.Namespace, settings: Settings) -> int:
    from collector.service import run

    return run(settings, _stop_event())


def cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    from analysis.worker import run_forever, run_once
    from core.registry import Registry
    from core.store import InfluxStore

    if args.once:
        store, registry = InfluxStore.from_settings(settings), Registry(settings.registry_url)
        try:
            result = run_once(settings, store, registry, full=args.full)
        finally:
            store.close()
            registry.close()
        print(
            f"{'full' if result.full else 'incremental'} pass: analysed {result.sites} sites, "
            f"{result.days} site-days, "
            f"wrote {result.points} points in {result.seconds:.1f}s"
        )
        if result.days == 0:
            print(_nothing_to_do(settings, store.database_missing, result.full))
        return 0
    run_forever(settings, _stop_event())
    return 0


def _nothing_to_do(settings: Settings, database_missing: bool, full: bool) -> str:
    """Why a pass analysed nothing, and what would give it something to do."""
    if database_missing:
        return (
            f"nothing to do: InfluxDB has no database {settings.influx_db!r} yet; the collector creates "
            "it when the first readings arrive (check PQMON_INFLUX_DB if data was expected)"
        )
    if full:
        return (
            f"nothing to do: no readings or events in the last {settings.lookback_days} days "
            "(PQMON_LOOKBACK_DAYS) of any registered site"
        )
    return "nothing to do: no site-day changed since the previous pass"


def cmd_dashboard(args: argparse.Namespace, settings: Settings) -> int:
    from dashboard.app import main

    main(dataclasses.replace(settings, dashboard_port=args.port) if args.port else settings)
    return 0


def cmd_simulate(args: argparse.Namespace, settings: Settings) -> int:
    from simulator.live import parse_planned
    from simulator.publish import run

    since_ms = None
    if args.since is not None:
        since_ms = int(datetime.combine(args.since, time(0), ZoneInfo(settings.tz)).timestamp() * 1000)
    run(
        settings,
        accounts=args.accounts,
        seed=args.seed,
        speed=args.speed,
        days=args.days,
        interval_s=args.interval,
        stop_event=_stop_event(),
        since_ms=since_ms,
        live_interval_s=args.live_interval,
        planned=tuple(parse_planned(text) for text in args.planned or ()),
    )
    return 0


def cmd_registry_import(args: argparse.Namespace, settings: Settings) -> int:
    from core.registry import Registry

    result = Registry(settings.registry_url).import_csv(args.file)
    print(
        f"sites: {result.sites_added} added, {result.sites_updated} updated; "
        f"meters: {result.meters_added} added, {result.meters_updated} updated"
    )
    return 0


def _schema(settings: Settings, action: str) -> Any:
    """``core.schema.upgrade`` or ``status`` on the registry's engine, disposed afterwards."""
    from core import schema
    from core.registry import open_engine

    engine = open_engine(settings.registry_url)
    try:
        return getattr(schema, action)(engine)
    finally:
        engine.dispose()


def cmd_db_upgrade(args: argparse.Namespace, settings: Settings) -> int:
    print(f"registry schema {_schema(settings, 'upgrade').describe()}")
    return 0


def cmd_db_current(args: argparse.Namespace, settings: Settings) -> int:
    state = _schema(settings, "status")
    print(f"registry schema {state.describe()}")
    return 0 if state.at_head else 1


def cmd_import_readings(args: argparse.Namespace, settings: Settings) -> int:
    from collector.backfill import import_readings

    result = import_readings(settings, args.file, progress=not args.quiet)
    reasons = ", ".join(f"{k} {v}" for k, v in sorted(result.rejected_by_reason.items())) or "none"
    print(f"{result.rows} row(s): {result.stored} stored, {result.rejected} dead-lettered ({reasons})")
    return 0


def cmd_user_add(args: argparse.Namespace, settings: Settings) -> int:
    from core.registry import Registry

    password = os.environ.get("PQMON_PASSWORD")
    if not password:
        if not sys.stdin.isatty():
            raise PqmonError("no password: set PQMON_PASSWORD or run in a terminal to be prompted")
        password = getpass.getpass(f"password for {args.name}: ")
        if password != getpass.getpass("again: "):
            raise PqmonError("the two passwords differ; nothing was changed")
    user = Registry(settings.registry_url).add_user(args.name, args.role, password, args.site or [])
    sites = ", ".join(sorted(user.sites)) or "-"
    print(f"user {user.name} ({user.role}) saved; sites: {sites}")
    return 0


def cmd_user_token(args: argparse.Namespace, settings: Settings) -> int:
    """A new read-only API token of the user, printed once (only its hash is kept); audited."""
    from core.accounts import Accounts
    from core.registry import Registry

    accounts = Accounts(Registry(settings.registry_url))
    print(accounts.grant_token("cli", args.name, args.label or ""))
    return 0


def cmd_report(args: argparse.Namespace, settings: Settings) -> int:
    from analysis import report_csv
    from analysis.fleet_report import fleet_report
    from analysis.report import site_report
    from core.registry import Registry

    if bool(args.fleet) == bool(args.site):
        raise PqmonError("name one SITE, or --fleet for every key account")
    if args.format == "pdf" and args.fleet:
        raise PqmonError("--format pdf is the report of one account; the fleet report is json or csv")
    if args.format == "pdf" and args.output is None and sys.stdout.isatty():
        raise PqmonError("--format pdf: name the file with -o FILE.pdf (or redirect stdout)")
    output = Path(args.output) if args.output else None
    if output is not None and not output.parent.is_dir():
        raise PqmonError(f"--output {output}: no directory {output.parent}; create it first")
    store = _store(settings)
    registry = Registry(settings.registry_url)
    try:
        if args.fleet:
            report = fleet_report(
                store,
                registry,
                args.date_from,
                args.date_to,
                settings.tz,
                short_s=settings.short_outage_s,
                last_mile_target_vqr_pct=settings.last_mile_target_vqr_pct,
                celid_single_h=settings.celid_single_h,
                celid_total_h=settings.celid_total_h,
                med_min_history_days=settings.med_min_history_days,
                med_history_years=settings.med_history_years,
                med_ddof=settings.med_ddof,
            )
        else:
            report = site_report(
                store,
                registry,
                args.site,
                args.date_from,
                args.date_to,
                settings.tz,
                en50160_min_coverage_pct=settings.en50160_min_coverage_pct,
            )
    finally:
        store.close()
        registry.close()
    if args.format == "pdf":
        return _write_pdf(args, settings, report, output)
    if args.format == "json":
        text = json.dumps(report, ensure_ascii=False, indent=2) + "\n"
        if output is None:
            print(text, end="")
        else:
            output.write_text(text, encoding="utf-8")
            print(f"wrote {output}", file=sys.stderr)
        return 0
    tables = report_csv.fleet_tables(report) if args.fleet else report_csv.site_tables(report)
    if output is None:
        print(tables[report_csv.MAIN], end="")  # the main table; -o writes the others beside it
    else:
        written = report_csv.write_tables(output, tables)
        print(f"wrote {', '.join(str(p) for p in written)}", file=sys.stderr)
    return 0


def _write_pdf(args: argparse.Namespace, settings: Settings, report: dict, output: Path | None) -> int:
    """The account's report as the PDF the archive issues: same figures, same layout."""
    from core.registry import Registry
    from reports.monthly import document
    from reports.pdf import render

    lang = args.lang or settings.lang
    registry = Registry(settings.registry_url)
    try:
        today = datetime.now(settings.zone).date()
        data = render(document(report, registry, settings, lang, today))
    finally:
        registry.close()
    if output is None:
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
    else:
        tmp = output.with_name(output.name + ".part")
        tmp.write_bytes(data)
        tmp.replace(output)
        print(f"wrote {output} ({len(data) // 1024} KB)", file=sys.stderr)
    return 0


def _store(settings: Settings):  # type: ignore[no-untyped-def]
    from core.store import InfluxStore

    return InfluxStore.from_settings(settings)


def _epoch_ms(day: date | None) -> int | None:
    if day is None:
        return None
    return int(datetime.combine(day, time(0), tzinfo=UTC).timestamp() * 1000)


def cmd_deadletter_list(args: argparse.Namespace, settings: Settings) -> int:
    from collector.deadletter import DeadLetters

    shown = 0
    letters = DeadLetters(settings.data_dir / "deadletter.db")
    for rec in letters.records(args.reason, args.site, _epoch_ms(args.since), _epoch_ms(args.until)):
        rec.pop("raw")
        print(json.dumps(rec, ensure_ascii=False))
        shown += 1
    print(f"{shown} dead letter(s)", file=sys.stderr)
    return 0


def cmd_deadletter_replay(args: argparse.Namespace, settings: Settings) -> int:
    from collector.replay import replay

    result = replay(settings, reason=args.reason, site=args.site)
    print(
        f"replayed {result.replayed} message(s): {result.stored} point(s) stored, "
        f"{result.still_rejected} still rejected (kept)"
    )
    return 0


def cmd_health(args: argparse.Namespace, settings: Settings) -> int:
    from pqmon.health import run

    return run(args.target, settings, wait_s=args.wait, max_age_s=args.max_age)


def cmd_broker_credentials(args: argparse.Namespace, settings: Settings) -> int:
    from collector.broker import write_credentials
    from core.registry import Registry

    out = Path(args.out_dir)
    passwords = write_credentials(
        Registry(settings.registry_url), out, args.collector_user, os.environ.get("PQMON_PASSWORD")
    )
    print(
        f"wrote {out / 'passwd'}, {out / 'acl'} and {out / 'meter-credentials.csv'} "
        f"for {len(passwords) - 1} meter(s) and the collector user {args.collector_user}"
    )
    return 0


def _local_time(text: str, tz: str) -> datetime:
    """An ISO time, naive meaning local (PQMON_TZ), as naive UTC for the registry."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise PqmonError(f"{text!r} is not a time like 2026-11-22T09:00 or 2026-11-22T09:00+08:00") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=ZoneInfo(tz))
    return moment.astimezone(UTC).replace(tzinfo=None)


def _notice_book(settings: Settings):  # type: ignore[no-untyped-def]
    from analysis.alerts.config import load
    from analysis.alerts.notices import NoticeBook, NoticePolicy
    from core.registry import Registry

    config = load(settings)  # the [notices] offsets; checked like the alert service checks them
    return NoticeBook(Registry(settings.registry_url), config.notices or NoticePolicy(tz=settings.tz))


def _local_text(naive_utc: datetime, tz: str) -> str:
    return naive_utc.replace(tzinfo=UTC).astimezone(ZoneInfo(tz)).strftime("%Y-%m-%d %H:%M")


def _ms_text(ms: int | None, tz: str) -> str:
    if ms is None:
        return "-"
    return datetime.fromtimestamp(ms / 1000, ZoneInfo(tz)).strftime("%Y-%m-%d %H:%M:%S")


def _notice_counts(states: dict[str, int], contacts: int) -> str:
    if not states:
        return "no notices (no contact with an e-mail or a robot: 'pqmon contacts import')"
    parts = [f"{n} {state}" for state, n in sorted(states.items())]
    late = " (their time had passed)" if "skipped_late" in states else ""
    return f"notices: {', '.join(parts)}{late} to {contacts} contact(s)"


def cmd_reports_archive(args: argparse.Namespace, settings: Settings) -> int:
    """What the worker does after a month ends, by hand: version 1 of every account's report of
    the month, then a new version of any closed month whose figures late data changed."""
    from core.registry import Registry
    from reports.archive import archive_month, reissue_stale
    from reports.monthly import month_days, previous_month

    today = datetime.now(settings.zone).date()
    month = args.month or previous_month(today)
    if month_days(month)[1] >= today:
        raise PqmonError(f"--month {month} is not over yet; its report is issued after it ends")
    registry = Registry(settings.registry_url)

    def progress(done: int, total: int) -> None:
        if done == total or done % max(1, total // 20) == 0:
            print(f"  {done}/{total} accounts", file=sys.stderr)

    try:
        counts = archive_month(settings, registry, month, today, workers=args.workers, progress=progress)
        late = reissue_stale(settings, registry, today, workers=args.workers)
    finally:
        registry.close()
    print(
        f"{month}: {counts['issued']} issued, {counts['unchanged']} without data, {counts['failed']} failed;"
        f" late data: {late['reissued']} new versions, {late['unchanged']} unchanged;"
        f" files in {settings.report_dir}"
    )
    return 1 if counts["failed"] or late["failed"] else 0


def cmd_reports_list(args: argparse.Namespace, settings: Settings) -> int:
    from core.registry import Registry
    from reports.archive import issues

    registry = Registry(settings.registry_url)
    try:
        registry.site(args.site)  # an unknown account says so instead of listing nothing
        found = issues(registry, [args.site], args.month)
    finally:
        registry.close()
    if not found:
        print(f"no report of {args.site} issued yet" + (f" for {args.month}" if args.month else ""))
    for i in found:
        issued = datetime.fromtimestamp(i.issued_ms / 1000, settings.zone).strftime("%Y-%m-%d %H:%M")
        changed = ", ".join(c["figure"] for c in i.changes)
        print(
            f"{i.month}  v{i.version}  {i.report_no}  issued {issued}  {i.path.parent}"
            + (f"  changed: {changed}" if changed else "")
        )
    return 0


def cmd_planned_add(args: argparse.Namespace, settings: Settings) -> int:
    start, end = _local_time(args.start, settings.tz), _local_time(args.end, settings.tz)
    book = _notice_book(settings)
    result = book.register(args.site, start, end, args.note or "")
    book.registry.mark_window_dirty(result.sites, [(start, end)], settings.tz)
    tz = settings.tz
    print(
        f"planned outage {result.window_id}: {_local_text(start, tz)} to {_local_text(end, tz)}"
        f" ({tz}) registered for {', '.join(result.sites)}; "
        f"{_notice_counts(result.states, result.contacts)}"
    )
    return 0


def cmd_planned_move(args: argparse.Namespace, settings: Settings) -> int:
    start, end = _local_time(args.start, settings.tz), _local_time(args.end, settings.tz)
    book = _notice_book(settings)
    result = book.move(args.id, start, end)
    assert result.prev_start_utc is not None and result.prev_end_utc is not None
    spans = [(result.prev_start_utc, result.prev_end_utc), (start, end)]
    book.registry.mark_window_dirty(result.sites, spans, settings.tz)
    tz = settings.tz
    print(
        f"planned outage {result.window_id} moved (version {result.version}): {_local_text(start, tz)} to "
        f"{_local_text(end, tz)}, was {_local_text(result.prev_start_utc, tz)} to "
        f"{_local_text(result.prev_end_utc, tz)} ({tz}); unsent notices of the old time withdrawn; "
        f"{result.told} 'moved' notice(s) now; {_notice_counts(result.states, result.contacts)}"
    )
    return 0


def cmd_planned_cancel(args: argparse.Namespace, settings: Settings) -> int:
    book = _notice_book(settings)
    result = book.cancel(args.id)
    book.registry.mark_window_dirty(result.sites, [(result.start_utc, result.end_utc)], settings.tz)
    print(
        f"planned outage {result.window_id} cancelled ({', '.join(result.sites)}): unsent notices withdrawn; "
        f"{result.told} 'cancelled' notice(s) now to the contacts already told"
    )
    return 0


def cmd_planned_list(args: argparse.Namespace, settings: Settings) -> int:
    from core.registry import Registry

    windows = Registry(settings.registry_url).planned_windows(args.site)
    if not windows:
        print("no planned outages with an id")
    for w in windows:
        note = f" - {w.note}" if w.note else ""
        print(
            f"{w.id}: {w.site_id} {_local_text(w.start_utc, settings.tz)} to "
            f"{_local_text(w.end_utc, settings.tz)} {w.state} (version {w.version}); "
            f"sites {', '.join(w.sites) or '-'}{note}"
        )
    return 0


def cmd_contacts_import(args: argparse.Namespace, settings: Settings) -> int:
    result, notices = _notice_book(settings).import_contacts(args.file)
    print(
        f"contacts: {result.added} added, {result.updated} updated; "
        f"{notices} notice(s) added for planned outages ahead"
    )
    for who in result.unreachable:
        print(
            f"warning: {who} has neither an e-mail nor a robot: no notices will reach them", file=sys.stderr
        )
    return 0


def cmd_contacts_list(args: argparse.Namespace, settings: Settings) -> int:
    from analysis.alerts.channels import mask_url
    from core.registry import Registry

    contacts = Registry(settings.registry_url).contacts(args.site)
    if not contacts:
        print("no contacts")
    for c in contacts:
        robot = "-"
        if c.robot_url:
            robot = f"{c.robot_kind} {mask_url(c.robot_url)}" + (" (signed)" if c.robot_secret else "")
        print(
            f"{c.site_id}\t{c.name}\tphone {c.phone or '-'}\temail {c.email or '-'}\trobot {robot}\t{c.lang}"
        )
    return 0


def cmd_notices_list(args: argparse.Namespace, settings: Settings) -> int:
    from analysis.alerts.notices import which
    from core.registry import Registry

    notices = Registry(settings.registry_url).notices(args.site, args.planned)
    if args.json:
        print(json.dumps([dataclasses.asdict(n) for n in notices], ensure_ascii=False, indent=2))
        return 0
    if not notices:
        print("no notices")
    tz = settings.tz
    for n in notices:
        what = f"{which(n.kind, n.offset_s)} notice" if n.kind in ("ahead", "confirm") else n.kind
        done = f" at {_ms_text(n.sent_ms, tz)}" if n.sent_ms else ""
        error = f": {n.last_error}" if n.last_error and n.state != "sent" else ""
        print(
            f"{n.id}: planned outage {n.window_id} v{n.version} {n.site_id} {n.contact_name} {n.channel} "
            f"{what}, due {_ms_text(n.due_ms, tz)}: {n.state}{done} ({n.attempts} attempt(s)){error}"
        )
    return 0


def _alert_engine(settings: Settings):  # type: ignore[no-untyped-def]
    from analysis.alerts.config import load
    from analysis.alerts.engine import AlertEngine
    from core.registry import Registry

    config = load(settings)
    return AlertEngine(Registry(settings.registry_url), config.routes, config.policy)


def cmd_alerts_run(args: argparse.Namespace, settings: Settings) -> int:
    from analysis.alerts.dispatch import run_forever

    run_forever(settings, _stop_event())
    return 0


def cmd_alerts_list(args: argparse.Namespace, settings: Settings) -> int:
    incidents = _alert_engine(settings).open_incidents()
    if args.json:
        print(json.dumps(incidents, ensure_ascii=False, indent=2))
        return 0
    if not incidents:
        print("no open incidents")
    for inc in incidents:
        open_sites = [x["site"] for x in inc["sites"] if x["state"] != "resolved"]
        ack = f" acknowledged by {inc['acked_by']}" if inc["acked_by"] else ""
        print(
            f"#{inc['incident']} {inc['rule']} {inc['group']} {inc['state']}{ack}: "
            f"{len(inc['sites'])} site(s), still off: {', '.join(open_sites) or '-'}"
        )
    return 0


def cmd_alerts_ack(args: argparse.Namespace, settings: Settings) -> int:
    if not args.comment.strip():
        raise PqmonError("say what is being done: --comment TEXT")
    _alert_engine(settings).acknowledge(args.incident, args.by, args.comment)
    print(f"incident {args.incident} acknowledged by {args.by}; reminders and escalation stopped")
    return 0


def cmd_alerts_resolve(args: argparse.Namespace, settings: Settings) -> int:
    if not args.comment.strip():
        raise PqmonError("say why it is resolved by hand: --comment TEXT")
    _alert_engine(settings).resolve(args.incident, args.by, args.comment)
    print(f"incident {args.incident} resolved by {args.by}; its resolve notice goes out")
    return 0


def cmd_alerts_subscribe(args: argparse.Namespace, settings: Settings) -> int:
    from analysis.alerts.subscriptions import subscribe
    from core.registry import Registry

    registry = Registry(settings.registry_url)
    try:
        sub_id = subscribe(
            registry,
            args.user,
            args.channel,
            args.to,
            args.min_severity,
            args.site or [],
            args.quiet,
            args.secret,
        )
    finally:
        registry.close()
    print(f"subscription {sub_id}: {args.user} gets {args.min_severity}+ alerts by {args.channel}")
    return 0


def cmd_alerts_subscriptions(args: argparse.Namespace, settings: Settings) -> int:
    from analysis.alerts.subscriptions import subscriptions
    from core.registry import Registry

    registry = Registry(settings.registry_url)
    try:
        rows = subscriptions(registry, args.user)
    finally:
        registry.close()
    if not rows:
        print("no subscriptions")
    for sub in rows:
        sites = ",".join(sorted(sub.sites)) or "all visible"
        target = sub.target if sub.channel == "email" else sub.target.split("?")[0] + "?..."
        quiet = f" quiet {sub.quiet}" if sub.quiet else ""
        head = f"{sub.id:>4}  {sub.user:<16} {sub.channel:<9} {sub.min_severity}+"
        print(f"{head}  sites {sites}{quiet}  {target}")
    return 0


def cmd_alerts_unsubscribe(args: argparse.Namespace, settings: Settings) -> int:
    from analysis.alerts.subscriptions import unsubscribe
    from core.registry import Registry

    registry = Registry(settings.registry_url)
    try:
        if not unsubscribe(registry, args.id):
            raise PqmonError(f"no subscription {args.id}; 'pqmon alerts subscriptions' lists them")
    finally:
        registry.close()
    print(f"subscription {args.id} removed")
    return 0


def cmd_alerts_silence(args: argparse.Namespace, settings: Settings) -> int:
    if bool(args.storm) == bool(args.site or args.feeder) or (args.site and args.feeder):
        raise PqmonError("name exactly one of --storm, --site SITE, --feeder FEEDER")
    until = _local_time(args.until, settings.tz)
    until_ms = int(until.replace(tzinfo=UTC).timestamp() * 1000)
    scope, target = (
        ("storm", "") if args.storm else ("site", args.site) if args.site else ("feeder", args.feeder)
    )
    row = _alert_engine(settings).quiet(scope, target, until_ms, args.reason, args.by)
    print(f"quiet mode {row}: {scope} {target} until {until:%Y-%m-%d %H:%M}Z; resolve notices still go out")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pqmon", description="key-account supply-quality monitoring")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser(
        "up", help="the whole local stack on loopback (Mosquitto, InfluxDB, services, simulator)"
    )
    p.add_argument("--accounts", type=int, default=50, help="key accounts in the simulated fleet")
    p.add_argument("--seed", type=int, default=1, help="the fleet and its history: same seed, same data")
    p.add_argument(
        "--speed",
        type=float,
        default=60.0,
        help="live incidents (outages, voltage excursions, silent meters) this many times as often as in"
        " the history, each lasting a few minutes; time itself is not sped up (readings never pass now)",
    )
    p.add_argument(
        "--days",
        type=float,
        default=None,
        help="days of history to backfill (default: from the 1st of last month, so this month, last month"
        " and last month's reports have data)",
    )
    p.add_argument("--port", type=int, default=8050, help="dashboard port")
    p.set_defaults(func=cmd_up)

    sub.add_parser("collector", help="MQTT intake into InfluxDB").set_defaults(func=cmd_collector)

    p = sub.add_parser("worker", help="analysis worker (roll-ups, outages)")
    p.add_argument("--once", action="store_true", help="one analysis pass, then exit")
    p.add_argument("--full", action="store_true", help="recompute every day in the look-back window")
    p.set_defaults(func=cmd_worker)

    p = sub.add_parser("dashboard", help="the web dashboard")
    p.add_argument("--port", type=int, default=0)
    p.set_defaults(func=cmd_dashboard)

    p = sub.add_parser("simulate", help="a realistic fleet publishing over MQTT")
    p.add_argument("--accounts", type=int, default=50)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument(
        "--speed",
        type=float,
        default=1.0,
        help="live incidents this many times as often as in the history (on the wall clock)",
    )
    p.add_argument("--days", type=float, default=7, help="days of history to backfill")
    p.add_argument("--since", type=_day, help="backfill from this local day (PQMON_TZ) instead of --days")
    p.add_argument("--interval", type=int, default=900, help="reading interval in seconds")
    p.add_argument(
        "--live-interval", type=int, help="reading interval once live, e.g. 60 (default: --interval)"
    )
    p.add_argument(
        "--planned",
        action="append",
        metavar="SITE,START,END",
        help="carry out an announced window: SITE (a feeder cuts its accounts) without supply from START"
        " to END (ISO times, e.g. 2026-12-01T14:00+08:00; repeat)",
    )
    p.set_defaults(func=cmd_simulate)

    reg = sub.add_parser("registry", help="sites and meters").add_subparsers(dest="sub", required=True)
    p = reg.add_parser("import", help="add or update sites and meters from a CSV (docs/cli.md)")
    p.add_argument("file")
    p.set_defaults(func=cmd_registry_import)

    db = sub.add_parser("db", help="the registry database's schema version").add_subparsers(
        dest="sub", required=True
    )
    p = db.add_parser("upgrade", help="bring the registry's schema to this pqmon's (once per deployment)")
    p.set_defaults(func=cmd_db_upgrade)
    p = db.add_parser("current", help="the schema's revision and whether it is at head (exit 1 if not)")
    p.set_defaults(func=cmd_db_current)

    imp = sub.add_parser("import", help="bulk imports").add_subparsers(dest="sub", required=True)
    p = imp.add_parser("readings", help="a meter-data export (CSV: site, meter, timestamp, reading fields)")
    p.add_argument("file")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_import_readings)

    usr = sub.add_parser("user", help="users").add_subparsers(dest="sub", required=True)
    p = usr.add_parser("add", help="create or update a user; password from PQMON_PASSWORD or a prompt")
    p.add_argument("name")
    p.add_argument("--role", required=True, choices=["admin", "manager", "operator", "customer"])
    p.add_argument("--site", action="append", help="a site the user may see (repeat)")
    p.set_defaults(func=cmd_user_add)
    p = usr.add_parser("token", help="issue a read-only API token of the user (printed once)")
    p.add_argument("name")
    p.add_argument("--label", help="what the token is for, e.g. the script's name")
    p.set_defaults(func=cmd_user_token)

    p = sub.add_parser("report", help="supply-quality report of one site (or the fleet) for whole local days")
    p.add_argument("site", nargs="?")
    p.add_argument("--fleet", action="store_true", help="every key account and the fleet indices")
    p.add_argument("--from", dest="date_from", type=_day, required=True)
    p.add_argument("--to", dest="date_to", type=_day, required=True, help="inclusive")
    p.add_argument("--format", choices=["json", "csv", "pdf"], default="json")
    p.add_argument(
        "--lang", choices=list(LANGS), help="language of the pdf (default: PQMON_LANG); figures are the same"
    )
    p.add_argument(
        "-o",
        "--output",
        metavar="FILE",
        help="write to FILE instead of stdout; with csv also FILE's sibling tables (docs/reports.md)",
    )
    p.set_defaults(func=cmd_report)

    rp = sub.add_parser("reports", help="issued monthly reports").add_subparsers(dest="sub", required=True)
    p = rp.add_parser(
        "archive",
        help="issue every account's report of a closed month (default: the previous), and a new version"
        " of any closed month whose figures late data changed (the worker does this on its own)",
    )
    p.add_argument("--month", metavar="YYYY-MM")
    p.add_argument("--workers", type=int, help="rendering processes (default: PQMON_REPORT_WORKERS)")
    p.set_defaults(func=cmd_reports_archive)
    p = rp.add_parser("list", help="the issued versions of an account's reports")
    p.add_argument("site")
    p.add_argument("--month", metavar="YYYY-MM")
    p.set_defaults(func=cmd_reports_list)

    pl = sub.add_parser("planned", help="planned outages").add_subparsers(dest="sub", required=True)
    p = pl.add_parser("add", help="register a planned-outage window (a feeder's applies to its accounts)")
    p.add_argument("site")
    p.add_argument(
        "--from", dest="start", required=True, help="start, e.g. 2026-11-22T09:00 (local) or with offset"
    )
    p.add_argument("--to", dest="end", required=True, help="end")
    p.add_argument("--note")
    p.set_defaults(func=cmd_planned_add)
    p = pl.add_parser("move", help="re-plan a window: its customers are told once, then reminded anew")
    p.add_argument("id", type=int, help="the id 'planned add' printed")
    p.add_argument("--from", dest="start", required=True, help="new start (local, or with offset)")
    p.add_argument("--to", dest="end", required=True, help="new end")
    p.set_defaults(func=cmd_planned_move)
    p = pl.add_parser("cancel", help="withdraw a window; customers already told get one notice")
    p.add_argument("id", type=int)
    p.set_defaults(func=cmd_planned_cancel)
    p = pl.add_parser("list", help="planned outages with their ids")
    p.add_argument("--site", help="only windows covering this site")
    p.set_defaults(func=cmd_planned_list)

    ct = sub.add_parser("contacts", help="key-account contacts told of planned outages").add_subparsers(
        dest="sub", required=True
    )
    p = ct.add_parser("import", help="add or update contacts from a CSV (all or nothing)")
    p.add_argument("file", help="site_id,name,phone,email,robot_url,robot_secret,lang")
    p.set_defaults(func=cmd_contacts_import)
    p = ct.add_parser("list", help="contacts, of one site or all")
    p.add_argument("site", nargs="?")
    p.set_defaults(func=cmd_contacts_list)

    nt = sub.add_parser("notices", help="planned-outage notices to customers").add_subparsers(
        dest="sub", required=True
    )
    p = nt.add_parser("list", help="the notice log: every notice owed, sent, skipped or failed")
    p.add_argument("--site")
    p.add_argument("--planned", type=int, help="only this planned outage's notices")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_notices_list)

    al = sub.add_parser("alerts", help="alerts and incidents").add_subparsers(dest="sub", required=True)
    p = al.add_parser("run", help="the alert service: deliver notifications, re-notify, escalate")
    p.set_defaults(func=cmd_alerts_run)
    p = al.add_parser("list", help="open incidents, newest first")
    p.add_argument("--json", action="store_true", help="as JSON, with every affected site")
    p.set_defaults(func=cmd_alerts_list)
    p = al.add_parser("ack", help="acknowledge an incident: stops reminders and escalation")
    p.add_argument("incident", type=int)
    p.add_argument("--by", required=True, help="who takes it")
    p.add_argument("--comment", required=True, help="what is being done")
    p.set_defaults(func=cmd_alerts_ack)
    p = al.add_parser("subscribe", help="a user's own channel for alerts: sites, severity, quiet hours")
    p.add_argument("user")
    p.add_argument("--channel", required=True, choices=["email", "webhook", "dingtalk", "wecom"])
    p.add_argument("--to", required=True, help="the e-mail address, or the webhook/robot URL")
    p.add_argument("--secret", help="a DingTalk robot's signing secret")
    p.add_argument("--min-severity", default="major", choices=["minor", "major", "critical"])
    p.add_argument("--site", action="append", help="only these accounts (repeat; default all the user's)")
    p.add_argument("--quiet", help="quiet hours, local time, e.g. 22:00-07:00 (critical still goes at once)")
    p.set_defaults(func=cmd_alerts_subscribe)
    p = al.add_parser("subscriptions", help="list personal subscriptions")
    p.add_argument("--user")
    p.set_defaults(func=cmd_alerts_subscriptions)
    p = al.add_parser("unsubscribe", help="remove a personal subscription")
    p.add_argument("id", type=int)
    p.set_defaults(func=cmd_alerts_unsubscribe)
    p = al.add_parser("resolve", help="resolve an incident by hand (a condition that will not clear itself)")
    p.add_argument("incident", type=int)
    p.add_argument("--by", required=True, help="who resolves it")
    p.add_argument("--comment", required=True, help="why")
    p.set_defaults(func=cmd_alerts_resolve)
    p = al.add_parser("silence", help="maintenance (--site/--feeder) or storm mode (--storm) until a time")
    p.add_argument("--storm", action="store_true", help="hold every page (resolve notices still go out)")
    p.add_argument("--site")
    p.add_argument("--feeder")
    p.add_argument("--until", required=True, help="end, e.g. 2026-11-22T18:00 (local) or with offset")
    p.add_argument("--reason", required=True)
    p.add_argument("--by", required=True)
    p.set_defaults(func=cmd_alerts_silence)

    br = sub.add_parser("broker", help="MQTT broker security").add_subparsers(dest="sub", required=True)
    p = br.add_parser("credentials", help="per-meter passwords and an ACL for Mosquitto, from the registry")
    p.add_argument("out_dir")
    p.add_argument("--collector-user", default="pqmon-collector")
    p.set_defaults(func=cmd_broker_credentials)

    dl = sub.add_parser("deadletter", help="rejected messages").add_subparsers(dest="sub", required=True)
    p = dl.add_parser("list", help="list dead letters as JSON lines")
    p.add_argument("--reason")
    p.add_argument("--site")
    p.add_argument("--since", type=_day, help="received on or after this UTC day")
    p.add_argument("--until", type=_day, help="received before this UTC day")
    p.set_defaults(func=cmd_deadletter_list)
    p = dl.add_parser("replay", help="validate dead letters again; store those that now pass")
    p.add_argument("--reason")
    p.add_argument("--site")
    p.set_defaults(func=cmd_deadletter_replay)

    p = sub.add_parser("health", help="is a service doing its work? exit 0 if so (container health checks)")
    p.add_argument(
        "target",
        nargs="?",
        default="auto",
        choices=("auto", "collector", "dashboard", "worker", "alerts", "mqtt", "registry"),
        help="the service to check (auto: the one this container runs)",
    )
    p.add_argument("--wait", type=float, default=0.0, help="seconds to keep checking until healthy")
    p.add_argument(
        "--max-age",
        type=float,
        help="worker: seconds since the last pass began (default 3 intervals + 600);"
        " alerts: seconds a due notification may wait (default 300)",
    )
    p.set_defaults(func=cmd_health)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings()
        configure_logging(args.verbose, settings.log_format)
        return int(args.func(args, settings) or 0)
    except PqmonError as exc:
        print(f"pqmon: {exc}", file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"pqmon: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
