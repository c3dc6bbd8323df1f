"""The `ct-assets` command line: init, config, simulate, cycle, status, registry, export, predict, demo,
backtest."""

import argparse
import json
import os
import select
import sys
import traceback
from collections.abc import Sequence
from typing import Any

from ct_assets.cli.parser import build_parser
from ct_assets.common.heap import freeze_for_exit
from ct_assets.errors import CtError

DEBUG_ENV = "CT_ASSETS_DEBUG"
SIGPIPE_EXIT = 141  # 128 + SIGPIPE: how Unix tools end when the reader of their output has gone


def _metrics_text(metrics: dict) -> str:
    """`golden 0.7493, holdout 0.7591`: a champion's figures as the reports show them (4 significant digits)."""
    return (
        ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in metrics.items())
        or "no metrics"
    )


def _print_json(data: Any) -> None:
    print(json.dumps(data, default=str), flush=True)


def _settings():
    from ct_assets.config import load_settings

    return load_settings()


def cmd_init(args: argparse.Namespace) -> int:
    from ct_assets.defs.instance import ensure_dagster_home
    from ct_assets.store.warehouse import init_warehouse, where

    s = _settings()
    created = init_warehouse(s)
    home = ensure_dagster_home(s.cluster.dagster_db if s.cluster else None)
    for path in created:
        print(f"created {path}")
    print(f"warehouse ready: {where(s)} (config: {s.source}); DAGSTER_HOME={home}")
    return 0


def cmd_config(args: argparse.Namespace) -> int:
    from ct_assets.config import effective_config_toml

    sys.stdout.write(effective_config_toml(_settings()))
    return 0


def cmd_simulate(args: argparse.Namespace) -> int:
    from ct_assets.tools.simulator import SimulationOptions, parse_drift, simulate

    opts = SimulationOptions(
        batches=args.batches,
        rows=args.rows,
        seed=args.seed,
        drift=parse_drift(args.drift),
        label_noise=args.label_noise,
        unlabelled=args.unlabelled,
        drift_slice=args.drift_slice,
        file_format=args.format,
        exploration=args.exploration,
        label_delay=args.label_delay,
        late_share=args.late_share,
    )
    for path in simulate(_settings(), opts):
        print(path)
    return 0


def cmd_cycle(args: argparse.Namespace) -> int:
    from ct_assets.commands.cycle import run_cycle

    out = run_cycle(_settings(), force=args.force)
    if args.json:
        _print_json(out)
    else:
        print(f"verdict: {out['verdict']}")
        print(
            f"champion: {out['champion_version'] or 'none'}; challenger: {out['challenger_version'] or 'none'}"
        )
        for name in out["failed_checks"]:
            print(f"failed check {name}: {out['failed_reasons'].get(name, '')}")
        print(
            f"files: {out['ingested_files']} ingested, {out['quarantined_files']} quarantined, "
            f"{out['duplicate_files']} duplicate; labels: {out['labels_attached']} attached, "
            f"{out['labels_pending']} pending, {out['labels_conflict']} conflicting; "
            f"trigger: {out['trigger']['reason']}"
        )
    if out["verdict"] == "failed":
        print(f"ct-assets: error: the CT run failed: {out.get('error')}", file=sys.stderr)
        return 1
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from ct_assets.commands.status import status

    out = status(_settings())
    if args.json:
        _print_json(out)
        return 0
    champ = out["champion"]
    print(
        f"champion: {out['champion_version'] or 'none'}"
        + (
            f" ({champ['how']} {champ['since']}; data {champ['data_hash']}; {_metrics_text(champ['metrics'])})"
            if champ
            else ""
        )
    )
    print(
        f"rows: {out['rows_total']} in the warehouse ({out['rows_labelled']} labelled); "
        f"{out['rows_since_training']} labelled since the champion's training (retrain at {out['retrain_threshold']})"
    )
    late, delay = out["labels"], out["labels"]["delay_hours"]
    if late["attached"] or late["pending"] or late["conflict"]:
        print(
            f"late labels: {late['attached']} attached, {late['pending']} pending (no row with that id yet), "
            f"{late['conflict']} conflicting (first label kept), {late['duplicate']} duplicate; "
            f"label delay median {delay['median']} h, p90 {delay['p90']} h, max {delay['max']} h"
        )
    print(f"next: {'retrain due' if out['retrain_due'] else 'no retrain yet'} ({out['retrain_reason']})")
    for name, text in out["triggers"].items():
        print(f"  {name}: {text}")
    print(
        f"data lag: {out['data_lag_hours']} h; newest file: {out['newest_file_age_hours']} h old; "
        f"pending files: {out['pending_files']}"
    )
    print(f"last verdict: {out['last_verdict'] or 'none'}")
    for a in out["open_alerts"]:
        print(f"alert [{a['kind']}] {a['raised_at']}: {a['message']}")
    if out["review_queue"]:
        print("review queue: " + ", ".join(f"{q['version']} ({q['reason']})" for q in out["review_queue"]))
    return 0


def cmd_registry(args: argparse.Namespace) -> int:
    s = _settings()
    if args.action == "list":
        from ct_assets.commands.status import registry_listing

        out = registry_listing(s, at=args.at)
        if args.json:
            _print_json(out)
            return 0
        print(f"champion: {out['champion_version'] or 'none'}")
        if args.at:
            print(f"champion at {out['at']}: {out['champion_at'] or 'none'}")
        for m in out["models"]:
            print("  " + "  ".join(f"{k}={v}" for k, v in m.items()))
        print("review queue: " + (", ".join(out["review_queue"]) or "empty"))
        return 0
    if args.action == "reject":
        from ct_assets.commands.review import reject

        entry = reject(s, args.version, args.reason)
        print(f"rejected {entry.version}; champion stays {entry.champion_after or 'none'}")
        return 0
    from ct_assets.commands.review import change_champion

    version = getattr(args, "version", None) or getattr(args, "to", None) or ""
    out = change_champion(s, args.action, version, args.reason)
    print(
        f"champion: {out['version']} ({out['action']}; was {out['previous'] or 'none'}; run {out['run_id']})"
    )
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from ct_assets.commands.review import report_of

    print(report_of(_settings(), args.version))
    return 0


