"""The ``crm-xl`` command line: a thin shell over the pipeline and the adapters.

Every user-facing problem (a :class:`~crm_xl.errors.CrmXlError` or an unreadable file) is printed
as one line on stderr with exit code 2; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from crm_xl._version import __version__
from crm_xl.engines.pages import small_pages
from crm_xl.errors import CrmXlError, InputError
from crm_xl.io.locks import DEFAULT_WAIT

DEFAULT_SAMPLE = Path("sample_data")
RAW_TABLES = ("transactions", "customers", "products")
_SET_HELP = ("a Config setting written to the workbook first, e.g. --set report_month=2025-01, --set 'csv_delimiter=;' "
             "or --set 'map.transactions.invoice_id=Invoice No' (repeatable; checked like the refresh checks it; "
             "if the command fails the workbook is left as it was)")


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "handler"):
        parser.print_help()
        return 2
    try:
        with small_pages():   # the whole command, reading the inputs included: see crm_xl.engines.pages
            return int(args.handler(args) or 0)
    except (CrmXlError, OSError) as exc:
        if args.debug:
            raise
        print(f"crm-xl: error: {_one_line(str(exc))}", file=sys.stderr)
        return 2
    except Exception as exc:
        book = getattr(args, "book", None)
        message = None if args.debug or book is None else _damaged_book(Path(book), exc)
        if message is None:
            raise
        print(f"crm-xl: error: {_one_line(message)}", file=sys.stderr)
        return 2


def _one_line(message: str) -> str:
    """A message as one line, whatever text from the user's files it quotes (a header with a line break)."""
    return " ".join(message.split()) if "\n" in message or "\r" in message else message


