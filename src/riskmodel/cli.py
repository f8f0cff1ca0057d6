"""The ``riskmodel`` command line: it parses arguments, calls one stage of
:mod:`riskmodel.pipeline` and prints what it did. Nothing else lives here.

Heavy libraries are imported inside the commands, so ``riskmodel --help`` answers at once.
Exit codes: 0 success, 1 a quality limit was exceeded (the reject rate), 2 input that cannot
be used (a file or column that breaks the contract, a bad option or params value; nothing is
written).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from riskmodel.params import Params

app = typer.Typer(
    name="riskmodel",
    help="Buyer-default risk scoring for trade credit insurance and B2B receivables.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

DataArg = Annotated[Path, typer.Argument(
    help="A book (from `riskmodel validate --out`) or a raw folder with invoices, buyers and "
         "events tables (validated first).")]
ObservedUntil = Annotated[
    dt.datetime | None,
    typer.Option("--observed-until", formats=["%Y-%m-%d"],
                 help="Date the raw data are known as of (default: data.observed_until, else "
                      "the latest accepted issue, paid, dispute or event date)."),
]
MappingOpt = Annotated[
    Path | None,
    typer.Option("--mapping", help="YAML mapping of a real export onto the contract "
                                   "(default: data.mapping)."),
]
ParamsOpt = Annotated[
    Path | None,
    typer.Option("--params", help="params.yaml (default: ./params.yaml when present, else the "
                                  "built-in defaults)."),
]
AsOfOpt = Annotated[
    str | None,
    typer.Option("--as-of", help="Comma-separated as-of dates YYYY-MM-DD (default: the "
                                 "snapshot dates of params)."),
]


def _fail(message: str, code: int) -> typer.Exit:
    typer.secho(f"error: {message}", err=True, fg=typer.colors.RED)
    return typer.Exit(code)


def _params_path(path: Path | None) -> Path | None:
    """--params, else ./params.yaml when there is one, else None (built-in defaults)."""
    if path is not None:
        return path
    default = Path("params.yaml")
    return default if default.is_file() else None


def _project_dir(path: Path | None) -> Path:
    """Where the MLflow store lives: the folder of the params file in use, else the cwd."""
    found = _params_path(path)
    return (found.resolve().parent if found is not None else Path.cwd())


def _params(path: Path | None) -> Params:
    from riskmodel.params import ParamsError, load_params

    try:
        return load_params(_params_path(path))
    except ParamsError as exc:
        raise _fail(str(exc), 2) from exc


def _date(value: dt.datetime | None) -> dt.date | None:
    return value.date() if value is not None else None


def _dates(text: str | None) -> list[dt.date] | None:
    if not text:
        return None
    try:
        return sorted({dt.date.fromisoformat(d.strip()) for d in text.split(",") if d.strip()})
    except ValueError as exc:
        raise _fail(f"--as-of: {exc} (dates are YYYY-MM-DD, comma-separated)", 2) from exc


@contextlib.contextmanager
def _stage() -> Iterator[Callable[[str, int, int], None]]:
    """A progress bar for a stage (on stderr, only on a terminal), and the errors of the
    library as exit codes: contract, params and pipeline problems 2, the reject limit 1."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    from riskmodel.data.book import BookError
    from riskmodel.data.contract import ContractError
    from riskmodel.params import ParamsError
    from riskmodel.pipeline import PipelineError, RejectLimitError

    console = Console(stderr=True)
    tasks: dict[str, Any] = {}
    with Progress("[progress.description]{task.description}", BarColumn(),
                  MofNCompleteColumn(), TimeElapsedColumn(), console=console,
                  transient=True, disable=not console.is_terminal) as bar:

        def tick(what: str, done: int, total: int) -> None:
            if what not in tasks:
                tasks[what] = bar.add_task(what, total=total)
            bar.update(tasks[what], completed=done, total=total)

        try:
            yield tick
        except RejectLimitError as exc:
            raise _fail(str(exc), 1) from exc
        except (ContractError, ParamsError, PipelineError, BookError) as exc:
            raise _fail(str(exc), 2) from exc
        except ValueError as exc:
            # a damaged model file; looked up only if the model module was loaded (a stage
            # that loads no model does not import LightGBM for this)
            model = sys.modules.get("riskmodel.modeling.model")
            if model is not None and isinstance(exc, model.DamagedModelError):
                raise _fail(str(exc), 2) from exc
            raise
        except OSError as exc:  # a path that cannot be read or written
            raise _fail(_os_message(exc), 2) from exc
        except Exception as exc:
            # the tracking server refused (no permission, wrong credentials) or failed: its
            # message, not a traceback; looked up by module so the CLI never imports MLflow
            if type(exc).__module__.startswith("mlflow"):
                text = str(exc).strip().splitlines()
                raise _fail(f"MLflow: {text[0] if text else type(exc).__name__}", 2) from exc
            raise


