"""Parity tests: ``crm_xl.analyses.lifetimes_compat.lifetimes_summary`` vs lifetimes 0.11.3."""

from __future__ import annotations

import importlib.resources
import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pandas.testing import assert_frame_equal

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # lifetimes sets a deprecated pandas option on import
    lifetimes_utils = pytest.importorskip("lifetimes.utils")

from crm_xl.analyses.lifetimes_compat import SUPPORTED_FREQS, lifetimes_summary

CDNOW_COLUMNS = ["customer_id", "date", "quantity", "amount"]


def lifetimes_reference(transactions: pd.DataFrame, *args, **kwargs) -> pd.DataFrame:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return lifetimes_utils.summary_data_from_transaction_data(transactions, *args, **kwargs)


def assert_same(ours: pd.DataFrame, theirs: pd.DataFrame) -> None:
    """Same index (name, dtype, order), columns, dtypes and values, bit for bit."""
    assert_frame_equal(ours, theirs, check_exact=True)


@pytest.fixture(scope="module")
def cdnow_raw() -> pd.DataFrame:
    """CDNOW master log with the dates still as ``YYYYMMDD`` strings."""
    path = importlib.resources.files("lifetimes") / "datasets" / "CDNOW_master.txt"
    return pd.read_csv(
        path, sep=r"\s+", header=0, names=CDNOW_COLUMNS, dtype={"customer_id": str, "date": str}
    )


@pytest.fixture(scope="module")
def cdnow(cdnow_raw: pd.DataFrame) -> pd.DataFrame:
    df = cdnow_raw.copy()
    df["date"] = pd.to_datetime(df["date"], format="%Y%m%d")
    return df


# --------------------------------------------------------------------------- CDNOW parity


@pytest.mark.parametrize("freq", ["D", "W"])
@pytest.mark.parametrize("monetary", [None, "amount"])
@pytest.mark.parametrize("observation_period_end", [None, "1997-09-30"])
def test_cdnow_parity(cdnow, freq, monetary, observation_period_end):
    ours = lifetimes_summary(cdnow, "customer_id", "date", monetary, observation_period_end, freq)
    theirs = lifetimes_reference(
        cdnow, "customer_id", "date", monetary, observation_period_end=observation_period_end, freq=freq
    )
    assert ours.index.name == "customer_id"
    assert list(ours.columns) == ["frequency", "recency", "T"] + (["monetary_value"] if monetary else [])
    assert (ours.dtypes == np.float64).all()
    assert_same(ours, theirs)


def test_cdnow_observation_end_drops_later_customers(cdnow):
    ours = lifetimes_summary(cdnow, "customer_id", "date", "amount", "1997-01-31")
    first = cdnow.groupby("customer_id")["date"].min()
    assert len(ours) == (first <= "1997-01-31").sum() < first.size
    assert ours["T"].max() == 30.0  # all customers start on or after 1997-01-01


@pytest.mark.parametrize("freq", ["h", "s"])
def test_cdnow_parity_other_freqs(cdnow, freq):
    ours = lifetimes_summary(cdnow, "customer_id", "date", "amount", freq=freq, freq_multiplier=24)
    theirs = lifetimes_reference(cdnow, "customer_id", "date", "amount", freq=freq, freq_multiplier=24)
    assert_same(ours, theirs)


def test_cdnow_parity_include_first_transaction(cdnow):
    ours = lifetimes_summary(cdnow, "customer_id", "date", "amount", freq="W", include_first_transaction=True)
    theirs = lifetimes_reference(
        cdnow, "customer_id", "date", "amount", freq="W", include_first_transaction=True
    )
    assert_same(ours, theirs)


def test_cdnow_shuffled_rows(cdnow):
    shuffled = cdnow.sample(frac=1.0, random_state=7)
    ours = lifetimes_summary(shuffled, "customer_id", "date", "amount")
    assert_same(ours, lifetimes_reference(shuffled, "customer_id", "date", "amount"))
    assert_same(ours, lifetimes_summary(cdnow, "customer_id", "date", "amount"))


def test_cdnow_string_dates_with_format(cdnow_raw, cdnow):
    kwargs = {"datetime_format": "%Y%m%d", "observation_period_end": "19971231"}
    ours = lifetimes_summary(cdnow_raw, "customer_id", "date", "amount", **kwargs)
    assert_same(ours, lifetimes_reference(cdnow_raw, "customer_id", "date", "amount", **kwargs))
    assert_same(ours, lifetimes_summary(cdnow, "customer_id", "date", "amount", "1997-12-31"))