def _damaged_book(book: Path, exc: Exception) -> str | None:
    """The one line for what a damaged workbook raised past the readers' own checks (a part that no
    check reads first); None for anything else, which is a bug and keeps its traceback."""
    from crm_xl.workbook.untrusted import DAMAGED, damaged
    from crm_xl.workbook.zipio import WorkbookPackageError

    if isinstance(exc, WorkbookPackageError):
        return f"{book.name}: {exc}"
    return str(damaged(book, exc)) if isinstance(exc, DAMAGED) else None


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="crm-xl", description="CRM analytics for Excel: lifecycle "
                                     "states, value tiers and RFMT segments from transactions.")
    parser.add_argument("--version", action="version", version=f"crm-xl {__version__}")
    parser.add_argument("--debug", action="store_true", help="show the full traceback on errors")
    commands = parser.add_subparsers(title="commands")

    run = commands.add_parser("run", help="compute the output tables from three CSV or Parquet files")
    run.add_argument("--data", type=Path, default=DEFAULT_SAMPLE,
                     help="folder with transactions.csv, customers.csv, products.csv (default: sample_data)")
    for name in RAW_TABLES:
        run.add_argument(f"--{name}", type=Path, metavar="FILE",
                         help=f"CSV or Parquet file of the {name} table, instead of {name}.csv in --data")
    run.add_argument("--out", type=Path, default=Path("out"), help="folder for the output CSVs (default: out)")
    run.add_argument("--set", action="append", default=[], metavar="SETTING=VALUE",
                     help="a setting, e.g. --set report_month=2024-12, --set 'csv_delimiter=;' or "
                          "--set 'map.transactions.invoice_id=Invoice No' (repeatable; see docs/business_logic.md)")
    _engine_option(run)
    run.add_argument("--store", type=Path, metavar="DIR",
                     help="a history store folder (new, empty, or an earlier run's): the months it holds for the "
                          "same settings and inputs are reused, the ones computed are written to it as Parquet "
                          "(docs/history_store.md)")
    run.add_argument("--no-bom", action="store_true",
                     help="write the output CSVs without the UTF-8 byte-order mark (Excel needs it for accents)")
    _writer_options(run, force=False)
    run.set_defaults(handler=_run)

    sample = commands.add_parser("sample", help="generate the synthetic sample data as CSV files")
    sample.add_argument("--out", type=Path, default=DEFAULT_SAMPLE, help="folder to write (default: sample_data)")
    sample.add_argument("--customers", type=int, default=3000)
    sample.add_argument("--months", type=int, default=36)
    sample.add_argument("--end-month", default="2025-12")
    sample.add_argument("--transactions", type=int, default=None, help="aim for this many transaction lines")
    sample.add_argument("--seed", type=int, default=42)
    sample.add_argument("--clean", action="store_true", help="leave out the deliberate data-quality problems")
    sample.set_defaults(handler=_sample)

    template = commands.add_parser("template", help="build the Excel template (.xlsm) from workbook/vba and the layout")
    template.add_argument("--out", type=Path, default=Path("workbook") / "crm_xl.xlsm",
                          help="file to write (default: workbook/crm_xl.xlsm)")
    template.set_defaults(handler=_template)
    new = commands.add_parser("new", help="make a fresh workbook from the template")
    new.add_argument("book", type=Path, help="the .xlsm file to create")
    new.add_argument("--sample", action="store_true", help="fill Raw with the bundled sample data")
    new.add_argument("--force", action="store_true", help="replace the file if it exists")
    new.set_defaults(handler=_new)

    setup = commands.add_parser(
        "excel-setup", help="tell a workbook which Python Excel starts (xlwings.conf), for Refresh and CRM_",
        description="Write the interpreter lines of the workbook's xlwings.conf sheet: by default for the Python "
                    "running this command, on this machine's Excel (Windows or macOS). crm-xl new does this "
                    "itself on Windows and macOS.")
    setup.add_argument("book", type=Path, help="the workbook (.xlsm)")
    setup.add_argument("--platform", choices=("windows", "mac"), help="the Excel that opens the book (default: this "
                                                                      "machine's)")
    setup.add_argument("--python", metavar="PATH", help="the python(.exe) with crm-xl installed that Excel should "
                                                        "start (default: the one running this command)")
    _writer_options(setup)
    setup.set_defaults(handler=_holding_book(_excel_setup))
    doctor = commands.add_parser("doctor", help="check Python, crm-xl, xlwings and a workbook's xlwings.conf for "
                                               "live Excel, and say what to fix")
    doctor.add_argument("book", type=Path, nargs="?", help="a workbook (.xlsm) to check as well")
    doctor.set_defaults(handler=_doctor)

    load = commands.add_parser(
        "load", help="replace a workbook's Raw tables with CSV files",
        description="Replace each Raw table given (tbl_transactions, tbl_customers, tbl_products) with the rows of "
                    "a CSV file: the table's old rows are gone, not appended to. Every file is checked against "
                    "the input columns (after the Columns table and map.* settings) before the workbook is "
                    "touched: when one fails, nothing is written.")
    load.add_argument("book", type=Path, help="the workbook (.xlsm)")
    for name in RAW_TABLES:
        load.add_argument(f"--{name}", type=Path, metavar="FILE", help=f"CSV file whose rows replace tbl_{name}")
    load.add_argument("--set", action="append", default=[], metavar="SETTING=VALUE", help=_SET_HELP)
    _writer_options(load)
    load.set_defaults(handler=_holding_book(_load))

    refresh = commands.add_parser("refresh", help="recompute every output sheet of a workbook, headless")
    refresh.add_argument("book", type=Path, help="the workbook (.xlsm) to refresh in place")
    refresh.add_argument("--set", action="append", default=[], metavar="SETTING=VALUE", help=_SET_HELP)
    refresh.add_argument("--quiet", action="store_true", help="no progress lines")
    _engine_option(refresh)
    refresh.add_argument("--store", nargs="?", const="", metavar="DIR",
                         help="keep the history in a store and reuse its months: --store alone uses BOOK_history "
                              "beside the workbook, --store DIR that folder (docs/history_store.md)")
    refresh.add_argument("--allow-files-from", action="append", default=[], metavar="DIR",
                         help="a folder besides the workbook's own from which its Config sheet may name raw files "
                              "(transactions_file, ...; repeatable); a network share (\\\\server\\share) only "
                              "when named itself")
    _writer_options(refresh)
    refresh.set_defaults(handler=_holding_book(_refresh, refresh=True))
    calibrate = commands.add_parser(
        "calibrate", help="propose the tier thresholds that give the target tier shares on a workbook's data",
        description="Compute the workbook's tables and print the calibration: the six tier thresholds cut on the "
                    "data so that the tiered Active customers of the last calibration_months report months fall "
                    "into the tiers in the target_share_* proportions (docs/business_logic.md section 9.1). "
                    "Nothing is changed unless --apply is given.")
    calibrate.add_argument("book", type=Path, help="the workbook (.xlsm)")
    calibrate.add_argument("--apply", action="store_true",
                           help="write the proposed thresholds to the Config sheet and note the change in the Log "
                                "(refresh afterwards to see the tiers they give)")
    _writer_options(calibrate)
    calibrate.set_defaults(handler=_holding_book(_calibrate))
    powerbi = commands.add_parser(
        "powerbi", help="write a Power BI project (PBIP: TMDL model and report) that reads a workbook",
        description="Write a Power BI Project for a refreshed workbook: NAME.pbip, NAME.SemanticModel (every output "
                    "table typed, a calendar, label tables, relationships, measures) and NAME.Report (four pages). "
                    "Open NAME.pbip in Power BI Desktop and press Refresh.")
    powerbi.add_argument("book", type=Path, help="the workbook (.xlsm) Power BI will read")
    powerbi.add_argument("--out", type=Path, required=True, metavar="DIR",
                         help="the project folder: new, empty, or an earlier project (which is replaced)")
    powerbi.add_argument("--name", help="the project's name (default: the workbook's name without .xlsm)")
    powerbi.add_argument("--workbook-path", metavar="PATH",
                         help="WorkbookPath as Power BI will see it, e.g. a OneDrive or share path (default: the "
                              "workbook's full path here)")
    powerbi.add_argument("--history-path", metavar="PATH",
                         help="HistoryParquetPath (default: BOOK_customer_history.parquet beside the workbook, or "
                              "BOOK_history/customer_history with --history store)")
    powerbi.add_argument("--web", action="store_true",
                         help="the paths are https addresses of the files in OneDrive or SharePoint (Web.Contents: "
                              "the Power BI service refreshes them without a gateway); give --workbook-path")
    powerbi.add_argument("--history", choices=("auto", "workbook", "parquet", "store"), default="auto",
                         help="where customer_history is loaded from: store (every month of the history store a "
                              "refresh --store keeps beside the workbook) when there is one (auto), else parquet "
                              "(all months) when the refresh wrote "
                              "the file because the sheet is capped (auto, the default), or as given")
    powerbi.set_defaults(handler=_powerbi)
    for sub in (run, sample, template, new, setup, doctor, load, refresh, calibrate, powerbi):
        sub.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    return parser


