"""CSV files as Excel and other tools write them: the dialect detected from a sample, or set.

Every case is a real file written to tmp_path and read by :func:`crm_xl.io.csv.read_csv_file`.
"""

from __future__ import annotations

import codecs
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pcsv
import pytest

from crm_xl.errors import ConfigError, InputError
from crm_xl.io.csv import read_csv, read_csv_file, write_tables
from crm_xl.io.dialect import SAMPLE_BYTES, CsvOptions, split_settings

HEADER = ["invoice_id", "invoice_date", "customer_id", "product_id", "quantity", "revenue"]


def write(path: Path, lines: list[str], encoding: str = "utf-8", newline: str = "\r\n") -> Path:
    """A file as a spreadsheet program saves it: the lines joined by ``newline``, in ``encoding``."""
    path.write_bytes((newline.join(lines) + newline).encode(encoding))
    return path


def options(**settings: str) -> CsvOptions:
    return CsvOptions.from_settings(settings)


def test_excel_pt_csv_semicolons_decimal_commas_cp1252(tmp_path: Path) -> None:
    """Excel's "CSV (separado por vírgulas)" in a Portuguese locale: ; between fields, 109,65, ANSI."""
    path = write(tmp_path / "tx.csv", [";".join(HEADER), "I1;2024-01-10;00123;P1;2;109,65",
                                       "I2;2024-01-11;João;P1;1;1.234,56", "I3;2024-01-12;C3;P1;3,5;-7,1",
                                       "I4;2024-01-12;C3;P1;1;"], encoding="cp1252")
    file = read_csv_file(path, "transactions")
    assert (file.delimiter, file.decimal, file.encoding, file.encoding_guessed) == (";", ",", "cp1252", True)
    frame = file.frame
    assert list(frame.columns) == HEADER
    assert frame["revenue"].tolist()[:3] == [109.65, 1234.56, -7.1] and pd.isna(frame["revenue"].iloc[3])
    assert frame["quantity"].tolist() == [2, 1, 3.5, 1]
    assert frame["customer_id"].tolist()[:2] == ["00123", "João"]
    [note] = file.notes()
    assert (note["table"], note["rule"], note["severity"], note["rows"]) == ("transactions", "not_utf8", "warning", 4)
    assert "tx.csv" in note["message"] and "csv_encoding" in note["message"]


def test_utf8_with_bom_keeps_the_first_header_and_accents(tmp_path: Path) -> None:
    path = tmp_path / "customers.csv"
    path.write_bytes(codecs.BOM_UTF8 + "customer_id,city\n00123,São Paulo\n".encode())
    file = read_csv_file(path, "customers")
    assert file.encoding == "utf-8-sig" and not file.notes()
    assert file.frame.to_dict("list") == {"customer_id": ["00123"], "city": ["São Paulo"]}


@pytest.mark.parametrize("delimiter", [",", ";", "\t", "|"], ids=["comma", "semicolon", "tab", "pipe"])
def test_delimiter_is_found_from_the_header(tmp_path: Path, delimiter: str) -> None:
    rows = [HEADER, ["I1", "2024-01-10", "C1", "P1", "2", "109.65"], ["I2", "2024-01-11", "C2", "P1", "1", "3"]]
    path = write(tmp_path / "tx.csv", [delimiter.join(r) for r in rows], newline="\n")
    file = read_csv_file(path, "transactions")
    assert (file.delimiter, file.decimal) == (delimiter, ".")
    assert list(file.frame.columns) == HEADER
    assert file.frame["revenue"].tolist() == [109.65, 3.0]


def test_text_with_commas_in_a_semicolon_file_does_not_fool_the_detection(tmp_path: Path) -> None:
    lines = ["customer_id;customer_name;city"] + [f"C{i};Silva, Ana {i};Porto, Norte" for i in range(30)]
    file = read_csv_file(write(tmp_path / "c.csv", lines), "customers")
    assert file.delimiter == ";"
    assert file.frame["customer_name"].iloc[0] == "Silva, Ana 0"


def test_tab_file_with_decimal_commas(tmp_path: Path) -> None:
    lines = ["\t".join(["product_id", "category", "unit_size"]), "P1\tconsumable\t0,5", "P2\tdevice\t1"]
    file = read_csv_file(write(tmp_path / "p.csv", lines), "products")
    assert (file.delimiter, file.decimal) == ("\t", ",")
    assert file.frame["unit_size"].tolist() == [0.5, 1.0]