def _os_message(exc: OSError) -> str:
    """An operating-system error in the words of a path and what went wrong."""
    where = exc.filename if exc.filename is not None else ""
    what = exc.strerror or str(exc)
    return f"{where}: {what}" if where else what


@app.command()
def validate(
    raw_dir: Annotated[Path, typer.Argument(help="Folder with invoices, buyers and events "
                                                 "tables (and optionally exposures).")],
    out: Annotated[Path | None, typer.Option(
        "--out", help="Write the validated book here (a folder; an existing book is "
                      "replaced).")] = None,
    observed_until: ObservedUntil = None,
    mapping: MappingOpt = None,
    rejects: Annotated[Path | None, typer.Option(
        "--rejects", help="Folder for <table>.parquet of rejected rows.")] = None,
    report: Annotated[Path | None, typer.Option(
        "--report", help="Write the counts as JSON here.")] = None,
    max_reject_rate: Annotated[float | None, typer.Option(
        "--max-reject-rate", min=0.0, max=1.0,
        help="Fail above this share (default: data.max_reject_rate).")] = None,
    params: ParamsOpt = None,
) -> None:
    """Check a raw dataset against the data contract, set bad rows aside with their reason,
    and write the accepted rows as a book that every later stage reads."""
    import tempfile

    from riskmodel import pipeline
    from riskmodel.reporting import print_validation

    prm = _params(params)
    if max_reject_rate is not None:
        prm = prm.model_copy(update={"data": prm.data.model_copy(
            update={"max_reject_rate": max_reject_rate})})
    with _stage() as tick, tempfile.TemporaryDirectory() as tmp:
        target = out if out is not None else Path(tmp) / "book"
        result = pipeline.validate(raw_dir, target, prm, mapping=mapping,
                                   observed_until=_date(observed_until), rejects=rejects,
                                   report=report, progress=tick)
    print_validation(result.report)
    if out is not None:
        buckets = f"{result.n_buckets} bucket{'s' if result.n_buckets != 1 else ''}"
        typer.echo(f"wrote the book {out} ({buckets}, observed until "
                   f"{result.observed_until})")
    if result.over_limit:
        raise _fail(f"rejected share above the limit {prm.data.max_reject_rate:.2%}: "
                    f"{', '.join(result.over_limit)}", 1)