def _engine_option(command: argparse.ArgumentParser) -> None:
    from crm_xl.engines import DEFAULT_ENGINE, ENGINES

    command.add_argument("--engine", choices=list(ENGINES), default=DEFAULT_ENGINE,
                         help=f"where the facts are computed (default: {DEFAULT_ENGINE}; duckdb and spark need "
                              "pip install 'crm-xl[duckdb]' or 'crm-xl[spark]'; the tables are the same, "
                              "see docs/engines.md)")


def _writer_options(command: argparse.ArgumentParser, *, force: bool = True) -> None:
    command.add_argument("--wait", type=_seconds, default=DEFAULT_WAIT, metavar="SECONDS",
                         help="how long to wait for another crm-xl command writing the same file before giving "
                              f"up (default {DEFAULT_WAIT:g})")
    if force:
        command.add_argument("--force", action="store_true",
                             help="write even when Excel or LibreOffice has the workbook open (its lock file "
                                  "~$BOOK or .~lock.BOOK# is beside it), e.g. a lock file a crash left behind")


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number of seconds (0 or more), got {text!r}")
    return value


def _holding_book(handler: Callable[[argparse.Namespace], int], *, refresh: bool = False
                  ) -> Callable[[argparse.Namespace], int]:
    """``handler`` run under the workbook's lock, from its first read to its last write (crm_xl.workbook.guard)."""
    def run(args: argparse.Namespace) -> int:
        from crm_xl.workbook.guard import changing

        with changing(args.book, force=args.force, wait=args.wait, refresh=refresh):
            return handler(args)

    return run


def parse_settings(pairs: Sequence[str]) -> dict[str, str]:
    """``["report_month=2024-12", ...]`` as a settings mapping."""
    settings = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise CrmXlError(f"--set expects SETTING=VALUE, got {pair!r}")
        settings[key.strip()] = value.strip()
    return settings


