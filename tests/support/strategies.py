"""Hypothesis strategies more than one test module draws from (synthetic NIR bodies)."""

from __future__ import annotations

from hypothesis import strategies as st

from tests.support.nirs import MONTHS


@st.composite
def bodies(draw: st.DrawFn) -> str:
    """A structure-valid 13-character body, every kind of place."""
    sex = draw(st.sampled_from("1234"))
    year = draw(st.integers(0, 99))
    month = draw(st.sampled_from(MONTHS))
    order = draw(st.integers(1, 999))
    commune = draw(st.integers(1, 990))
    kind = draw(st.sampled_from(["mainland", "corsica", "corsica20", "overseas", "abroad"]))
    if kind == "mainland":
        place = f"{draw(st.integers(1, 95).filter(lambda d: d != 20)):02d}{commune:03d}"
    elif kind == "corsica":
        place = f"{draw(st.sampled_from(['2A', '2B']))}{commune:03d}"
    elif kind == "corsica20":
        year = draw(st.integers(0, 75))
        place = f"20{commune:03d}"
    elif kind == "overseas":
        place = f"{draw(st.integers(971, 989))}{draw(st.integers(1, 99)):02d}"
    else:
        place = f"99{draw(st.integers(1, 999)):03d}"
    return f"{sex}{year:02d}{month}{place}{order:03d}"