@app.command()
def synth(
    out: Annotated[Path, typer.Option("--out", help="Folder to write the raw tables to.")],
    buyers: Annotated[int, typer.Option("--buyers", min=1, help="Number of buyers.")] = 5000,
    start: Annotated[
        dt.datetime, typer.Option("--start", formats=["%Y-%m-%d"], help="First day.")
    ] = dt.datetime(2020, 1, 1),
    end: Annotated[
        dt.datetime, typer.Option("--end", formats=["%Y-%m-%d"], help="Last day (observed).")
    ] = dt.datetime(2024, 12, 31),
    seed: Annotated[int, typer.Option("--seed", help="Random seed.")] = 0,
    truth_dates: Annotated[
        str | None,
        typer.Option("--truth-dates", help="Comma-separated as-of dates (default: quarter ends)."),
    ] = None,
    chunk_buyers: Annotated[
        int, typer.Option("--chunk-buyers", min=1, help="Buyers per Parquet part.")
    ] = 10_000,
    cycles: Annotated[bool, typer.Option(
        "--cycles/--no-cycles", help="Business cycles in the industry factors.")] = True,
    shock: Annotated[list[str] | None, typer.Option(
        "--shock", help="Industry downturn INDUSTRY:YYYY-MM-DD[:SIZE], a surprise drop of the "
                        "distance to default by SIZE (default 0.5); repeatable.")] = None,
) -> None:
    """Write a synthetic buyer world (contract tables plus truth.parquet) with known PDs."""
    from riskmodel.data.synth import Shock, SynthConfig, write_world

    dates = None
    if truth_dates:
        try:
            dates = [dt.date.fromisoformat(d.strip()) for d in truth_dates.split(",")
                     if d.strip()]
        except ValueError as exc:
            raise _fail(f"--truth-dates: {exc} (dates are YYYY-MM-DD, comma-separated)",
                        2) from exc
    try:
        shocks = tuple(Shock.parse(text) for text in shock or [])
        cfg = SynthConfig(
            n_buyers=buyers, start=start.date(), end=end.date(), seed=seed, truth_dates=dates,
            chunk_buyers=chunk_buyers, cycles=cycles, shocks=shocks,
        )
    except ValueError as exc:
        raise _fail(str(exc), 2) from exc
    try:
        stats = write_world(cfg, out, progress=True)
    except OSError as exc:
        raise _fail(_os_message(exc), 2) from exc
    typer.echo(
        f"wrote {stats['buyers']:,} buyers, {stats['invoices']:,} invoices, "
        f"{stats['events']:,} events, {stats['truth']:,} truth rows to {out}"
    )


@app.command()
def features(
    data: DataArg,
    out: Annotated[Path, typer.Option("--out", help="Parquet file to write (the peer context "
                                                    "goes beside it, X.peers.parquet).")],
    as_of: AsOfOpt = None,
    buyers: Annotated[Path | None, typer.Option(
        "--buyers", help="Only these buyers: a text file, one buyer id a line.")] = None,
    peers: Annotated[Path | None, typer.Option(
        "--peers", help="The peer context of an earlier run (X.peers.parquet); default: "
                        "computed from the whole book.")] = None,
    params: ParamsOpt = None,
    observed_until: ObservedUntil = None,
    mapping: MappingOpt = None,
) -> None:
    """Point-in-time features: one row per (buyer, as-of date) with an invoice by then."""
    from riskmodel import pipeline

    prm = _params(params)
    dates = _dates(as_of)
    with _stage() as tick:
        ids = pipeline.read_buyer_ids(buyers) if buyers is not None else None
        with pipeline.open_book(data, prm, mapping=mapping,
                                observed_until=_date(observed_until), progress=tick) as book:
            res = pipeline.features(book, out, prm, dates=dates, buyers=ids, peers=peers,
                                    progress=tick)
    typer.echo(f"wrote {res.rows:,} rows x {res.columns} columns for {len(res.dates)} as-of "
               f"dates to {res.path} (peer context: {res.peers_path})")


@app.command()
def labels(
    data: DataArg,
    out: Annotated[Path, typer.Option("--out", help="Parquet file to write.")],
    as_of: AsOfOpt = None,
    params: ParamsOpt = None,
    observed_until: ObservedUntil = None,
    mapping: MappingOpt = None,
) -> None:
    """Contract labels: in_default at A, and bad within (A, A + horizon] (null if unobserved)."""
    from riskmodel import pipeline

    prm = _params(params)
    dates = _dates(as_of)
    with _stage() as tick, pipeline.open_book(data, prm, mapping=mapping,
                                              observed_until=_date(observed_until),
                                              progress=tick) as book:
        res = pipeline.labels(book, out, prm, dates=dates, progress=tick)
    rate = f"bad rate {res.bad_rate:.2%}" if res.labelled else "no outcome window observed yet"
    typer.echo(f"wrote {res.rows:,} rows ({res.labelled:,} labelled, {rate}) to {res.path}")


