"""The Arrow/DuckDB implementations of the row rules agree with plain pandas."""

from __future__ import annotations

import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from riskmodel.data.contract.validation import is_in, not_duplicated

values = st.lists(st.one_of(st.none(), st.sampled_from(["a", "b", "c", "ä", "", "a "])),
                  max_size=40)


@settings(max_examples=100, deadline=None)
@given(values)
def test_not_duplicated_matches_pandas(xs):
    s = pd.Series(xs, dtype="str")
    expected = ~s.duplicated(keep="first") | s.isna()
    assert not_duplicated(s).tolist() == expected.tolist()


@settings(max_examples=100, deadline=None)
@given(values, st.lists(st.sampled_from(["a", "b", "x"]), max_size=3))
def test_is_in_matches_pandas(xs, allowed):
    s = pd.Series(xs, dtype="str")
    assert is_in(s, allowed).tolist() == s.isin(allowed).fillna(False).tolist()
