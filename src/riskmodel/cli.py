"""The ``riskmodel`` command line: a thin Typer layer over the library.

Heavy libraries are imported inside the commands, so ``riskmodel --help`` answers at once.
Exit codes: 0 success, 1 a quality limit was exceeded (e.g. the reject rate), 2 input that
breaks the contract at the level of a file or column (nothing is written).
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(
    name="riskmodel",
    help="Buyer-default risk scoring for trade credit insurance and B2B receivables.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

RawDir = Annotated[Path, typer.Argument(help="Folder with invoices, buyers and events tables.")]
ObservedUntil = Annotated[
    dt.datetime | None,
    typer.Option(
        "--observed-until",
        formats=["%Y-%m-%d"],
        help="Date the data are known as of (default: latest issue, paid or event date).",
    ),
]
MappingOpt = Annotated[
    Path | None,
    typer.Option("--mapping", help="YAML mapping of a real export onto the contract."),
]


def _fail(message: str, code: int) -> typer.Exit:
    typer.secho(f"error: {message}", err=True, fg=typer.colors.RED)
    return typer.Exit(code)


def _date(value: dt.datetime | None) -> dt.date | None:
    return value.date() if value is not None else None


@app.command()
def validate(
    raw_dir: RawDir,
    observed_until: ObservedUntil = None,
    mapping: MappingOpt = None,
    rejects: Annotated[
        Path | None, typer.Option("--rejects", help="Folder for <table>.parquet of rejected rows.")
    ] = None,
    report: Annotated[
        Path | None, typer.Option("--report", help="Write the counts as JSON here.")
    ] = None,
    max_reject_rate: Annotated[
        float, typer.Option("--max-reject-rate", min=0.0, max=1.0, help="Fail above this share.")
    ] = 0.01,
) -> None:
    """Check a raw dataset against the data contract; set bad rows aside with their reason."""
    from riskmodel.contract import ContractError, load_mapping
    from riskmodel.contract.validation import load_dataset
    from riskmodel.reporting import print_validation

    try:
        mp = load_mapping(mapping) if mapping else None
        result = load_dataset(str(raw_dir), mp, _date(observed_until))
    except ContractError as exc:
        raise _fail(str(exc), 2) from exc
    print_validation(result)
    if rejects is not None:
        rejects.mkdir(parents=True, exist_ok=True)
        for name, table in result.tables.items():
            table.rejected.to_parquet(rejects / f"{name}.parquet", index=False)
    if report is not None:
        report.parent.mkdir(parents=True, exist_ok=True)
        report.write_text(json.dumps(result.report(), indent=2) + "\n", encoding="utf-8")
    over = result.over_limit(max_reject_rate)
    if over:
        detail = ", ".join(f"{n} {result.tables[n].reject_rate:.2%}" for n in over)
        raise _fail(f"rejected share above --max-reject-rate {max_reject_rate:.2%}: {detail}", 1)


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
    ] = 50_000,
) -> None:
    """Write a synthetic buyer world (contract tables plus truth.parquet) with known PDs."""
    from riskmodel.synth import SynthConfig, write_world

    dates = None
    if truth_dates:
        dates = [dt.date.fromisoformat(d.strip()) for d in truth_dates.split(",") if d.strip()]
    cfg = SynthConfig(
        n_buyers=buyers, start=start.date(), end=end.date(), seed=seed, truth_dates=dates,
        chunk_buyers=chunk_buyers,
    )
    stats = write_world(cfg, out, progress=True)
    typer.echo(
        f"wrote {stats['buyers']:,} buyers, {stats['invoices']:,} invoices, "
        f"{stats['events']:,} events, {stats['truth']:,} truth rows to {out}"
    )
