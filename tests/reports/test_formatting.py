"""Table formatting: units chosen by magnitude, one per column, named in the header."""

from __future__ import annotations

import pandas as pd
import pytest

from reports import columns as C
from reports import formatting as fmt


@pytest.mark.parametrize(("gmacs", "expected"), [
    ([0.00143, 0.0013], (1e-3, "MMACs")), ([2.5, 0.3], (1.0, "GMACs")), ([0.0004], (1e-6, "KMACs")),
    ([float("nan")], (1.0, "GMACs"))])
def test_macs_unit_by_largest_value(gmacs, expected):
    assert fmt.macs_unit(gmacs) == expected


@pytest.mark.parametrize(("counts", "expected"), [([93114, 127350], (1e3, "K")), ([2_500_000], (1e6, "M")),
                                                  ([12], (1.0, ""))])
def test_params_unit_by_largest_value(counts, expected):
    assert fmt.params_unit(counts) == expected


def test_scaled_three_significant_digits_never_an_exponent():
    assert [fmt.scaled(x) for x in (1.4349, 93.114, 127.35, 0.00123, 999.7, 0.0)] == [
        "1.43", "93.1", "127", "0.00123", "1000", "0"]


def test_macs_in_the_unit_of_its_neighbours():
    assert fmt.macs(0.00143) == "1.43 MMACs"
    assert fmt.macs(0.000359, [0.000359, 0.00198]) == "0.359 MMACs"


def test_format_table_one_unit_per_column_in_the_header():
    frame = pd.DataFrame({C.GMACS: [0.00143, 0.0004], C.PARAMS: [93114, 950], C.VAL_ACC: [0.9, 0.8]})
    out = fmt.format_table(frame)
    assert list(out.columns) == ["MMACs", "params (K)", "val acc"]
    assert out.values.tolist() == [["1.43", "93.1", "90.00%"], ["0.400", "0.950", "80.00%"]]


def test_format_table_raw_headers_keep_raw_values():
    out = fmt.format_table(pd.DataFrame({C.GMACS: [0.00143], C.PARAMS: [93114]}), headers={})
    assert out.to_dict("list") == {C.GMACS: ["0.00143"], C.PARAMS: ["93.11K"]}