@app.command()
def train(
    data: DataArg,
    out: Annotated[Path, typer.Option("--out", help="MLflow pyfunc model directory to write.")],
    params: ParamsOpt = None,
    features_path: Annotated[Path | None, typer.Option(
        "--features", help="Features from `riskmodel features` (default: built from DATA).")
    ] = None,
    labels_path: Annotated[Path | None, typer.Option(
        "--labels", help="Labels from `riskmodel labels` (default: built from DATA).")] = None,
    register: Annotated[bool, typer.Option(
        "--register/--no-register", help="Log and register in MLflow.")] = True,
) -> None:
    """Train the calibrated LightGBM PD model; log it to MLflow as the new challenger."""
    from riskmodel import pipeline

    prm = _params(params)
    with _stage() as tick:
        res = pipeline.train(data, out, prm, features_path=features_path,
                             labels_path=labels_path, register=register,
                             project_dir=_project_dir(params), progress=tick)
    meta = res.metadata
    refit = meta.get("refit")
    if refit:
        typer.echo(f"trained on {refit['rows']:,} rows of {len(refit['dates'])} labelled as-of "
                   f"dates (refit; the holdout model behind the test figures: "
                   f"{meta['split']['train']['rows']:,} rows, {meta['split']['kind']}), "
                   f"{meta['best_iteration']} trees, {meta['n_leaves_total']} leaves -> {out}")
    else:
        typer.echo(f"trained on {meta['split']['train']['rows']:,} rows "
                   f"({meta['split']['kind']}), {meta['best_iteration']} trees, "
                   f"{meta['n_leaves_total']} leaves -> {out}")
    for note in meta.get("notes", []):
        typer.echo(f"note: {note}")
    left_out = [e["feature"] for e in meta.get("excluded_features", [])]
    if left_out:
        typer.echo(f"left out of learning ({len(left_out)}): {', '.join(left_out)} "
                   "(see excluded_features in training.json)")
    if meta.get("hit_tree_cap"):
        typer.secho("warning: boosting stopped at train.n_estimators, not by early stopping: "
                    "the model may be under-fit (raise train.n_estimators; the learning "
                    "rate was already doubled up to three times)",
                    err=True, fg=typer.colors.YELLOW)
    reg = res.registered
    if reg is not None:
        what = "registered" if reg.new_version else "identical to the registered"
        typer.echo(f"{what} {reg.model_name} version {reg.version}, alias challenger "
                   f"(run {reg.run_id})")


#: the most domain warnings a command prints (the rest are counted)
DOMAIN_LINES = 10


def _domain_warnings(warnings: list[tuple[str, Any]] | None, no_profile: str) -> None:
    """Each (prefix, DomainWarning) as a yellow ``warning:`` line on stderr, at most
    :data:`DOMAIN_LINES` of them and a count of the rest; None: the model has no profile,
    which ``no_profile`` says once."""
    def warn(text: str) -> None:
        typer.secho(f"warning: {text}", err=True, fg=typer.colors.YELLOW)

    if warnings is None:
        warn(no_profile)
        return
    for prefix, w in warnings[:DOMAIN_LINES]:
        warn(f"{prefix}{w.message}")
    rest = len(warnings) - DOMAIN_LINES
    if rest > 0:
        warn(f"... and {rest} more outside the training domain")


@app.command()
def evaluate(
    model_dir: Annotated[Path, typer.Argument(help="Model directory from `riskmodel train`.")],
    features_path: Annotated[Path, typer.Option("--features", help="Features parquet.")],
    labels_path: Annotated[Path, typer.Option("--labels", help="Labels parquet.")],
    params: ParamsOpt = None,
    out_dir: Annotated[Path, typer.Option("--out-dir", help="Folder for tables and plots.")
                       ] = Path("reports"),
    metrics_path: Annotated[Path, typer.Option("--metrics", help="JSON metrics file (DVC "
                                                                 "metrics).")
                            ] = Path("metrics.json"),
    truth: Annotated[Path | None, typer.Option(
        "--truth", help="truth.parquet of a synthetic world: adds the oracle AUC (default: "
                        "evaluate.truth).")] = None,
    log: Annotated[bool, typer.Option("--log/--no-log", help="Log to the MLflow run.")] = True,
) -> None:
    """Validation report on the out-of-time test set; logged to the model's MLflow run."""
    from riskmodel import pipeline
    from riskmodel.reporting import print_evaluation

    prm = _params(params)
    with _stage() as tick:
        tick("evaluate", 0, 1)
        res = pipeline.evaluate(model_dir, features_path, labels_path, prm, out_dir=out_dir,
                                metrics_path=metrics_path, truth=truth, log=log,
                                project_dir=_project_dir(params))
    print_evaluation(res.evaluation)
    m = res.evaluation.metrics
    typer.echo(f"test AUC {m['test_auc']:.4f}, ECE {m['test_ece']:.4f}; wrote "
               f"{len(res.files)} files to {out_dir} and {res.metrics_path}")
    _domain_warnings(None if res.domain is None else [("test set: ", w) for w in res.domain],
                     "the model has no domain profile (it was saved without one): the test "
                     "set was not checked against the training domain (retrain to add one)")


