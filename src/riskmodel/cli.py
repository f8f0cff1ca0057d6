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


def _params_path(path: Path | None) -> Path | None:
    """--params, else ./params.yaml when there is one, else None (built-in defaults)."""
    if path is not None:
        return path
    default = Path("params.yaml")
    return default if default.is_file() else None


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
        float | None,
        typer.Option("--max-reject-rate", min=0.0, max=1.0,
                     help="Fail above this share (default: data.max_reject_rate, 0.01)."),
    ] = None,
    params: Annotated[
        Path | None, typer.Option("--params", help="params.yaml (default: ./params.yaml if "
                                                   "present): data.observed_until, "
                                                   "data.mapping, data.max_reject_rate.")
    ] = None,
) -> None:
    """Check a raw dataset against the data contract; set bad rows aside with their reason."""
    from riskmodel.data.contract import ContractError, load_mapping
    from riskmodel.data.contract.validation import load_dataset
    from riskmodel.params import ParamsError, load_params
    from riskmodel.reporting import print_validation

    try:
        prm = load_params(_params_path(params))
        mapping_path = mapping or (Path(prm.data.mapping) if prm.data.mapping else None)
        mp = load_mapping(mapping_path) if mapping_path else None
        result = load_dataset(str(raw_dir), mp,
                              _date(observed_until) or prm.data.observed_until)
    except (ContractError, ParamsError) as exc:
        raise _fail(str(exc), 2) from exc
    if max_reject_rate is None:
        max_reject_rate = prm.data.max_reject_rate
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
    ] = 10_000,
) -> None:
    """Write a synthetic buyer world (contract tables plus truth.parquet) with known PDs."""
    from riskmodel.data.synth import SynthConfig, write_world

    dates = None
    if truth_dates:
        dates = [dt.date.fromisoformat(d.strip()) for d in truth_dates.split(",") if d.strip()]
    try:
        cfg = SynthConfig(
            n_buyers=buyers, start=start.date(), end=end.date(), seed=seed, truth_dates=dates,
            chunk_buyers=chunk_buyers,
        )
    except ValueError as exc:
        raise _fail(str(exc), 2) from exc
    stats = write_world(cfg, out, progress=True)
    typer.echo(
        f"wrote {stats['buyers']:,} buyers, {stats['invoices']:,} invoices, "
        f"{stats['events']:,} events, {stats['truth']:,} truth rows to {out}"
    )


ParamsOpt = Annotated[
    Path | None, typer.Option("--params", help="params.yaml (default: built-in defaults).")
]
AsOfOpt = Annotated[
    str | None,
    typer.Option(
        "--as-of",
        help="Comma-separated as-of dates (default: the params snapshot dates).",
    ),
]


def _load_inputs(raw_dir: Path, params_path: Path | None, observed_until: dt.datetime | None,
                 mapping: Path | None):
    """params + validated dataset, or exit 2 with the reason."""
    from riskmodel.data.contract import ContractError, load_mapping
    from riskmodel.data.contract.validation import load_dataset
    from riskmodel.params import ParamsError, load_params

    try:
        params = load_params(_params_path(params_path))
        mapping_path = mapping or (Path(params.data.mapping) if params.data.mapping else None)
        mp = load_mapping(mapping_path) if mapping_path else None
        ou = _date(observed_until) or params.data.observed_until
        data = load_dataset(str(raw_dir), mp, ou)
    except (ContractError, ParamsError) as exc:
        raise _fail(str(exc), 2) from exc
    over = data.over_limit(params.data.max_reject_rate)
    if over:  # the contract: the run fails above the limit, whichever command reads the data
        detail = ", ".join(f"{n} {data.tables[n].reject_rate:.2%}" for n in over)
        raise _fail(f"rejected share above data.max_reject_rate "
                    f"{params.data.max_reject_rate:.2%}: {detail} (see riskmodel validate)", 1)
    return params, data


