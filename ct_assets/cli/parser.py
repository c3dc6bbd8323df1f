"""The `ct-assets` argument parser: every command, its arguments and their help."""

import argparse
from typing import Any


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="ct-assets",
        description="Continuous training of a tabular model as a Dagster asset graph. Configuration: the "
        "TOML file named by CT_ASSETS_CONFIG (defaults built in); Dagster instance: DAGSTER_HOME "
        "(default ./data/dagster).",
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in (
        _add_basics,
        _add_simulate,
        _add_cycle,
        _add_status,
        _add_registry,
        _add_report,
        _add_reproduce,
        _add_golden,
        _add_batch,
        _add_export,
        _add_predict,
        _add_demo,
        _add_backtest,
    ):
        add(sub)
    return p


def _add_basics(sub: Any) -> None:
    sub.add_parser("init", help="create or upgrade the warehouse and folders (idempotent)")
    sub.add_parser("config", help="print the effective configuration as TOML")


def _add_simulate(sub: Any) -> None:
    sim = sub.add_parser("simulate", help="land synthetic delta files, continuing one stream across calls")
    sim.add_argument("--batches", type=int, required=True)
    sim.add_argument("--rows", type=int, required=True)
    sim.add_argument("--seed", type=int, default=0)
    sim.add_argument(
        "--drift",
        default="0",
        metavar="STRENGTH|MODE",
        help="a number: the same shift of features and concept in every batch, 0 (none) to 1 (strong); "
        "a word: a drift mode along the stream's batch numbers (batch 1 is the stream's first delta, "
        "counted across calls): seasonal (the label's relation to the features turns full circle every "
        "12 batches, the positive rate swings with it), sudden (the relation changes for good from batch "
        "12), gradual (the features shift a little every batch, the relation stays), poison (60%% of "
        "batch 12's labels flipped, every other batch clean), none",
    )
    sim.add_argument("--label-noise", type=float, default=0.0, help="share of labels flipped")
    sim.add_argument("--unlabelled", type=float, default=0.02, help="share of rows never labelled")
    sim.add_argument(
        "--label-delay",
        type=int,
        default=0,
        metavar="N",
        help="land each batch's rows without their labels, and the labels as a label file (row_id, label) "
        "N batches later along the stream (labels still due when it stops land with a later call)",
    )
    sim.add_argument(
        "--late-share",
        type=float,
        default=1.0,
        metavar="P",
        help="with --label-delay: the share of labelled rows whose labels arrive late (default 1: all)",
    )
    sim.add_argument("--drift-slice", default=None, help="COLUMN=VALUE: concept drift confined to that slice")
    sim.add_argument("--format", choices=["parquet", "csv"], default="parquet")
    sim.add_argument(
        "--exploration",
        type=float,
        default=0.0,
        help="share of rows flagged as exploration (needs [columns] exploration in the config)",
    )


def _add_cycle(sub: Any) -> None:
    cyc = sub.add_parser("cycle", help="ingest what has landed, then retrain if the condition holds")
    cyc.add_argument(
        "--force", action="store_true", help="run the CT job even if the retrain condition does not hold"
    )
    cyc.add_argument(
        "--json", action="store_true", help="print one JSON object on stdout (logs go to stderr)"
    )


def _add_status(sub: Any) -> None:
    st = sub.add_parser(
        "status", help="champion, rows since its training, data lag, last verdict, pending files"
    )
    st.add_argument("--json", action="store_true")


def _add_registry(sub: Any) -> None:
    reg = sub.add_parser("registry", help="the model registry and the review queue")
    rsub = reg.add_subparsers(dest="action", required=True, metavar="ACTION")
    rl = rsub.add_parser("list", help="models, their state, the review queue")
    rl.add_argument("--json", action="store_true")
    rl.add_argument(
        "--at", default=None, metavar="TIME", help="also show the champion at this past time (UTC)"
    )
    for name, text in (
        ("approve", "promote a blocked challenger, recording the override"),
        ("reject", "close a blocked challenger's review without promoting it"),
    ):
        r = rsub.add_parser(name, help=text)
        r.add_argument("version")
        r.add_argument("--reason", required=True)
    rb = rsub.add_parser("rollback", help="re-point the champion to the previous one (or --to VERSION)")
    rb.add_argument("--to", default=None, metavar="VERSION")
    rb.add_argument("--reason", required=True)