@app.command()
def promote(
    params: ParamsOpt = None,
    model_dir: Annotated[Path | None, typer.Option(
        "--model", help="The challenger's model directory (with --features and --labels: "
                        "the champion is re-scored on its test set).")] = None,
    features_path: Annotated[Path | None, typer.Option("--features",
                                                       help="Features parquet.")] = None,
    labels_path: Annotated[Path | None, typer.Option("--labels", help="Labels parquet.")
                           ] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Write the decision as JSON.")
                   ] = None,
    strict: Annotated[bool, typer.Option(
        "--strict", help="Exit 1 when the challenger fails a gate.")] = False,
) -> None:
    """Move alias champion to the challenger if it passes the gates in params."""
    from riskmodel import pipeline

    prm = _params(params)
    given = [x is not None for x in (model_dir, features_path, labels_path)]
    if any(given) and not all(given):
        raise _fail("give --model, --features and --labels together (or none)", 2)
    with _stage():
        decision = pipeline.promote(prm, model_dir=model_dir, features_path=features_path,
                                    labels_path=labels_path, out=out,
                                    project_dir=_project_dir(params))
    for g in decision.gates:
        typer.echo(f"  {'pass' if g['passed'] else 'FAIL'}  {g['gate']}: {g['detail']}")
    name = prm.registry.model_name
    if decision.promoted:
        typer.echo(f"{name} version {decision.challenger} is the champion")
    else:
        failed = ", ".join(g["gate"] for g in decision.failed())
        typer.echo(f"{name} version {decision.challenger} not promoted: failed {failed}")
        if strict:
            raise typer.Exit(1)


@app.command()
def backtest(
    data: DataArg,
    cuts: Annotated[int | None, typer.Option(
        "--cuts", min=1, help="How many of the last snapshot dates with an observed outcome "
                              "window to cut at (default: backtest.cuts).")] = None,
    out_dir: Annotated[Path | None, typer.Option(
        "--out-dir", help="Write backtest.csv and backtest.json here.")] = None,
    truth: Annotated[Path | None, typer.Option(
        "--truth", help="truth.parquet of a synthetic world: adds the oracle figures "
                        "(default: evaluate.truth).")] = None,
    params: ParamsOpt = None,
) -> None:
    """Walk-forward backtest: train on the book as it stood at each cut, judge the next year."""
    from rich.console import Console
    from rich.table import Table

    from riskmodel import pipeline

    prm = _params(params)
    with _stage() as tick, pipeline.open_book(data, prm, progress=tick) as book:
        res = pipeline.backtest(book, prm, cuts=cuts or prm.backtest.cuts, truth=truth,
                                out_dir=out_dir,
                                progress=tick)
    table = Table(title="Walk-forward backtest")
    cols = ["cut", "buyers", "bad_rate", "mean_pd", "pd_to_observed", "auc", "ece",
            "auc_to_oracle", "pd_to_true"]
    for c in cols:
        table.add_column(c, justify="right")
    for r in res.table.to_dict("records"):
        table.add_row(*[f"{r[c]:,}" if c == "buyers" else
                        (f"{r[c]:.4f}" if isinstance(r[c], float) else str(r[c])) for c in cols])
    console = Console()
    console.width = max(console.width, 120)  # nine columns: never cut in a log
    console.print(table)
    typer.echo(f"backtest over {len(res.table)} cut(s)"
               + (f"; wrote {', '.join(str(f) for f in res.files)}" if res.files else ""))
    _domain_warnings(None if res.domain is None else
                     [(f"cut {cut}: ", w) for cut, ws in res.domain.items() for w in ws],
                     "the models trained at the cuts have no domain profile: the buyers scored "
                     "there were not checked against the training domain")