def _as_of_dates(as_of: str | None, params, data) -> list[dt.date]:
    if as_of:
        try:
            dates = sorted({dt.date.fromisoformat(d.strip()) for d in as_of.split(",") if d})
        except ValueError as exc:
            raise _fail(f"--as-of: {exc}", 2) from exc
    else:
        first = data.invoices["issue_date"].min().date()
        dates = params.snapshots.resolve(first, data.observed_until)
    late = [d for d in dates if d > data.observed_until]
    if late:
        raise _fail(
            f"--as-of {late[0]} is after observed_until {data.observed_until}: "
            "nothing is known there yet", 2)
    if not dates:
        raise _fail("no as-of dates (check snapshots in params)", 2)
    return dates


def _feature_config(prm):
    from riskmodel.features import FeatureConfig

    return FeatureConfig(
        windows=tuple(prm.features.windows),
        dpd_threshold=prm.label.dpd_threshold,
        chunk_invoices=prm.features.chunk_invoices,
        history_cap_days=prm.features.history_cap_days,
    )


@app.command()
def features(
    raw_dir: RawDir,
    out: Annotated[Path, typer.Option("--out", help="Parquet file to write.")],
    as_of: AsOfOpt = None,
    params: ParamsOpt = None,
    observed_until: ObservedUntil = None,
    mapping: MappingOpt = None,
) -> None:
    """Point-in-time features: one row per (buyer, as-of date) with an invoice by then."""
    from rich.progress import Progress

    from riskmodel.features import build_features

    prm, data = _load_inputs(raw_dir, params, observed_until, mapping)
    dates = _as_of_dates(as_of, prm, data)
    cfg = _feature_config(prm)
    with Progress(transient=True) as bar:
        task = bar.add_task("features", total=None)
        frame = build_features(
            data.invoices, data.buyers, data.events, dates, cfg,
            on_chunk=lambda k, n: bar.update(task, completed=k, total=n),
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(out, index=False)
    typer.echo(f"wrote {len(frame):,} rows x {frame.shape[1]} columns for {len(dates)} "
               f"as-of dates to {out}")


@app.command()
def labels(
    raw_dir: RawDir,
    out: Annotated[Path, typer.Option("--out", help="Parquet file to write.")],
    as_of: AsOfOpt = None,
    params: ParamsOpt = None,
    observed_until: ObservedUntil = None,
    mapping: MappingOpt = None,
) -> None:
    """Contract labels: in_default at A, and bad within (A, A + horizon] (null if unobserved)."""
    from riskmodel.features.labels import compute_labels

    prm, data = _load_inputs(raw_dir, params, observed_until, mapping)
    dates = _as_of_dates(as_of, prm, data)
    frame = compute_labels(
        data.invoices, data.events, dates, data.observed_until,
        horizon_days=prm.label.horizon_days, dpd_threshold=prm.label.dpd_threshold,
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(out, index=False)
    labelled = frame["bad"].notna()
    rate = float(frame.loc[labelled, "bad"].astype(float).mean()) if labelled.any() else float("nan")
    typer.echo(f"wrote {len(frame):,} rows ({int(labelled.sum()):,} labelled, bad rate "
               f"{rate:.2%}) to {out}")


def _read_frame(path: Path, what: str):
    import pandas as pd

    try:
        return pd.read_parquet(path)
    except (OSError, ValueError) as exc:
        raise _fail(f"{path}: cannot read {what}: {exc}", 2) from exc


@app.command()
def train(
    raw_dir: RawDir,
    out: Annotated[Path, typer.Option("--out", help="MLflow pyfunc model directory to write.")],
    params: ParamsOpt = None,
    features_path: Annotated[
        Path | None, typer.Option("--features", help="Features from `riskmodel features`.")
    ] = None,
    labels_path: Annotated[
        Path | None, typer.Option("--labels", help="Labels from `riskmodel labels`.")
    ] = None,
    register: Annotated[
        bool, typer.Option("--register/--no-register", help="Log and register in MLflow.")
    ] = True,
    observed_until: ObservedUntil = None,
    mapping: MappingOpt = None,
) -> None:
    """Train the calibrated LightGBM PD model; log it to MLflow as the new challenger."""
    import json

    from riskmodel.features import build_features
    from riskmodel.features.labels import compute_labels
    from riskmodel.modeling.training import TrainingError, train_model
    from riskmodel.params import ParamsError, load_params
    from riskmodel.provenance import fingerprint, git_commit

    if (features_path is None) != (labels_path is None):
        raise _fail("give both --features and --labels, or neither", 2)
    if features_path is not None and labels_path is not None:
        try:
            prm = load_params(_params_path(params))
        except ParamsError as exc:
            raise _fail(str(exc), 2) from exc
        feats, labs = _read_frame(features_path, "features"), _read_frame(labels_path, "labels")
    else:
        prm, data = _load_inputs(raw_dir, params, observed_until, mapping)
        dates = _as_of_dates(None, prm, data)
        cfg = _feature_config(prm)
        feats = build_features(data.invoices, data.buyers, data.events, dates, cfg)
        labs = compute_labels(data.invoices, data.events, dates, data.observed_until,
                              prm.label.horizon_days, prm.label.dpd_threshold)
    try:
        result = train_model(feats, labs, prm)
    except TrainingError as exc:
        raise _fail(str(exc), 2) from exc

    from riskmodel.registry import log_training, save_pyfunc

    meta = result.metadata()
    meta["raw_fingerprint"] = fingerprint(raw_dir)
    save_pyfunc(result.model, out, {"training.json": meta})
    typer.echo(
        f"trained on {meta['split']['train']['rows']:,} rows ({meta['split']['kind']}), "
        f"{meta['best_iteration']} trees, {meta['n_leaves_total']} leaves -> {out}"
    )
    if register:
        reg = log_training(
            result.model,
            params=prm.model_dump(mode="json"),
            metrics={"best_iteration": meta["best_iteration"],
                     "n_leaves_total": meta["n_leaves_total"],
                     "train_rows": meta["split"]["train"]["rows"],
                     "valid_rows": meta["split"]["valid"]["rows"],
                     "test_rows": meta["split"]["test"]["rows"]},
            tags={"git_commit": git_commit(), "raw_fingerprint": meta["raw_fingerprint"],
                  "split_kind": meta["split"]["kind"]},
            artifacts={"features.json": {"features": result.model.spec.names,
                                         "categories": result.model.spec.categories},
                       "training.json": meta},
            experiment=prm.registry.experiment,
            model_name=prm.registry.model_name,
        )
        (out / "registry.json").write_text(json.dumps(
            {"run_id": reg.run_id, "model_name": reg.model_name, "version": reg.version},
            indent=2) + "\n")
        typer.echo(f"registered {reg.model_name} version {reg.version} as challenger "
                   f"(run {reg.run_id})")


@app.command()
def evaluate(
    model_dir: Annotated[Path, typer.Argument(help="Model directory from `riskmodel train`.")],
    features_path: Annotated[Path, typer.Option("--features", help="Features parquet.")],
    labels_path: Annotated[Path, typer.Option("--labels", help="Labels parquet.")],
    params: ParamsOpt = None,
    out_dir: Annotated[Path, typer.Option("--out-dir", help="Folder for tables and plots.")] = Path(
        "reports"),
    metrics_path: Annotated[
        Path, typer.Option("--metrics", help="JSON metrics file (DVC metrics).")
    ] = Path("metrics.json"),
    truth: Annotated[
        Path | None, typer.Option("--truth", help="truth.parquet of a synthetic world: adds "
                                                  "the oracle AUC.")
    ] = None,
    log: Annotated[bool, typer.Option("--log/--no-log", help="Log to the MLflow run.")] = True,
) -> None:
    """Validation report on the out-of-time test set; logged to the model's MLflow run."""
    import json

    import pandas as pd

    from riskmodel.modeling.evaluation import evaluate as run_evaluation
    from riskmodel.modeling.model import load_model_dir, model_files
    from riskmodel.modeling.plots import draw
    from riskmodel.modeling.training import TrainingError, build_panel, split_panel
    from riskmodel.params import ParamsError, load_params

    try:
        prm = load_params(_params_path(params))
        model = load_model_dir(model_dir)
        panel = build_panel(_read_frame(features_path, "features"),
                            _read_frame(labels_path, "labels"))
        split = split_panel(panel, prm)
    except (ParamsError, FileNotFoundError, TrainingError) as exc:
        raise _fail(str(exc), 2) from exc
    trained = json.loads((model_files(model_dir) / "training.json").read_text())
    if trained["split"]["dates"] != split.dates:
        raise _fail("the split of these features/labels differs from the model's training "
                    f"split ({trained['split']['dates']} vs {split.dates}): evaluate the "
                    "data the model was trained on", 2)
    drop = ["bad", "in_default"]
    test_pred = model.predict(split.test.drop(columns=drop))
    train_pred = model.predict(split.train.drop(columns=drop))
    oracle = None
    if truth is not None:
        t = pd.read_parquet(truth)
        t["as_of"] = pd.to_datetime(t["as_of"]).astype("datetime64[s]")
        joined = split.test[["buyer_id", "as_of"]].merge(t, on=["buyer_id", "as_of"],
                                                         how="left")
        if joined["pd_true"].isna().any():
            raise _fail(f"{truth}: {int(joined['pd_true'].isna().sum())} test rows have no "
                        "pd_true (is this the truth of the same world?)", 2)
        oracle = joined["pd_true"].to_numpy()
    ev = run_evaluation(split.test, test_pred, split.train, train_pred, model.spec.names,
                        model.scale, prm.evaluate.ece_bins, prm.evaluate.psi_bins, oracle,
                        prm.evaluate.asset_correlation)
    out_dir.mkdir(parents=True, exist_ok=True)
    tables = {"grades.csv": ev.grades, "calibration.csv": ev.calibration, "roc.csv": ev.roc,
              "feature_psi.csv": ev.feature_psi, "grade_distribution.csv": ev.grade_distribution}
    files = []
    for name, frame in tables.items():
        frame.to_csv(out_dir / name, index=False)
        files.append(out_dir / name)
    files += draw(ev, out_dir)
    metrics_path.parent.mkdir(parents=True, exist_ok=True)
    metrics_path.write_text(json.dumps({k: round(v, 6) for k, v in ev.metrics.items()},
                                       indent=2, sort_keys=True) + "\n")
    from riskmodel.reporting import print_evaluation

    print_evaluation(ev)
    reg_file = model_dir / "registry.json"
    if log and reg_file.exists():
        from riskmodel.registry import log_evaluation

        log_evaluation(json.loads(reg_file.read_text())["run_id"], ev.metrics,
                       [*files, metrics_path])


@app.command()
def promote(
    params: ParamsOpt = None,
    out: Annotated[
        Path | None, typer.Option("--out", help="Write the decision as JSON here.")
    ] = None,
    strict: Annotated[
        bool, typer.Option("--strict", help="Exit 1 when the challenger fails a gate.")
    ] = False,
) -> None:
    """Move alias champion to the challenger if it passes the gates in params."""
    import json

    from riskmodel.params import ParamsError, load_params
    from riskmodel.registry import promote as run_promotion

    try:
        prm = load_params(_params_path(params))
    except ParamsError as exc:
        raise _fail(str(exc), 2) from exc
    decision = run_promotion(prm.registry.model_name, prm.promote)
    for g in decision.gates:
        mark = "pass" if g["passed"] else "FAIL"
        typer.echo(f"  {mark}  {g['gate']}: {g['detail']}")
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(decision.to_dict(), indent=2) + "\n")
    name = prm.registry.model_name
    if decision.promoted:
        typer.echo(f"{name} version {decision.challenger} is the champion")
    else:
        failed = ", ".join(g["gate"] for g in decision.failed())
        typer.echo(f"{name} version {decision.challenger} not promoted: failed {failed}")
        if strict:
            raise typer.Exit(1)