def _add_report(sub: Any) -> None:
    rep = sub.add_parser("report", help="print the path of a validation report (HTML, self-contained)")
    rep.add_argument("version", nargs="?", default=None, help="model version (default: the latest validated)")


def _add_reproduce(sub: Any) -> None:
    repro = sub.add_parser(
        "reproduce",
        help="retrain a registered model from the warehouse and compare the bytes "
        "(a Dask-trained one: its golden-set AUC, within 0.005)",
    )
    repro.add_argument("version")


def _add_golden(sub: Any) -> None:
    gold = sub.add_parser("golden", help="the golden set")
    gsub = gold.add_subparsers(dest="golden_action", required=True, metavar="ACTION")
    gr = gsub.add_parser("rebuild", help="rebuild the frozen golden set from the data now in the warehouse")
    gr.add_argument("--reason", required=True)


def _add_export(sub: Any) -> None:
    exp = sub.add_parser(
        "export", help="Parquet copies of the warehouse tables for notebooks and BI tools (data/export)"
    )
    exp.add_argument(
        "--to", default=None, metavar="DIR", help="folder to write (default: export/ beside the warehouse)"
    )
    exp.add_argument("--force", action="store_true", help="rewrite even if the warehouse has not changed")
    exp.add_argument(
        "--every",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="keep exporting every SECONDS until Ctrl-C",
    )
    exp.add_argument("--json", action="store_true", help="print the manifest as one JSON line")


def _add_predict(sub: Any) -> None:
    pr = sub.add_parser(
        "predict",
        help="score a Parquet or CSV file with the champion (or --version V), validated as ingest does; "
        "Parquet out",
    )
    pr.add_argument("file", metavar="FILE", help="the rows to score (the label may be absent)")
    pr.add_argument(
        "--out",
        default=None,
        metavar="F",
        help="Parquet file to write (default: <stem>.predictions.parquet beside FILE)",
    )
    pr.add_argument("--version", default=None, metavar="V", help="a model version from the models folder")


def _add_demo(sub: Any) -> None:
    demo = sub.add_parser("demo", help="the web UI with sensors running and a feeder landing deltas")
    demo.add_argument("--host", default="127.0.0.1", help="address the web UI binds to (default 127.0.0.1)")
    demo.add_argument("--port", type=int, default=3000)
    demo.add_argument("--interval", type=float, default=5.0, help="seconds between landed deltas")
    demo.add_argument("--rows", type=int, default=4000, help="rows per landed delta")
    demo.add_argument("--batches", type=int, default=0, help="stop feeding after this many deltas (0: never)")
    demo.add_argument(
        "--cluster",
        action="store_true",
        help="cluster mode on this machine: PostgreSQL, an S3 server, Dask scheduler and workers (cluster venv)",
    )
    demo.add_argument(
        "--dir", default="data/demo-cluster", help="with --cluster: the demo's folder (recreated on start)"
    )


def _add_batch(sub: Any) -> None:
    bat = sub.add_parser(
        "batch", help="landed batches: which are held back or excluded from training, and why"
    )
    bsub = bat.add_subparsers(dest="batch_action", required=True, metavar="ACTION")
    bl = bsub.add_parser("list", help="every judged batch with its latest decision")
    bl.add_argument("--json", action="store_true")
    for name, text in (
        ("release", "train on a held-back or excluded batch again"),
        ("exclude", "never train on a batch (e.g. known bad labels)"),
    ):
        b = bsub.add_parser(name, help=text)
        b.add_argument("batch_id", type=int)
        b.add_argument("--reason", required=True)


def _add_backtest(sub: Any) -> None:
    bt = sub.add_parser(
        "backtest",
        help="replay delta files through the loop in a scratch warehouse; the served model beside baselines",
    )
    bt.add_argument(
        "deltas_dir",
        metavar="DELTAS_DIR",
        help="folder of delta files (*.parquet, *.csv), replayed in name order",
    )
    bt.add_argument(
        "--json", action="store_true", help="print one JSON object on stdout (progress and logs go to stderr)"
    )
    bt.add_argument(
        "--every",
        type=int,
        default=3,
        metavar="N",
        help="the every-N-steps baseline retrains every N steps (default 3)",
    )
    bt.add_argument(
        "--workdir",
        default=None,
        metavar="DIR",
        help="keep the scratch warehouse, instance and models in DIR (new or empty); default: a temporary folder",
    )