@app.command()
def report(
    explain_dir: Annotated[Path, typer.Option(
        "--explain-dir", help="The folder written by `riskmodel explain` (scores, "
                              "contributions, reasons).")],
    book: Annotated[Path, typer.Option(
        "--book", help="The book the explanations were made from (industry, country and "
                       "payment histories).")],
    out: Annotated[Path, typer.Option("--out", help="HTML file to write.")],
    previous: Annotated[Path | None, typer.Option(
        "--previous", help="The explain folder of an earlier run: adds grade and PD changes "
                           "and marks new buyers.")] = None,
    detail_buyers: Annotated[int, typer.Option(
        "--detail-buyers", min=0, help="Payment histories for this many of the riskiest "
                                       "buyers.")] = 500,
    buyers: Annotated[Path | None, typer.Option(
        "--buyers", help="Payment histories for these buyers too: a text file, one buyer id "
                         "a line.")] = None,
    log_run: Annotated[str | None, typer.Option(
        "--log-run", help="Log the report to this MLflow run: a model directory (its "
                          "registry.json names the run) or a run id.")] = None,
    limits: Annotated[Path | None, typer.Option(
        "--limits", help="The output of `riskmodel limits --out`: adds the credit limits by "
                         "decision and the largest reductions, declines and "
                         "referrals.")] = None,
    views: Annotated[Path | None, typer.Option(
        "--views", help="The --views folder of `riskmodel limits`: adds expected loss by "
                        "grade, industry and country, concentration and the policy's "
                        "economics.")] = None,
    watch: Annotated[Path | None, typer.Option(
        "--watch", help="The watch list of `riskmodel watch --out` (its .migration.csv, "
                        ".psi.csv and .summary.json beside it): adds the watch list, the "
                        "grade migration and the PSI.")] = None,
    params: ParamsOpt = None,
) -> None:
    """The analyst report: one offline HTML file with the portfolio, the buyers and why."""
    from riskmodel import pipeline

    prm = _params(params)
    with _stage() as tick:
        ids = pipeline.read_buyer_ids(buyers) if buyers is not None else None
        run_id = pipeline.run_id_of(log_run) if log_run is not None else None
        with pipeline.open_book(book, prm, progress=tick) as opened:
            res = pipeline.report(opened, explain_dir, out, previous=previous,
                                  detail_buyers=detail_buyers, buyers=ids, log_run_id=run_id,
                                  project_dir=_project_dir(params), limits=limits,
                                  views=views, watch=watch)
    sections = f"; with {', '.join(res.sections)}" if res.sections else ""
    typer.echo(f"wrote the report of {res.buyers:,} buyers (payment histories of "
               f"{res.histories:,}{sections}) to {res.path} ({res.size / 1e6:.1f} MB)")
    if res.logged_run is not None:
        typer.echo(f"logged it to MLflow run {res.logged_run} (artifact report/{res.path.name})")


@app.command()
def explain(
    model_dir: Annotated[Path, typer.Option(
        "--model", help="Model directory from `riskmodel train`.")],
    features_path: Annotated[Path, typer.Option(
        "--features", help="Features parquet from `riskmodel features`.")],
    out: Annotated[Path, typer.Option(
        "--out", help="Folder to write scores, contributions, reasons, importance and plots "
                      "to (an earlier explain output there is replaced).")],
    buyers: Annotated[str | None, typer.Option(
        "--buyers", help="Comma-separated buyer ids: a waterfall plot for each.")] = None,
    top: Annotated[int, typer.Option("--top", min=1, help="Reasons per buyer.")] = 4,
    as_of: Annotated[dt.datetime | None, typer.Option(
        "--as-of", formats=["%Y-%m-%d"],
        help="The as-of date to explain (default: the latest of the features file).")] = None,
) -> None:
    """Score the buyers of one as-of date and explain each PD: contributions, reasons in
    words, importance and plots."""
    from riskmodel import pipeline

    ids = [b.strip() for b in buyers.split(",") if b.strip()] if buyers else None
    with _stage() as tick:
        res = pipeline.explain(model_dir, features_path, out, buyers=ids, top=top,
                               as_of=_date(as_of), progress=tick)
    took = ", ".join(f"{k} {v:.1f}s" for k, v in res.seconds.items())
    typer.echo(f"explained {res.rows:,} buyers at {res.as_of} ({res.reasons:,} reasons; "
               f"{took}); wrote {len(res.files)} files to {res.out}")