def _run(args: argparse.Namespace) -> int:
    from crm_xl.analyses.report import run
    from crm_xl.config import Config
    from crm_xl.core.partitions import plan_note
    from crm_xl.core.quality import source_rows
    from crm_xl.io import machine
    from crm_xl.io.csv import file_rows, is_parquet, read_raw_file, with_read_notes, write_tables
    from crm_xl.io.dialect import split_settings
    from crm_xl.io.files import MANIFEST, new_id
    from crm_xl.store import run_with_store

    started = time.perf_counter()
    options, settings = split_settings(parse_settings(args.set))
    config = Config.from_mapping(settings)
    paths = {name: Path(getattr(args, name) or args.data / f"{name}.csv") for name in RAW_TABLES}
    files = {name: read_raw_file(path, name, options, config.headers(name)) for name, path in paths.items()}
    raw = {name: frame for name, (frame, _) in files.items()}
    store_note, limit = "", machine.memory_limit()       # measured once: the plan it gave is then told
    if args.store is None:
        tables = run(**raw, config=config, today=machine.today(), memory_limit=limit, engine=args.engine)
    else:
        result = run_with_store(**raw, config=config, today=machine.today(), memory_limit=limit,
                                engine=args.engine, store=args.store, wait=args.wait)
        tables, store_note = result.tables, f"{result.plan.describe()}; store {args.store}"
    notes = [note for _, file_notes in files.values() for note in file_notes]
    tables = {**tables, "data_quality": with_read_notes(tables["data_quality"], notes)}
    csv_tables = [name for name, path in paths.items() if not is_parquet(path)]
    tables = {**tables, **source_rows(tables, file_rows(csv_tables))}   # rows as the CSV files' line numbers
    run_id = new_id()
    written = write_tables(tables, args.out, bom=not args.no_bom, wait=args.wait, run_id=run_id)
    print(summary_text(tables, time.perf_counter() - started))
    for note in (plan_note(tables, config, limit), store_note):
        if note:
            print(f"  {note}")
    print(f"Wrote {len(written)} tables to {args.out}/: {', '.join(p.name for p in written.values())} "
          f"(run {run_id}, listed with their sha256 in {MANIFEST})")
    return 0


def summary_text(tables: dict[str, pd.DataFrame], seconds: float) -> str:
    """A few lines a user reads after a run: month, customers, states, tiers, data quality."""
    snapshot = tables["customer_snapshot"]
    month = pd.Timestamp(snapshot["report_month"].iloc[0]).strftime("%Y-%m") if len(snapshot) else "-"
    history = tables["customer_history"]
    lines = [f"crm-xl {__version__}: report month {month}, {len(snapshot):,} customers, "
             f"{history['report_month'].nunique()} months of history ({len(history):,} rows) in {seconds:.1f} s"]
    for column in ("lifecycle_state", "value_tier", "rfm_segment"):
        counts = snapshot[column].value_counts(sort=False)
        shown = ", ".join(f"{name} {int(n):,}" for name, n in counts.items() if n)
        lines.append(f"  {column}: {shown}")
    quality = tables["data_quality"]
    warnings = quality[quality["severity"] == "warning"]
    if len(warnings):
        lines.append(f"  data quality: {len(warnings)} warnings ("
                     + "; ".join(f"{r.rule} {r.rows:,} in {r.table}" for r in warnings.itertuples()) + ")")
    else:
        lines.append("  data quality: no warnings")
    return "\n".join(lines)


def _sample(args: argparse.Namespace) -> int:
    from crm_xl.io.sample import generate, write_csv

    tables = generate(n_customers=args.customers, months=args.months, end_month=args.end_month, seed=args.seed,
                      target_transactions=args.transactions, messy=not args.clean)
    written = write_csv(tables, args.out)
    rows = ", ".join(f"{name} {len(frame):,}" for name, frame in tables.items())
    print(f"Wrote sample data to {args.out}/ ({rows}): {', '.join(Path(p).name for p in written.values())}")
    return 0


def _template(args: argparse.Namespace) -> int:
    from crm_xl.workbook.template import build_template

    path = build_template(args.out)
    print(f"Wrote the template {path} ({path.stat().st_size:,} bytes)")
    return 0



def _new(args: argparse.Namespace) -> int:
    from crm_xl.workbook.book import new_workbook
    from crm_xl.workbook.xlwings_conf import platform_of

    path = new_workbook(args.book, sample=args.sample, overwrite=args.force)
    print(f"Wrote {path}" + (" with the sample data in Raw" if args.sample else "") + f"; next: crm-xl refresh {path}")
    platform = platform_of()
    if platform is None:
        print(f"  Excel: on the Windows PC or Mac that opens it, run  crm-xl excel-setup {path.name}  with the Python "
              "that has crm-xl, so Refresh and the CRM_ functions find it")
    else:
        print(_write_interpreter(path, platform, sys.executable))
    return 0


