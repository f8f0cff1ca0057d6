"""The Spark engine's session: a clear error, not a traceback, when PySpark is missing."""

from __future__ import annotations

import sys

import pytest

from riskmodel.scoring.job import ScoringError
from riskmodel.scoring.spark import session


def test_without_pyspark_the_error_says_what_to_install(monkeypatch: pytest.MonkeyPatch
                                                        ) -> None:
    monkeypatch.setitem(sys.modules, "pyspark", None)  # import pyspark now raises
    monkeypatch.setitem(sys.modules, "pyspark.sql", None)
    with pytest.raises(ScoringError, match=r"needs PySpark.*\[spark\]"):
        session("local[1]")