@app.command()
def score(
    data: DataArg,
    out: Annotated[Path, typer.Option(
        "--out", help="Folder to write the scores to (a Parquet dataset; an earlier scoring "
                      "output there is replaced, only once every buyer is scored).")],
    as_of: Annotated[dt.datetime | None, typer.Option(
        "--as-of", formats=["%Y-%m-%d"],
        help="The as-of date (default: the data's observed_until).")] = None,
    model: Annotated[str | None, typer.Option(
        "--model", help="A model folder (`riskmodel train --out`), runs:/<run id>/<path> or "
                        "models:/<name>@<alias> (default: models:/<registry.model_name>"
                        "@champion).")] = None,
    explain: Annotated[int | None, typer.Option(
        "--explain", min=0, max=20,
        help="Reasons per buyer: codes and sentences (default: score.reasons in params; "
             "0: none).")] = None,
    engine: Annotated[str, typer.Option(
        "--engine", help="local (this process) or spark (Apache Spark executors).")] = "local",
    spark_master: Annotated[str | None, typer.Option(
        "--spark-master", help="Spark master URL, e.g. 'local[2]' (default: the session of "
                               "spark-submit, else local[*]).")] = None,
    months_back: Annotated[int | None, typer.Option(
        "--months-back", min=0,
        help="Score at the data's observed_until this many calendar months earlier "
             "(instead of --as-of).")] = None,
    reference: Annotated[Path | None, typer.Option(
        "--reference", help="An earlier scoring output of the whole book at the same as-of "
                            "date: use its peer and cycle context and portfolio medians (to "
                            "score a few new buyers as the book's run scored them).")] = None,
    params: ParamsOpt = None,
    observed_until: ObservedUntil = None,
    mapping: MappingOpt = None,
) -> None:
    """Score every buyer at one as-of date: PD, grade, reasons and lineage, one row per
    buyer, streamed a bucket at a time."""
    from riskmodel import pipeline

    prm = _params(params)
    with _stage() as tick:
        with pipeline.open_book(data, prm, mapping=mapping,
                                observed_until=_date(observed_until), progress=tick) as book:
            res = pipeline.score(book, out, prm, model_uri=model, as_of=_date(as_of),
                                 top=explain, engine=engine, spark_master=spark_master,
                                 reference=reference, months_back=months_back,
                                 project_dir=_project_dir(params),
                                 progress=tick)
    for warning in res.warnings:
        typer.echo(f"warning: {warning}", err=True)
    by_status = res.counts.groupby("status")["buyers"].sum()
    statuses = ", ".join(f"{s} {int(by_status.get(s, 0)):,}"
                         for s in ("scored", "in_default", "no_recent_history"))
    graded = res.counts.dropna(subset=["grade"])
    grades = graded.groupby("grade")["buyers"].sum()
    order = sorted(grades.index, key=lambda g: (not str(g).isdigit(),
                                                int(g) if str(g).isdigit() else 0))
    shown = " ".join(f"{g}:{int(grades[g]):,}" for g in order)
    lineage = res.lineage
    version = (f"{lineage['model_name']} v{lineage['model_version']}"
               if lineage.get("model_version") else "an unregistered model")
    typer.echo(f"scored {res.buyers:,} buyers at {res.as_of} with {version} ({res.engine}): "
               f"{statuses}; grades {shown}; {res.wall:.1f} s, "
               f"{res.per_second:,.0f} buyers/s; wrote {res.out}")


