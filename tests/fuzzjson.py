"""Hypothesis strategies for any JSON value, shared by the serving fuzz tests."""

from __future__ import annotations

from hypothesis import strategies as st

SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(), st.text(max_size=8)
)


def any_json(max_leaves: int) -> st.SearchStrategy:
    """Scalars, lists and objects nested up to ``max_leaves`` leaves."""
    return st.recursive(
        SCALARS,
        lambda inner: (
            st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
        ),
        max_leaves=max_leaves,
    )