def test_string_dates_non_iso_order(cdnow):
    """Text order differs from time order: lifetimes' "first" purchase is the first one in text order."""
    us_dates = cdnow.assign(date=cdnow["date"].dt.strftime("%m/%d/%Y"))
    for kwargs in ({}, {"datetime_format": "%m/%d/%Y", "freq": "W"}):
        ours = lifetimes_summary(us_dates, "customer_id", "date", "amount", **kwargs)
        assert_same(ours, lifetimes_reference(us_dates, "customer_id", "date", "amount", **kwargs))


# --------------------------------------------------------------------------- hand-computed example


@pytest.fixture
def tiny() -> pd.DataFrame:
    rows = [
        ("A", "2020-01-01", 10.0),  # Wednesday
        ("A", "2020-01-01", 5.0),
        ("A", "2020-01-03", 20.0),
        ("A", "2020-01-10", 30.0),
        ("B", "2020-01-05", 7.0),  # Sunday
        ("C", "2020-01-02", 1.0),
        ("C", "2020-01-09", 4.0),
        ("C", "2020-01-09", 2.0),
        ("C", "2020-01-15", 100.0),  # after the observation period end
    ]
    df = pd.DataFrame(rows, columns=["customer_id", "date", "amount"])
    df["date"] = pd.to_datetime(df["date"])
    return df.sample(frac=1.0, random_state=3)  # row order must not matter


def expected_frame(values: dict[str, list[float]]) -> pd.DataFrame:
    return pd.DataFrame(values, index=pd.Index(["A", "B", "C"], name="customer_id"), dtype=np.float64)


def test_tiny_daily(tiny):
    # End of observation: 2020-01-12.
    # A buys on days Jan 1 (10 + 5), Jan 3 (20) and Jan 10 (30): 2 repeat days, last one 9 days after
    #   the first, age 11 days, mean repeat value (20 + 30) / 2 = 25.
    # B buys once on Jan 5: age 7 days, no repeat purchase, monetary value 0.
    # C buys on Jan 2 (1) and Jan 9 (4 + 2) and on Jan 15, which is dropped: 1 repeat day,
    #   recency 7, age 10, monetary value 6.
    got = lifetimes_summary(tiny, "customer_id", "date", "amount", observation_period_end="2020-01-12")
    want = expected_frame(
        {
            "frequency": [2, 0, 1],
            "recency": [9, 0, 7],
            "T": [11, 7, 10],
            "monetary_value": [25, 0, 6],
        }
    )
    assert_same(got, want)
    got_first = lifetimes_summary(
        tiny, "customer_id", "date", "amount", "2020-01-12", include_first_transaction=True
    )
    want_first = want.assign(frequency=[3.0, 1.0, 2.0], monetary_value=[(15 + 20 + 30) / 3, 7.0, 3.5])
    assert_same(got_first, want_first)


def test_tiny_weekly(tiny):
    # Weeks run Monday to Sunday. Week 0 is Dec 30 - Jan 5, week 1 is Jan 6 - Jan 12. The end
    # (Jan 12) falls in week 1.
    # A: week 0 (10 + 5 + 20 = 35), week 1 (30) -> frequency 1, recency 1, T 1, monetary 30.
    # B: week 0 only -> 0, 0, T 1, 0.
    # C: week 0 (1), week 1 (4 + 2 = 6); the Jan 15 purchase (week 2) is dropped -> 1, 1, 1, 6.
    got = lifetimes_summary(tiny, "customer_id", "date", "amount", "2020-01-12", freq="W")
    want = expected_frame(
        {"frequency": [1, 0, 1], "recency": [1, 0, 1], "T": [1, 1, 1], "monetary_value": [30, 0, 6]}
    )
    assert_same(got, want)


def test_tiny_without_monetary_and_default_end(tiny):
    # The default end is the last date, Jan 15. It keeps C's last purchase.
    got = lifetimes_summary(tiny, "customer_id", "date")
    want = expected_frame({"frequency": [2, 0, 2], "recency": [9, 0, 13], "T": [14, 10, 13]})
    assert_same(got, want)
    assert_same(got, lifetimes_reference(tiny, "customer_id", "date"))


def test_tiny_matches_lifetimes(tiny):
    for freq in ("D", "W"):
        ours = lifetimes_summary(tiny, "customer_id", "date", "amount", "2020-01-12", freq)
        theirs = lifetimes_reference(
            tiny, "customer_id", "date", "amount", observation_period_end="2020-01-12", freq=freq
        )
        assert_same(ours, theirs)


# --------------------------------------------------------------------------- tricky inputs