@app.command()
def watch(
    previous: Annotated[Path, typer.Option(
        "--previous", help="The earlier scoring output (`riskmodel score --out`).")],
    current: Annotated[Path, typer.Option(
        "--current", help="The later scoring output, of a later as-of date.")],
    book: Annotated[Path, typer.Option(
        "--book", help="The book the current run was scored from: overdue invoices at both "
                       "dates and open receivables.")],
    out: Annotated[Path, typer.Option(
        "--out", help="The watch list, a .parquet or .csv file; <stem>.migration.csv, "
                      "<stem>.psi.csv and <stem>.summary.json are written beside it.")],
    delay: Annotated[Path | None, typer.Option(
        "--delay", help="A scoring output of the 30-day payment-delay model at the current "
                        "as-of date.")] = None,
    exposures: Annotated[Path | None, typer.Option(
        "--exposures", help="Credit limits: a Parquet or CSV file with buyer_id and "
                            "current_limit; the exposure at risk is then PD x limit.")] = None,
    params: ParamsOpt = None,
) -> None:
    """The watch list between two scoring runs: downgrades, doubled PDs, newly overdue
    buyers and early warnings, by exposure at risk; the grade migration matrix; score and
    feature PSI."""
    from riskmodel import pipeline

    prm = _params(params)
    with _stage() as tick, pipeline.open_book(book, prm, progress=tick) as opened:
        res = pipeline.watch(opened, previous, current, out, prm, delay=delay,
                             exposures=exposures, progress=tick)
    for note in res.notes:
        typer.echo(f"note: {note}")
    fired = ", ".join(f"{name} {n:,}" for name, n in res.by_trigger.items())
    typer.echo(f"watch list: {res.buyers:,} buyers ({fired}); exposure at risk "
               f"{res.exposure_at_risk:,.0f} (PD x {res.exposure_basis})")
    typer.echo(f"score PSI {res.score_psi:.4f} ({res.score_flag}); features flagged: "
               f"{res.feature_flags['act']} act, {res.feature_flags['watch']} watch")
    typer.echo(f"compared {res.previous.model_label} at {res.previous.as_of} with "
               f"{res.current.model_label} at {res.current.as_of} in {res.wall:.1f} s; wrote "
               f"{', '.join(str(p) for p in res.files.values())}")


@app.command()
def limits(
    scores: Annotated[Path, typer.Option(
        "--scores", help="A scoring output of the book (`riskmodel score --out`).")],
    book: Annotated[Path, typer.Option(
        "--book", help="The book the scores were made from (or a raw folder, validated "
                       "first).")],
    out: Annotated[Path, typer.Option(
        "--out", help="The recommended limits: a .csv or .parquet file, one row per line.")],
    exposures: Annotated[Path | None, typer.Option(
        "--exposures", help="The credit lines: a CSV or Parquet file with the contract's "
                            "exposures columns (default: the book's exposures table).")] = None,
    views: Annotated[Path | None, typer.Option(
        "--views", help="Folder for terms.csv, dso.csv, the expected-loss and concentration "
                        "views, portfolio.json and bank_coverage.csv.")] = None,
    rejects: Annotated[Path | None, typer.Option(
        "--rejects", help="Write the rejected exposure lines with their rule here (.csv or "
                          ".parquet).")] = None,
    model: Annotated[str | None, typer.Option(
        "--model", help="The model whose training domain (industries, countries) is checked "
                        "(default: the model named in the scores).")] = None,
    params: ParamsOpt = None,
) -> None:
    """Credit limits: a recommended limit, a decision (approve, reduce, decline, refer), reason
    codes and a sentence for every credit line, from the scores and the book."""
    from riskmodel import pipeline

    prm = _params(params)
    with _stage() as tick, pipeline.open_book(book, prm, progress=tick) as opened:
        res = pipeline.limits(opened, scores, out, prm, exposures=exposures, views=views,
                              rejects=rejects, model_uri=model,
                              project_dir=_project_dir(params), progress=tick)
    for note in res.warnings:
        typer.secho(f"warning: {note}", err=True, fg=typer.colors.YELLOW)
    ex = res.exposures
    why = ", ".join(f"{r} {c:,}" for r, c in ex.get("reasons", {}).items())
    decided = ", ".join(f"{d} {c:,}" for d, c in res.decisions.items())
    model_label = (f"{res.model_name} v{res.model_version}" if res.model_version
                   else "an unregistered model")
    typer.echo(f"limits for {res.lines:,} lines of {res.buyers:,} buyers at {res.as_of} "
               f"({model_label}): {decided}; exposure lines read {ex['read']:,}, rejected "
               f"{ex['rejected']:,}{f' ({why})' if why else ''}; {res.seconds:.1f} s; wrote "
               f"{res.out}" + (f" and {len(res.files) - 1} views in {res.views}"
                               if res.views is not None else ""))
