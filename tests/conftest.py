"""Shared fixtures: a hand-built three-buyer book and a small synthetic world."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from riskmodel.data.contract import ValidationResult, load_dataset
from riskmodel.data.synth import SynthConfig, write_world
from worlds import dataset

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(scope="session")
def three_buyers() -> ValidationResult:
    """Three buyers at as-of 2024-06-30; every number in test_features_hand is worked out from
    these rows by hand (see the comments there)."""
    inv = [
        # B1: two paid invoices in the year, one open 16 days past due, one paid after A
        dict(invoice_id="i1", buyer_id="B1", supplier_id="S1", issue_date="2024-01-01",
             due_date="2024-01-31", paid_date="2024-02-10", amount=1000.0, disputed=False),
        dict(invoice_id="i2", buyer_id="B1", supplier_id="S2", issue_date="2024-04-01",
             due_date="2024-05-01", paid_date="2024-05-31", amount=2000.0, disputed=True,
             dispute_date="2024-05-20"),
        dict(invoice_id="i3", buyer_id="B1", supplier_id="S1", issue_date="2024-05-15",
             due_date="2024-06-14", paid_date=None, amount=500.0, disputed=True,
             dispute_date="2024-07-10"),  # disputed only after A: does not count at A
        dict(invoice_id="i4", buyer_id="B1", supplier_id="S1", issue_date="2023-05-01",
             due_date="2023-05-31", paid_date="2023-05-21", amount=400.0, disputed=False),
        dict(invoice_id="i5", buyer_id="B1", supplier_id="S3", issue_date="2024-06-20",
             due_date="2024-07-20", paid_date="2024-07-05", amount=300.0, disputed=False),
        # B2: one recent open invoice, nothing paid, no firmographics
        dict(invoice_id="j1", buyer_id="B2", supplier_id="S1", issue_date="2024-06-01",
             due_date="2024-07-01", paid_date=None, amount=100.0, disputed=None),
        # B3: in default (event on A, and an invoice 365 days past due)
        dict(invoice_id="k1", buyer_id="B3", supplier_id="S2", issue_date="2023-01-01",
             due_date="2023-03-02", paid_date="2023-03-01", amount=1000.0, disputed=False),
        dict(invoice_id="k2", buyer_id="B3", supplier_id="S2", issue_date="2023-06-01",
             due_date="2023-07-01", paid_date=None, amount=700.0, disputed=False),
        # B4: first invoice after A: no row at A
        dict(invoice_id="m1", buyer_id="B4", supplier_id="S1", issue_date="2024-07-01",
             due_date="2024-07-31", paid_date=None, amount=50.0, disputed=False),
    ]
    buyers = [
        dict(buyer_id="B1", country="DE", industry="C", founded_year=2000, employees=50.0,
             annual_revenue=1e6),
        dict(buyer_id="B2", country="FR", industry="C", founded_year=None, employees=None,
             annual_revenue=None),
        dict(buyer_id="B3", country="DE", industry="C", founded_year=1990, employees=5.0,
             annual_revenue=2e5),
        dict(buyer_id="B4", country="DE", industry="F", founded_year=2010, employees=3.0,
             annual_revenue=1e5),
    ]
    events = [dict(buyer_id="B3", event_date="2024-06-30", event_type="insolvency")]
    return dataset(inv, buyers, events, observed_until=dt.date(2024, 8, 31))


@pytest.fixture(scope="session")
def small_world_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A synthetic world of 1,500 buyers over three years (about 100k invoices)."""
    out = tmp_path_factory.mktemp("synth")
    cfg = SynthConfig(n_buyers=1500, start=dt.date(2020, 1, 1), end=dt.date(2022, 12, 31),
                      seed=11, chunk_buyers=700)
    write_world(cfg, out)
    return out


@pytest.fixture(scope="session")
def small_world(small_world_dir: Path) -> ValidationResult:
    return load_dataset(str(small_world_dir))