def _excel_setup(args: argparse.Namespace) -> int:
    from crm_xl.workbook.xlwings_conf import platform_of

    platform = args.platform or platform_of()
    if platform is None:
        raise CrmXlError(f"excel-setup: this machine has no Excel for {sys.platform}; run it on the Windows PC or Mac "
                         "that opens the book, or give --platform windows|mac and --python PATH")
    if args.python is None and args.platform and args.platform != platform_of():
        raise CrmXlError("excel-setup: --platform names another machine: give --python, the path of its python")
    print(_write_interpreter(args.book, platform, args.python or sys.executable, force=args.force, wait=args.wait))
    return 0


def _doctor(args: argparse.Namespace) -> int:
    from crm_xl.excel.doctor import diagnose

    checks = diagnose(args.book)
    print("\n".join(check.line() for check in checks))
    problems = sum(not check.ok for check in checks)
    print("Ready for Excel." if not problems else f"{problems} thing(s) to fix (see FIX above).")
    return 0 if not problems else 1


def _write_interpreter(book: Path, platform: str, python: str, **writer: Any) -> str:
    from crm_xl.workbook.xlwings_conf import set_interpreter

    values = set_interpreter(book, platform, python, **writer)
    return f"  xlwings.conf of {book.name}: " + ", ".join(f"{k} = {v}" for k, v in values.items())


def _load(args: argparse.Namespace) -> int:
    from crm_xl.core.columns import contract_headers
    from crm_xl.io.csv import read_csv_file
    from crm_xl.workbook.book import load_raw, settings_with, with_settings

    paths = {name: getattr(args, name) for name in RAW_TABLES if getattr(args, name)}
    if not paths:
        raise CrmXlError("load: give at least one of --transactions, --customers, --products")
    values = parse_settings(args.set)
    config, options = settings_with(args.book, values)
    files = {name: read_csv_file(path, name, options, config.headers(name)) for name, path in paths.items()}
    for name, file in files.items():
        try:
            contract_headers(list(file.frame.columns), name, config)
        except InputError as exc:
            raise InputError(name, f"{file.path.name}: {exc.message}; nothing was loaded", exc.column,
                             exc.setting) from None
    warnings: list[str] = []
    with_settings(args.book, values, lambda: load_raw(args.book, {n: f.frame for n, f in files.items()}, config,
                                                      sources={n: f.path.name for n, f in files.items()},
                                                      warn=warnings.append))
    warnings += [str(note["message"]) for file in files.values() for note in file.notes()]
    for warning in warnings:
        print(f"crm-xl: warning: {warning}", file=sys.stderr)
    print(f"Loaded into {args.book}: " + ", ".join(f"{n} {len(f.frame):,} rows{f.dialect_note()}"
                                                   for n, f in files.items()))
    return 0


def _refresh(args: argparse.Namespace) -> int:
    from crm_xl.workbook.book import settings_with, with_settings
    from crm_xl.workbook.refresh import refresh_workbook, store_beside

    started = time.perf_counter()
    progress = None if args.quiet else (lambda message: print(f"  {message} ...", file=sys.stderr, flush=True))
    values = parse_settings(args.set)
    if values:
        settings_with(args.book, values)
    store = None if args.store is None else Path(args.store) if args.store else store_beside(args.book)
    result = with_settings(args.book, values, lambda: refresh_workbook(args.book, progress=progress,
                                                                        allow_files_from=args.allow_files_from,
                                                                        engine=args.engine, store=store))
    print(summary_text(result.tables, time.perf_counter() - started))
    if result.memory_note:
        print(f"  {result.memory_note}")
    if result.store_note:
        print(f"  {result.store_note}; store {store}")
    if result.history_file is not None:
        print(f"  customer_history: the sheet keeps the latest months; all months in {result.history_file}")
    print(f"Refreshed {args.book} (refresh id {result.refresh_id})")
    return 0


