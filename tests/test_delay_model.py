"""The 30-day payment-delay model (params.delay30.yaml): its label is what it says on
hand-built invoices, and a model trained with its params registers under its own name and
aliases without touching the PD model's."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from riskmodel import pipeline
from riskmodel.data.book import Book
from riskmodel.data.synth import SynthConfig, write_world
from riskmodel.params import Params, load_params, parse_params
from training_helpers import params_dict

REPO = Path(__file__).resolve().parents[1]
DELAY_PARAMS = REPO / "params.delay30.yaml"
A = dt.date(2024, 3, 31)


#: the sections in which params.delay30.yaml differs from params.yaml: what defines the
#: model (its label, snapshots, training, calibration, evaluation, registered name and
#: backtest); every other section (the data, book, features, master scale, gates, scoring,
#: watch list and decisions) must be the same
DELAY_SECTIONS = {"label", "snapshots", "train", "calibration", "evaluate", "registry",
                  "backtest"}


def test_the_delay_params_are_the_pd_params_with_a_30_day_label() -> None:
    pd_prm, delay = load_params(REPO / "params.yaml"), load_params(DELAY_PARAMS)
    assert (delay.label.horizon_days, delay.label.dpd_threshold) == (30, 30)
    assert (delay.registry.model_name, delay.registry.experiment) == \
        ("buyer-delay-30d", "buyer-delay-30d")
    assert pd_prm.registry.model_name != delay.registry.model_name
    assert delay.evaluate.truth is None
    assert delay.snapshots.frequency == "monthly"
    mine, theirs = delay.model_dump(), pd_prm.model_dump()
    assert set(mine) == set(theirs) and DELAY_SECTIONS <= set(mine)
    same = sorted(set(mine) - DELAY_SECTIONS)
    assert {"features", "master_scale", "promote", "limits", "terms", "portfolio",
            "watch"} <= set(same)
    for name in same:
        assert mine[name] == theirs[name], name


# --------------------------------------------------------------------------- the label

# buyer: (due date, paid date or '') of its one invoice, issued 30 days before it is due.
# The label at A = 2024-03-31: bad when the invoice is 30 days past due, unpaid, on a day of
# (A, A + 30] = (2024-03-31, 2024-04-30], i.e. due + 30 falls there.
INVOICES = {
    "day30": ("2024-03-31", ""),            # 30 dpd on 2024-04-30, day 30: bad
    "day31": ("2024-04-01", ""),            # 30 dpd on 2024-05-01, day 31: not bad
    "day1": ("2024-03-02", ""),             # 29 dpd at A, 30 dpd on 2024-04-01: bad
    "late_at_a": ("2024-03-01", ""),        # 30 dpd at A already: in default, no label
    "paid_later": ("2024-03-31", "2024-05-02"),  # unpaid when it reached 30 dpd: bad
    "paid_before": ("2024-03-31", "2024-04-29"),  # paid at 29 dpd: not bad
    "paid_on_day": ("2024-03-31", "2024-04-30"),  # paid the day it would reach 30: not bad
}


def _raw(root: Path) -> Path:
    raw = root / "raw"
    raw.mkdir()
    rows = [{"invoice_id": f"i-{b}", "buyer_id": b,
             "issue_date": (dt.date.fromisoformat(due) - dt.timedelta(days=30)).isoformat(),
             "due_date": due, "paid_date": paid, "amount": 100.0}
            for b, (due, paid) in INVOICES.items()]
    pd.DataFrame(rows).to_csv(raw / "invoices.csv", index=False)
    pd.DataFrame({"buyer_id": list(INVOICES), "country": "DE", "industry": "C"}).to_csv(
        raw / "buyers.csv", index=False)
    pd.DataFrame({"buyer_id": [], "event_date": [], "event_type": []}).to_csv(
        raw / "events.csv", index=False)
    return raw


@pytest.fixture(scope="module")
def hand_book(tmp_path_factory: pytest.TempPathFactory) -> Book:
    root = tmp_path_factory.mktemp("delay_label")
    pipeline.validate(_raw(root), root / "book", parse_params({}),
                      observed_until=dt.date(2024, 6, 30))
    return Book(root / "book")


def _labels(book: Book, params: Params, tmp: Path) -> pd.DataFrame:
    tmp.mkdir(parents=True, exist_ok=True)
    out = tmp / "labels.parquet"
    pipeline.labels(book, out, params, dates=[A])
    return pipeline.read_labels(out).set_index("buyer_id")


def test_the_30_day_label(hand_book: Book, tmp_path: Path) -> None:
    got = _labels(hand_book, load_params(DELAY_PARAMS), tmp_path)
    assert got["in_default"].to_dict() == {b: b == "late_at_a" for b in INVOICES}
    bad = got["bad"].astype(object).where(got["bad"].notna(), None).to_dict()
    assert bad == {"day30": True, "day31": False, "day1": True, "late_at_a": None,
                   "paid_later": True, "paid_before": False, "paid_on_day": False}


@pytest.fixture(scope="module")
def observed_book(tmp_path_factory: pytest.TempPathFactory) -> Book:
    """The same invoices observed until 2025-03-31 = A + 365: the PD label's window is
    complete (the payments are as above: none after 2024-05-02)."""
    root = tmp_path_factory.mktemp("delay_label_observed")
    raw = _raw(root)
    pipeline.validate(raw, root / "book", parse_params({}), observed_until=dt.date(2025, 3, 31),
                      today=dt.date(2025, 4, 30))
    return Book(root / "book")


def test_the_pd_label_of_the_same_invoices_differs(hand_book: Book, observed_book: Book,
                                                   tmp_path: Path) -> None:
    """With params.yaml (90 days past due within a year) no buyer is in default at A (the
    latest is 30 days past due), and every invoice still unpaid reaches 90 days past due
    inside (2024-03-31, 2025-03-31]: day31 (on 2024-06-30) and late_at_a are bad there, not
    for the 30-day label; paid_later, paid at 32 days, is bad only for the 30-day label."""
    # observed until 2024-06-30, every window (A, A + 365] is still open: nothing labelled
    partial = _labels(hand_book, load_params(REPO / "params.yaml"), tmp_path / "partial")
    assert not partial["in_default"].any()
    assert partial["bad"].isna().all()

    def bad(frame: pd.DataFrame) -> dict[str, bool | None]:
        return frame["bad"].astype(object).where(frame["bad"].notna(), None).to_dict()

    pd_label = _labels(observed_book, load_params(REPO / "params.yaml"), tmp_path / "pd")
    delay = _labels(observed_book, load_params(DELAY_PARAMS), tmp_path / "delay")
    assert pd_label["in_default"].to_dict() == {b: False for b in INVOICES}
    assert bad(pd_label) == {"day30": True, "day31": True, "day1": True, "late_at_a": True,
                             "paid_later": False, "paid_before": False, "paid_on_day": False}
    # the 30-day label of the longer book is the one of test_the_30_day_label
    assert delay["in_default"].to_dict() == {b: b == "late_at_a" for b in INVOICES}
    assert bad(delay) == {"day30": True, "day31": False, "day1": True, "late_at_a": None,
                          "paid_later": True, "paid_before": False, "paid_on_day": False}
    differ = sorted(b for b in INVOICES if bad(pd_label)[b] != bad(delay)[b])
    assert differ == ["day31", "late_at_a", "paid_later"]


def test_the_features_status_follows_the_30_day_threshold(hand_book: Book,
                                                           tmp_path: Path) -> None:
    out = tmp_path / "features.parquet"
    pipeline.features(hand_book, out, load_params(DELAY_PARAMS), dates=[A])
    status = pipeline.read_features(out).set_index("buyer_id")["status"].to_dict()
    assert status == {b: "in_default" if b == "late_at_a" else "active" for b in INVOICES}


# --------------------------------------------------------------------------- the registry


def _training_params(**over: dict) -> Params:
    """Fast training params (one capacity, few trees, loose gates) with, for the delay
    model, the sections of params.delay30.yaml that define it."""
    fast = {"train": {"search": [], "refit": False, "n_estimators": 100},
            "promote": {"min_auc": 0.5, "max_ece": 0.5, "max_score_psi": 10.0}}
    raw = params_dict(**fast)
    for name, values in over.items():
        raw.setdefault(name, {}).update(values)
    return parse_params(raw)


def _aliases(client: MlflowClient, name: str) -> dict[str, str]:
    model = client.get_registered_model(name)
    return {a: str(v) for a, v in model.aliases.items()}


@pytest.mark.slow
def test_the_delay_model_registers_under_its_own_name(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_ARTIFACT_ROOT", raising=False)
    monkeypatch.chdir(tmp_path)
    write_world(SynthConfig(n_buyers=800, start=dt.date(2020, 1, 1), end=dt.date(2022, 12, 31),
                            seed=4), tmp_path / "raw")
    pipeline.validate(tmp_path / "raw", tmp_path / "book", parse_params({}))
    book = Book(tmp_path / "book")
    project = tmp_path / "project"
    project.mkdir()

    def fit(root: Path, params: Params, project: Path) -> pipeline.TrainStageResult:
        feats, labs = root / "features.parquet", root / "labels.parquet"
        pipeline.features(book, feats, params)
        pipeline.labels(book, labs, params)
        res = pipeline.train(book.path, root / "model", params, features_path=feats,
                             labels_path=labs, project_dir=project)
        pipeline.evaluate(root / "model", feats, labs, params, out_dir=root / "reports",
                          metrics_path=root / "metrics.json", project_dir=project)
        return res

    pd_params = _training_params()
    fit(tmp_path / "pd", pd_params, project)
    assert pipeline.promote(pd_params, project_dir=project).promoted

    file = load_params(DELAY_PARAMS)
    delay_params = _training_params(
        label=file.label.model_dump(), registry=file.registry.model_dump(),
        snapshots={"frequency": file.snapshots.frequency},
        calibration={"recent_level": file.calibration.recent_level})
    res = fit(tmp_path / "delay", delay_params, project)
    assert res.registered is not None
    assert (res.registered.model_name, res.registered.version) == ("buyer-delay-30d", "1")

    uri = f"sqlite:///{project / 'mlflow.db'}"
    client = MlflowClient(uri, uri)
    assert _aliases(client, "buyer-delay-30d") == {"challenger": "1"}
    assert _aliases(client, "buyer-risk") == {"challenger": "1", "champion": "1"}

    decision = pipeline.promote(delay_params, project_dir=project)
    assert decision.promoted and decision.challenger == "1"
    assert _aliases(client, "buyer-delay-30d") == {"challenger": "1", "champion": "1"}
    assert _aliases(client, "buyer-risk") == {"challenger": "1", "champion": "1"}
    assert [str(v.version) for v in client.search_model_versions("name='buyer-risk'")] == ["1"]

    # each model's run is in its own experiment, with its own label
    run = client.get_run(res.registered.run_id)
    experiment = client.get_experiment(run.info.experiment_id)
    assert experiment.name == "buyer-delay-30d"
    assert (run.data.params["label.horizon_days"], run.data.params["label.dpd_threshold"]) == \
        ("30", "30")
    pd_runs = client.search_runs([client.get_experiment_by_name("buyer-risk").experiment_id])
    assert [r.data.params["label.horizon_days"] for r in pd_runs] == ["365"]