def test_quoted_line_breaks_in_a_big_file(tmp_path: Path) -> None:
    """Past the sample, values with line breaks (an address, a note): pyarrow needs newlines_in_values."""
    plain = [f"C{i},Customer {i},Lisbon" for i in range(SAMPLE_BYTES // 20)]
    broken = [f'D{i},"Rua {i}\nBloco A\nPiso 2\n3 Esq",Porto' for i in range(60_000)]
    path = write(tmp_path / "customers.csv", ["customer_id,customer_name,city", *plain, *broken], newline="\n")
    with pytest.raises(pa.ArrowInvalid, match="CSV parse error"):   # what the user used to see
        pcsv.read_csv(path)
    frame = read_csv(path, "customers")
    assert len(frame) == len(plain) + len(broken)
    assert frame["customer_name"].iloc[-1] == "Rua 59999\nBloco A\nPiso 2\n3 Esq"
    assert frame["city"].iloc[-1] == "Porto"


def test_quoted_line_break_in_the_sample(tmp_path: Path) -> None:
    path = write(tmp_path / "c.csv", ["customer_id,customer_name", 'C1,"two\r\nlines"', "C2,one"])
    assert read_csv(path, "customers")["customer_name"].tolist() == ["two\r\nlines", "one"]


def test_not_utf8_past_the_sample_falls_back_to_cp1252(tmp_path: Path) -> None:
    lines = ["customer_id,city", *[f"C{i},Lisbon" for i in range(SAMPLE_BYTES // 10)], "C-last,Évora"]
    file = read_csv_file(write(tmp_path / "c.csv", lines, encoding="cp1252"), "customers")
    assert (file.encoding, file.encoding_guessed) == ("cp1252", True)
    assert file.frame["city"].iloc[-1] == "Évora"
    assert [n["rule"] for n in file.notes()] == ["not_utf8"]


@pytest.mark.parametrize("plain_lines", [0, SAMPLE_BYTES // 10], ids=["in the sample", "past the sample"])
def test_bytes_that_are_no_text_are_one_clear_error(tmp_path: Path, plain_lines: int) -> None:
    path = tmp_path / "c.csv"
    path.write_bytes(b"customer_id,city\n" + b"C0,Lisbon\n" * plain_lines + b"C1,\x81\x8d\n")
    with pytest.raises(InputError) as caught:
        read_csv(path, "customers")
    message = str(caught.value)
    assert message.startswith("customers: c.csv is neither UTF-8 nor Windows-1252 text (it has the byte 0x81)")
    assert "csv_encoding" in message and "\n" not in message


def test_excel_unicode_text_is_utf16_with_tabs(tmp_path: Path) -> None:
    path = tmp_path / "customers.txt"
    path.write_bytes("customer_id\tcity\r\n00123\tSão Paulo\r\n".encode("utf-16"))
    file = read_csv_file(path, "customers")
    assert (file.encoding, file.delimiter) == ("utf-16", "\t")
    assert file.frame.to_dict("list") == {"customer_id": ["00123"], "city": ["São Paulo"]}


def test_a_ragged_semicolon_file_is_an_error_not_one_column(tmp_path: Path) -> None:
    path = write(tmp_path / "c.csv", ["customer_id;city;created_date", "C1;Porto;2020-01-01", "C2;Faro"])
    with pytest.raises(InputError) as caught:
        read_csv(path, "customers")
    message = str(caught.value)
    assert message.startswith("customers: c.csv is not a readable CSV file (read with delimiter ';', encoding utf-8)")
    assert "line 3 has 2 fields where the header has 3" in message and "csv_delimiter" in message
    assert "\n" not in message and "Faro" not in message     # the row itself is never quoted


def test_a_file_not_in_the_set_encoding(tmp_path: Path) -> None:
    path = write(tmp_path / "c.csv", ["customer_id,city", "C1,Évora"], encoding="cp1252")
    with pytest.raises(InputError) as caught:
        read_csv(path, "customers", options(csv_encoding="utf-8"))
    assert str(caught.value) == ("customers: c.csv is not utf-8 text: set csv_encoding to the file's encoding "
                                 "(e.g. utf-8, cp1252, latin-1), or to auto")


def test_explicit_settings_override_the_detection(tmp_path: Path) -> None:
    path = write(tmp_path / "tx.csv", [";".join(HEADER), "I1;2024-01-10;C1;P1;2;109,65"], encoding="latin-1")
    file = read_csv_file(path, "transactions", options(csv_decimal=".", csv_encoding="latin-1"))
    assert (file.encoding, file.encoding_guessed, file.decimal) == ("iso8859-1", False, ".")
    assert file.frame["revenue"].tolist() == ["109,65"] and not file.notes()   # left for staging to refuse
    as_one_column = read_csv_file(path, "transactions", options(csv_delimiter="|"))
    assert list(as_one_column.frame.columns) == [";".join(HEADER)]
    assert read_csv_file(path, "transactions", options(csv_delimiter="semicolon")).frame["revenue"].tolist() == [109.65]


def test_decimal_comma_can_be_set_for_a_comma_file_with_quoted_numbers(tmp_path: Path) -> None:
    path = write(tmp_path / "tx.csv", [",".join(HEADER), 'I1,2024-01-10,C1,P1,2,"109,65"'])
    assert read_csv(path, "transactions")["revenue"].tolist() == ["109,65"]
    assert read_csv(path, "transactions", options(csv_decimal=","))["revenue"].tolist() == [109.65]


def test_unreadable_values_stay_as_written_for_the_data_quality_table(tmp_path: Path) -> None:
    path = write(tmp_path / "tx.csv", [";".join(HEADER), "I1;2024-01-10;C1;P1;2;109,65", "I2;2024-01-10;C1;P1;2;abc",
                                       "I3;2024-01-10;C1;P1;2;1 234,5"])
    assert read_csv(path, "transactions")["revenue"].tolist() == ["109.65", "abc", "1234.5"]


@pytest.mark.parametrize(("key", "value", "needle"), [
    ("csv_delimiter", "ab", "one character"),
    ("csv_delimiter", '"', "one character"),
    ("csv_decimal", "x", ". (point) or , (comma)"),
    ("csv_encoding", "klingon", "not a known text encoding"),
])
def test_bad_setting_value_names_the_setting(key: str, value: str, needle: str) -> None:
    with pytest.raises(ConfigError) as caught:
        CsvOptions.from_settings({key: value})
    assert caught.value.key == key
    assert str(caught.value).startswith(f"Config '{key}': got {value!r}") and needle in str(caught.value)


def test_settings_blank_auto_and_names() -> None:
    assert options(csv_delimiter="", csv_decimal="AUTO", csv_encoding=" auto ") == CsvOptions()
    assert options(csv_delimiter="tab").delimiter == "\t" and options(csv_delimiter="\t").delimiter == "\t"
    assert options(csv_encoding="UTF8").encoding == "utf-8"
    csv_part, rest = split_settings({"csv_delimiter": ";", "report_month": "2024-12"})
    assert (csv_part.delimiter, rest) == (";", {"report_month": "2024-12"})


def test_our_own_outputs_read_back(tmp_path: Path) -> None:
    """Written with a BOM, months as YYYY-MM, dates as YYYY-MM-DD; the reader takes them back."""
    month = pd.to_datetime(["2024-11-01", "2024-12-01"])
    table = pd.DataFrame({"report_month": month, "customer_id": ["00123", "São"],
                          "first_core_date": pd.to_datetime(["2024-01-05", None]), "m1": [1.5, 2.0]})
    path = write_tables({"customer_history": table}, tmp_path)["customer_history"]
    raw = path.read_bytes()
    assert raw.startswith(codecs.BOM_UTF8)
    assert raw.decode("utf-8-sig").splitlines()[1] == '"2024-11","00123",2024-01-05,1.5'
    back = read_csv(path, "customers")
    assert back["customer_id"].tolist() == ["00123", "São"]
    assert back["report_month"].tolist() == ["2024-11", "2024-12"]
    plain = write_tables({"customer_history": table}, tmp_path / "plain", bom=False)["customer_history"]
    assert plain.read_bytes() == raw[len(codecs.BOM_UTF8):]