def test_string_dates_with_format(tiny):
    as_text = tiny.assign(date=tiny["date"].dt.strftime("%d.%m.%Y"))
    kwargs = {"datetime_format": "%d.%m.%Y", "observation_period_end": "12.01.2020"}
    ours = lifetimes_summary(as_text, "customer_id", "date", "amount", **kwargs)
    assert_same(ours, lifetimes_reference(as_text, "customer_id", "date", "amount", **kwargs))
    assert_same(ours, lifetimes_summary(tiny, "customer_id", "date", "amount", "2020-01-12"))


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(
            lambda df: df.assign(customer_id=df["customer_id"].map({"A": 3, "B": 1, "C": 2})), id="int"
        ),
        pytest.param(lambda df: df.assign(customer_id=df["customer_id"].astype(object)), id="object"),
        pytest.param(
            lambda df: df.assign(customer_id=pd.Categorical(df["customer_id"], categories=["C", "A", "B"])),
            id="categorical",
        ),
        pytest.param(lambda df: df.assign(date=df["date"].dt.tz_localize("Europe/Paris")), id="tz-aware"),
        pytest.param(lambda df: df.assign(date=df["date"].astype("datetime64[ns]")), id="ns"),
        pytest.param(lambda df: df.assign(amount=np.arange(len(df)) * 3), id="int-amount"),
        pytest.param(lambda df: df.assign(amount=df["amount"].astype("float32")), id="float32-amount"),
        pytest.param(lambda df: df.assign(amount=df["amount"].astype("Float64")), id="Float64-amount"),
        pytest.param(lambda df: df.assign(amount=df["amount"].where(df["amount"] != 4.0)), id="nan-amount"),
        pytest.param(
            lambda df: df.assign(customer_id=df["customer_id"].where(df["amount"] != 2)), id="nan-id"
        ),
        pytest.param(lambda df: df.assign(date=df["date"].where(df["amount"] != 20)), id="nat-date"),
    ],
)
@pytest.mark.parametrize("freq", ["D", "W"])
def test_input_variants_match_lifetimes(tiny, change, freq):
    df = change(tiny)
    for monetary in (None, "amount"):
        ours = lifetimes_summary(df, "customer_id", "date", monetary, freq=freq)
        assert_same(ours, lifetimes_reference(df, "customer_id", "date", monetary, freq=freq))


@pytest.mark.parametrize(
    "observation_period_end",
    [pd.Timestamp("2020-01-09 18:00"), pd.Period("2020-01-09", "D"), "2020-01-04", "2019-12-01"],
)
def test_observation_period_end_forms(tiny, observation_period_end):
    ours = lifetimes_summary(tiny, "customer_id", "date", "amount", observation_period_end)
    end = observation_period_end
    theirs = lifetimes_reference(
        tiny,
        "customer_id",
        "date",
        "amount",
        observation_period_end=end.to_timestamp() if isinstance(end, pd.Period) else end,
    )
    assert_same(ours, theirs)


def test_many_purchases_per_period_sum_like_lifetimes():
    """pandas sums a period with np.add.reduceat or with compensated sums, depending on the
    row order and on missing ids. Awkward floats show whether both sides used the same one."""
    rng = np.random.default_rng(42)
    n = 300
    amount = rng.standard_normal(n) * 10.0 ** rng.integers(-3, 8, n)
    days = rng.choice(["1/6/2020", "1/7/2020", "1/10/2020", "1/11/2020", "1/13/2020"], n)
    text_dates = pd.DataFrame({"c": "a", "d": days, "m": amount})
    ids = np.where(np.arange(n) < n - 5, "a", None)
    nan_ids = pd.DataFrame({"c": ids, "d": pd.Timestamp("2020-01-01"), "m": amount})
    for df, kwargs in [
        (text_dates, {"freq": "W", "include_first_transaction": True}),
        (text_dates, {"freq": "W"}),
        (nan_ids, {"include_first_transaction": True}),
    ]:
        assert_same(
            lifetimes_summary(df, "c", "d", "m", **kwargs), lifetimes_reference(df, "c", "d", "m", **kwargs)
        )


def test_empty_window_gives_empty_frame(tiny):
    ours = lifetimes_summary(tiny, "customer_id", "date", "amount", "2019-01-01")
    assert ours.empty
    assert_same(
        ours, lifetimes_reference(tiny, "customer_id", "date", "amount", observation_period_end="2019-01-01")
    )


def test_supported_freqs_all_match_lifetimes(tiny):
    for freq in SUPPORTED_FREQS:
        ours = lifetimes_summary(tiny, "customer_id", "date", "amount", freq=freq)
        assert_same(ours, lifetimes_reference(tiny, "customer_id", "date", "amount", freq=freq))