def cmd_reproduce(args: argparse.Namespace) -> int:
    from ct_assets.tools.reproduce import reproduce

    out = reproduce(_settings(), args.version)
    print(
        f"{out.version}: {'reproducible' if out.reproducible else 'NOT reproducible'}: {out.reason} "
        f"({out.seconds:.1f} s)"
    )
    return 0 if out.reproducible else 1


def cmd_golden(args: argparse.Namespace) -> int:
    from ct_assets.commands.review import rebuild_golden

    out = rebuild_golden(_settings(), args.reason)
    print(f"golden set {out['old'] or 'none'} -> {out['new']} ({out['rows']} rows; run {out['run_id']})")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ct_assets.commands.export import run_export

    return run_export(
        _settings(), Path(args.to) if args.to else None, force=args.force, every=args.every, as_json=args.json
    )


def cmd_predict(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ct_assets.commands.predict import describe, run_predict

    s = _settings()
    out = run_predict(s, Path(args.file), Path(args.out) if args.out else None, args.version)
    print(describe(out, args.version, s.decision_threshold))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from ct_assets.commands.demo import run_demo

    if args.cluster:
        from pathlib import Path

        from ct_assets.commands.demo_cluster import run_demo_cluster

        try:
            return run_demo_cluster(
                Path(args.dir),
                host=args.host,
                port=args.port,
                interval=args.interval,
                rows=args.rows,
                batches=args.batches,
            )
        except KeyboardInterrupt:
            return 130
    return run_demo(
        _settings(),
        host=args.host,
        port=args.port,
        interval=args.interval,
        rows=args.rows,
        batches=args.batches,
    )


def cmd_batch(args: argparse.Namespace) -> int:
    from ct_assets.commands.review import batch_decision, batch_listing

    s = _settings()
    if args.batch_action == "list":
        rows = batch_listing(s)
        if args.json:
            _print_json(rows)
            return 0
        if not rows:
            print("no batch judged yet (batches are judged by the champion when they land)")
        for r in rows:
            print(f"batch {r['batch_id']}: {r['status']} ({r['reason']})")
        return 0
    out = batch_decision(s, args.batch_action, args.batch_id, args.reason)
    print(f"batch {out['batch_id']}: {out['status']} (by {out['actor']})")
    return 0


def cmd_backtest(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ct_assets.commands.backtest import run_backtest
    from ct_assets.commands.runs import stdout_to_stderr
    from ct_assets.tools.backtest_report import format_table

    settings = _settings()
    with stdout_to_stderr():  # stdout is kept for the table or the one JSON line
        bt, meta = run_backtest(
            settings,
            Path(args.deltas_dir),
            every=args.every,
            workdir=Path(args.workdir) if args.workdir else None,
        )
    if args.json:
        _print_json({**bt.to_json(), **meta})
        return 0
    print(format_table(bt))
    print(f"html: {meta['html']}")
    return 0


COMMANDS = {
    "init": cmd_init,
    "config": cmd_config,
    "simulate": cmd_simulate,
    "cycle": cmd_cycle,
    "status": cmd_status,
    "registry": cmd_registry,
    "report": cmd_report,
    "reproduce": cmd_reproduce,
    "golden": cmd_golden,
    "batch": cmd_batch,
    "export": cmd_export,
    "predict": cmd_predict,
    "demo": cmd_demo,
    "backtest": cmd_backtest,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code = int(COMMANDS[args.command](args) or 0)
        sys.stdout.flush()  # a reader that went away shows here, not in the flush at interpreter exit
        return code
    except BrokenPipeError as e:
        if not _stdout_reader_gone():
            return _unexpected(e)
        # As Python's docs advise (signal module, "Note on SIGPIPE"): stdout to devnull, so that the
        # flush at exit cannot fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return SIGPIPE_EXIT
    except CtError as e:
        print(f"ct-assets: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("ct-assets: interrupted", file=sys.stderr)
        return 130
    except Exception as e:
        return _unexpected(e)


def _unexpected(e: Exception) -> int:
    """Anything unexpected: one line on stderr, the traceback only on request."""
    if os.environ.get(DEBUG_ENV):
        traceback.print_exc()
    first = (str(e).strip().splitlines() or [""])[0][:300]
    print(
        f"ct-assets: error: {type(e).__name__}: {first} (set {DEBUG_ENV}=1 for the traceback)",
        file=sys.stderr,
    )
    return 1


def _stdout_reader_gone() -> bool:
    """Whether stdout is a pipe whose reader has closed it (`ct-assets status | head -3`); any other
    broken pipe (a webhook, a child process) is an error like any other."""
    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(event & select.POLLERR for _, event in poller.poll(0))
    except (AttributeError, OSError, ValueError):  # no poll, or stdout is not a file descriptor
        return False


def run() -> int:
    """The `ct-assets` program: main(), then the heap frozen, so that the interpreter's exit does not
    collect it (1.5 to 2.4 s after a forced cycle; ct_assets.common.heap)."""
    code = main()
    freeze_for_exit()
    return code


if __name__ == "__main__":
    sys.exit(run())