def _calibrate(args: argparse.Namespace) -> int:
    from crm_xl.workbook.book import with_settings
    from crm_xl.workbook.reader import read_inputs
    from crm_xl.workbook.refresh import compute, log_change

    tables, _ = compute(read_inputs(args.book))
    print(calibration_text(tables))
    proposal = tables["calibration"]
    changed = {row.setting: row.proposed for row in proposal.itertuples() if row.proposed != row.current}
    if not args.apply:
        print(f"Nothing was changed: crm-xl calibrate {args.book} --apply writes the proposed thresholds to Config")
        return 0
    if not changed:
        print("The current thresholds are the proposed ones: nothing to change")
        return 0
    current = proposal.set_index("setting")["current"]
    text = "calibrate --apply: " + ", ".join(f"{key} {_number(current[key])} -> {_number(value)}"
                                             for key, value in changed.items())
    # the Config values and the Log line are written together or not at all
    with_settings(args.book, {key: _number(value).replace(",", "") for key, value in changed.items()},
                  lambda: log_change(args.book, text), force=args.force, wait=args.wait)
    print(f"Wrote to the Config sheet of {args.book} (noted in the Log): {text.split(': ', 1)[1]}; "
          f"next: crm-xl refresh {args.book}")
    return 0


def _number(value: float) -> str:
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.15g}"


def calibration_text(tables: dict[str, pd.DataFrame]) -> str:
    """The calibration tables as the terminal shows them: thresholds, then the tier mix."""
    thresholds, mix = tables["calibration"], tables["calibration_mix"]
    lines = [f"{'setting':<12}{'current':>12}{'proposed':>12}  rule"]
    lines += [f"{r.setting:<12}{_number(r.current):>12}{_number(r.proposed):>12}  {r.rule}"
              for r in thresholds.itertuples()]
    total = int(mix["current_count"].sum())
    lines += ["", f"Tier mix of {total:,} tiered Active customer-months (Passive left out):",
              f"{'tier':<10}{'target':>8}{'current':>9}{'proposed':>10}  note"]
    lines += [f"{r.value_tier:<10}{r.target_share:>8.1%}{r.current_share:>9.1%}{r.proposed_share:>10.1%}  {r.note}"
              for r in mix.itertuples()]
    return "\n".join(lines)


def _powerbi(args: argparse.Namespace) -> int:
    from crm_xl.config import Config
    from crm_xl.powerbi.build import build_model
    from crm_xl.powerbi.project import project_files, write_project
    from crm_xl.workbook.guard import sidecar_paths
    from crm_xl.workbook.reader import read_settings
    from crm_xl.workbook.refresh import store_beside

    book = Path(args.book)
    if args.web and not (args.workbook_path or "").lower().startswith("https://"):
        raise CrmXlError("powerbi: --web needs --workbook-path https://... (the workbook's address in OneDrive or "
                         "SharePoint: its Details pane, Path, Copy), and --history-path likewise for a capped history")
    if not book.is_file():
        raise CrmXlError(f"powerbi: no workbook at {book}: give the .xlsm file that crm-xl refresh writes")
    history = _history_source(book, args.history, web=args.web)
    settings, _, _ = read_settings(book)
    # the book's own segment map, read as the refresh reads it (names, cells, and the notes after them)
    segments = tuple(name for name, _ in Config.from_mapping({"segment_map": settings["segment_map"]}).segment_map) \
        if settings.get("segment_map") is not None else None
    parquet = store_beside(book) / "customer_history" if history == "store" else sidecar_paths(book.resolve())[0]
    use_parquet = history != "workbook"
    model = build_model(args.workbook_path or str(book.resolve()), args.history_path or str(parquet),
                        use_parquet=use_parquet, segments=segments, web=args.web)
    name = args.name or book.stem
    out = write_project(args.out, project_files(name, model))
    print(f"Wrote the Power BI project {out / (name + '.pbip')}: open it in Power BI Desktop and press Refresh")
    shown = {"store": "the history store (every month it holds)", "parquet": "the Parquet file (all months)",
             "workbook": "the workbook"}[history]
    print(f"  WorkbookPath = {args.workbook_path or book.resolve()}; customer_history from {shown}")
    return 0


def _history_source(book: Path, choice: str, *, web: bool) -> str:
    """Where Power BI reads customer_history: as chosen, or (auto) the richest source beside the book
    (a store is a folder, which the project reads from a disk or share only, not online)."""
    from crm_xl.store.history import MANIFEST
    from crm_xl.workbook.guard import sidecar_paths
    from crm_xl.workbook.refresh import store_beside

    if choice == "store" and web:
        raise CrmXlError("powerbi: --history store reads a folder, which a --web project cannot (Power BI reads "
                         "one file by its address): use --history parquet or workbook with --web")
    if choice != "auto":
        return choice
    if not web and (store_beside(book) / MANIFEST).is_file():
        return "store"
    return "parquet" if sidecar_paths(book.resolve())[0].exists() else "workbook"


if __name__ == "__main__":
    sys.exit(main())