# --------------------------------------------------------------------------- property test

CUSTOMER_IDS = ["a", "b", "c", "aa", "b1", "Z", "ä"]
START = pd.Timestamp("2021-03-01")
DATE_STYLES = {
    "datetime": None,
    "iso": "%Y-%m-%d %H:%M",
    "us": "%m/%d/%Y",  # text order is not time order
}


@st.composite
def transaction_logs(draw: st.DrawFn) -> tuple[pd.DataFrame, dict]:
    n = draw(st.integers(1, 40))
    rows = draw(
        st.lists(
            st.tuples(
                st.sampled_from(CUSTOMER_IDS),
                st.integers(0, 364),  # day offset, dates within a year
                st.sampled_from([0, 0, 0, 9, 23]),  # hour
                st.one_of(
                    st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False),
                    st.sampled_from([0.1, 0.2, 0.3, 1e-9, 1e9, 2.5]),
                ),
            ),
            min_size=n,
            max_size=n,
        )
    )
    ids, days, hours, amounts = map(list, zip(*rows, strict=True))
    dates = START + pd.to_timedelta(days, unit="D") + pd.to_timedelta(hours, unit="h")
    df = pd.DataFrame({"cust": pd.Series(ids, dtype="str"), "when": dates, "value": amounts})
    style = draw(st.sampled_from(sorted(DATE_STYLES)))
    kwargs: dict = {}
    if DATE_STYLES[style] is not None:
        df["when"] = df["when"].dt.strftime(DATE_STYLES[style])
        kwargs["datetime_format"] = DATE_STYLES[style]
    if draw(st.booleans()):
        kwargs["observation_period_end"] = START + pd.Timedelta(days=draw(st.integers(0, 364)))
    kwargs["include_first_transaction"] = draw(st.booleans())
    return df, kwargs


@pytest.mark.parametrize("freq", ["D", "W"])
@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=transaction_logs(), with_monetary=st.booleans())
def test_property_matches_lifetimes(freq, data, with_monetary):
    df, kwargs = data
    monetary = "value" if with_monetary else None
    theirs = lifetimes_reference(df, "cust", "when", monetary, freq=freq, **kwargs)
    ours = lifetimes_summary(df, "cust", "when", monetary, freq=freq, **kwargs)
    assert_same(ours, theirs)


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (("nope", "date"), "'nope'"),
        (("customer_id", "nope"), "'nope'"),
        (("customer_id", "date", "nope"), "'nope'"),
        (("customer_id", "date", "customer_id"), "'customer_id'.*numeric"),
    ],
)
def test_bad_columns(tiny, args, match):
    with pytest.raises(ValueError, match=match):
        lifetimes_summary(tiny, *args)


def test_unparseable_dates(tiny):
    bad = tiny.assign(date=tiny["date"].dt.strftime("%Y-%m-%d"))
    bad.iloc[2, bad.columns.get_loc("date")] = "garbage"
    with pytest.raises(ValueError, match="'date'"):
        lifetimes_summary(bad, "customer_id", "date")
    with pytest.raises(ValueError, match="'date'"):
        lifetimes_summary(bad, "customer_id", "date", observation_period_end="2020-01-12")
    with pytest.raises(ValueError, match="'date'"):
        lifetimes_summary(
            bad, "customer_id", "date", datetime_format="%Y-%m-%d", observation_period_end="2020-01-12"
        )


def test_no_valid_dates(tiny):
    with pytest.raises(ValueError, match="'date'"):
        lifetimes_summary(tiny.assign(date=pd.NaT), "customer_id", "date")
    with pytest.raises(ValueError, match="'date'"):
        lifetimes_summary(tiny.iloc[:0], "customer_id", "date")


@pytest.mark.parametrize("freq", ["M", "Y", "2D", "min", "H", "d", ""])
def test_bad_freq(tiny, freq):
    with pytest.raises(ValueError, match=r"freq must be one of 'D', 'W'"):
        lifetimes_summary(tiny, "customer_id", "date", freq=freq)


@pytest.mark.parametrize("end", ["not a date", [1, 2]])
def test_bad_observation_period_end(tiny, end):
    with pytest.raises(ValueError, match="observation_period_end"):
        lifetimes_summary(tiny, "customer_id", "date", observation_period_end=end)


def test_not_a_dataframe():
    with pytest.raises(TypeError, match="DataFrame"):
        lifetimes_summary([("a", "2020-01-01")], "customer_id", "date")  # type: ignore[arg-type]
