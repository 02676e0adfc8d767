import json
import os
import re
import subprocess
import sys

import polars as pl
import pytest

from seasonrec.cli import main


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch):
    for key in list(os.environ):
        if key.startswith("SEASONREC__"):
            monkeypatch.delenv(key)


@pytest.fixture
def config(tmp_path):
    path = tmp_path / "settings.yaml"
    path.write_text(f"paths:\n  data_dir: {tmp_path / 'data'}\n")
    return path


def _run(capsys, *argv):
    code = main(["--json", *map(str, argv)])
    out, err = capsys.readouterr()
    return code, out, err


def _ingest(capsys, config, path, out, source="online-retail"):
    return _run(capsys, "--config", config, "data", "ingest", "--source", source, "--input", path, "--out", out)


def _assert_one_line_error(err):
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error:")
    assert "Traceback" not in err


def _generate(capsys, config, out):
    return _run(
        capsys,
        "--config",
        config,
        "data",
        "generate",
        "--out",
        out,
        "--users",
        40,
        "--items",
        15,
        "--start",
        "2024-01-01",
        "--end",
        "2024-03-31",
        "--seed",
        2,
    )


def test_generate_then_ingest_prints_json_summaries(tmp_path, capsys, config):
    code, out, _ = _generate(capsys, config, tmp_path / "raw")
    assert code == 0
    generated = json.loads(out)
    assert generated["users"] == 40
    assert generated["items"] == 15
    assert generated["events"] > 0

    code, out, _ = _ingest(capsys, config, tmp_path / "raw", tmp_path / "canonical", source="canonical")
    assert code == 0
    summary = json.loads(out)
    assert summary["rows_in"] == generated["events"] == summary["rows_accepted"]
    assert pl.read_parquet(tmp_path / "canonical" / "events.parquet").height == generated["events"]


def test_generate_defaults_to_the_configured_data_dir(tmp_path, capsys, config):
    code, out, _ = _run(
        capsys,
        "--config",
        config,
        "data",
        "generate",
        "--users",
        10,
        "--items",
        5,
        "--start",
        "2024-01-01",
        "--end",
        "2024-01-31",
    )
    assert code == 0
    assert (tmp_path / "data" / "raw" / "items.parquet").is_file()
    assert json.loads(out)["items"] == 5


def test_ingest_online_retail(tmp_path, capsys, config):
    path = tmp_path / "retail.csv"
    path.write_text(
        "Invoice,StockCode,Description,Quantity,InvoiceDate,Price,Customer ID,Country\n"
        "536365,85123A,WHITE HANGING HEART T-LIGHT HOLDER,6,2010-12-01 08:26:00,2.55,17850,United Kingdom\n"
        "C536379,85123A,WHITE HANGING HEART T-LIGHT HOLDER,-1,2010-12-01 09:41:00,2.55,17850,United Kingdom\n"
    )
    code, out, _ = _ingest(capsys, config, path, tmp_path / "out", source="online-retail")
    assert code == 0
    assert json.loads(out) == {"rows_in": 2, "rows_accepted": 1, "rows_rejected": {"cancellation": 1}}


def test_missing_input_is_one_error_line(tmp_path, capsys, config):
    code, out, err = _ingest(capsys, config, tmp_path / "nowhere" / "events.csv", tmp_path / "out", source="canonical")
    assert code == 2
    assert out == ""
    _assert_one_line_error(err)


def test_missing_column_error_names_file_and_column(tmp_path, capsys, config):
    path = tmp_path / "retail.csv"
    path.write_text("Invoice,StockCode\n536365,85123A\n")
    code, _, err = _ingest(capsys, config, path, tmp_path / "out", source="online-retail")
    assert code == 2
    _assert_one_line_error(err)
    assert "retail.csv" in err
    assert "'Description'" in err


def test_empty_input_file_is_one_error_line(tmp_path, capsys, config):
    path = tmp_path / "retail.csv"
    path.write_text("")
    code, _, err = _ingest(capsys, config, path, tmp_path / "out", source="online-retail")
    assert code == 2
    _assert_one_line_error(err)
    assert "empty" in err


def test_all_rows_rejected_is_one_error_line(tmp_path, capsys, config):
    path = tmp_path / "retail.csv"
    path.write_text(
        "Invoice,StockCode,Description,Quantity,InvoiceDate,Price,Customer ID,Country\n"
        "C536379,85123A,HOLDER,-1,2010-12-01 09:41:00,2.55,17850,United Kingdom\n"
    )
    code, _, err = _ingest(capsys, config, path, tmp_path / "out", source="online-retail")
    assert code == 2
    _assert_one_line_error(err)
    assert "cancellation" in err


def test_end_before_start_is_one_error_line(tmp_path, capsys, config):
    code, out, err = _run(
        capsys,
        "--config",
        config,
        "data",
        "generate",
        "--out",
        tmp_path / "raw",
        "--users",
        10,
        "--items",
        5,
        "--start",
        "2024-05-01",
        "--end",
        "2024-01-01",
    )
    assert code == 2
    assert out == ""
    _assert_one_line_error(err)


def test_invalid_generate_option_is_one_error_line(tmp_path, capsys, config):
    code, out, err = _run(capsys, "--config", config, "data", "generate", "--out", tmp_path / "raw", "--users", 0)
    assert code != 0
    assert out == ""
    _assert_one_line_error(err)
    assert not (tmp_path / "raw").exists()


def test_unknown_config_key_is_one_error_line(tmp_path, capsys):
    path = tmp_path / "settings.yaml"
    path.write_text("paths:\n  data_dri: x\n")
    code, _, err = _run(capsys, "--config", path, "data", "generate", "--out", tmp_path / "raw")
    assert code == 2
    _assert_one_line_error(err)
    assert "paths.data_dri" in err


def test_bad_environment_override_is_one_error_line(tmp_path, capsys, config, monkeypatch):
    monkeypatch.setenv("SEASONREC__FEAST__PROFILE", "mongo")
    code, _, err = _run(capsys, "--config", config, "data", "generate", "--out", tmp_path / "raw")
    assert code == 2
    _assert_one_line_error(err)
    assert "feast.profile" in err
    assert not (tmp_path / "raw").exists()


def test_missing_config_file_is_one_error_line(tmp_path, capsys):
    code, _, err = _run(capsys, "--config", tmp_path / "absent.yaml", "data", "generate", "--out", tmp_path / "raw")
    assert code == 2
    _assert_one_line_error(err)
    assert "absent.yaml" in err


def test_pseudonymize_without_a_key_stops_every_command_at_start_in_one_line(tmp_path, capsys, config, monkeypatch):
    monkeypatch.setenv("SEASONREC__PRIVACY__PSEUDONYMIZE", "true")
    code, _, err = _run(capsys, "--config", config, "data", "generate", "--out", tmp_path / "raw")
    assert code == 2 and not (tmp_path / "raw").exists()  # nothing ran
    _assert_one_line_error(err)
    assert "privacy: a key is required when pseudonymize is true (set SEASONREC__PRIVACY__KEY)" in err


def test_malformed_date_option_is_a_usage_error(tmp_path, capsys, config):
    with pytest.raises(SystemExit) as excinfo:
        main(["--config", str(config), "data", "generate", "--start", "01/05/2024"])
    assert excinfo.value.code == 2
    err = capsys.readouterr().err
    assert "01/05/2024" in err
    assert "Traceback" not in err


RETAIL_HEADER = b"Invoice,StockCode,Description,Quantity,InvoiceDate,Price,Customer ID,Country\n"
RETAIL_LINE = b"536365,85123A,HEART HOLDER,6,2010-12-01 08:26:00,2.55,17850,United Kingdom\n"


def _nested_parquet(path):
    frame = pl.read_csv(RETAIL_HEADER + RETAIL_LINE)
    frame.with_columns(Tags=pl.lit(["gift", "heart"])).write_parquet(path)


@pytest.mark.parametrize(
    ("name", "write", "words"),
    [
        ("latin1.csv", lambda p: p.write_bytes(RETAIL_HEADER + RETAIL_LINE.replace(b"HEART", b"C\xc6UR")), "UTF-8"),
        ("ragged.csv", lambda p: p.write_bytes(RETAIL_HEADER + RETAIL_LINE + RETAIL_LINE[:-1] + b",x\n"), "line 3"),
        ("corrupt.xlsx", lambda p: p.write_bytes(b"PK\x03\x04 half a zip"), "xlsx"),
        ("nested.parquet", _nested_parquet, "'Tags'"),
    ],
)
def test_unreadable_file_is_one_error_line_naming_the_file(tmp_path, capsys, config, name, write, words):
    path = tmp_path / name
    write(path)
    code, out, err = _ingest(capsys, config, path, tmp_path / "out")
    assert code == 2
    assert out == ""
    _assert_one_line_error(err)
    assert str(path) in err
    assert words in err
    for parser_words in ("calamine", "Zip", "Schema", "ComputeError", "truncate_ragged_lines", "polars"):
        assert parser_words not in err
    assert not (tmp_path / "out").exists()


EVENTS_CSV = (
    b"user_id,item_id,event_ts,event_type,quantity,price,region\nU1,I1,2024-01-02T10:00:00Z,purchase,1,9.5,GB\n"
)
ITEMS_CSV = b"item_id,title,category,price,launch_ts,stock\nI1,Heart Holder,decor,9.5,2023-01-01T00:00:00Z,5\n"


@pytest.mark.parametrize(
    ("bad", "content", "words"),
    [
        ("events.csv", EVENTS_CSV + b"U2,I1,2024-01-03T10:00:00Z,purchase,1,9.5,GB,extra\n", "line 3"),
        ("items.csv", ITEMS_CSV.replace(b"Heart", b"C\xc6ur"), "UTF-8"),
    ],
    ids=["ragged-events", "latin1-items"],
)
def test_an_unreadable_table_of_a_canonical_folder_is_one_line_naming_it(tmp_path, capsys, config, bad, content, words):
    folder = tmp_path / "raw"
    folder.mkdir()
    (folder / "events.csv").write_bytes(EVENTS_CSV)
    (folder / "items.csv").write_bytes(ITEMS_CSV)
    (folder / bad).write_bytes(content)
    code, out, err = _ingest(capsys, config, folder, tmp_path / "out", source="canonical")
    assert code == 2 and out == ""
    _assert_one_line_error(err)
    assert str(folder / bad) in err and words in err
    for parser_words in ("ComputeError", "truncate_ragged_lines", "polars", "utf8-lossy"):
        assert parser_words not in err
    assert not (tmp_path / "out").exists()


def test_error_line_prints_markup_and_escape_bytes_literally(tmp_path, capsys, config):
    name = "\x1b[2J\x1b[31m[bold red]x[/].csv"
    code, _, err = _ingest(capsys, config, tmp_path / name, tmp_path / "out")
    assert code == 2
    _assert_one_line_error(err)
    assert "\x1b" not in err
    assert "\\x1b[2J\\x1b[31m[bold red]x[/].csv" in err


def test_column_names_from_the_file_cannot_rewrite_the_terminal(tmp_path, capsys, config):
    path = tmp_path / "retail.csv"
    path.write_text("Invoice,\x1b]0;owned\x07StockCode\n536365,85123A\n")
    code, _, err = _ingest(capsys, config, path, tmp_path / "out")
    assert code == 2
    _assert_one_line_error(err)
    assert "\x1b" not in err and "\x07" not in err
    assert "\\x1b]0;owned\\x07StockCode" in err


def test_log_lines_show_escape_bytes_from_file_names_literally(tmp_path, config):
    # Run as a real process: under pytest the root logger already has pytest's handlers.
    folder = tmp_path / "\x1b[31mshop"
    folder.mkdir()
    (folder / "retail.csv").write_bytes(RETAIL_HEADER + RETAIL_LINE)
    argv = ["--log-level", "DEBUG", "--config", config, "data", "ingest", "--source", "online-retail"]
    argv += ["--input", folder / "retail.csv", "--out", tmp_path / "out"]
    done = subprocess.run(
        [sys.executable, "-m", "seasonrec.cli", *map(str, argv)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert "ingested" in done.stderr  # the log line naming the input, at DEBUG now the summary says it
    assert "\x1b" not in done.stderr + done.stdout
    assert "\\x1b[31mshop" in done.stderr


# `serve status` made to log one line as Feast would and one as seasonrec does.
QUIET_PROBE = """
import logging, sys
from seasonrec import cli

def speak(args, settings):
    logging.getLogger("feast.infra.registry").info("Registry cache expired")
    logging.getLogger("seasonrec.probe").info("ingested")

cli._serve = speak
sys.exit(cli.main(sys.argv[1:] + ["serve", "status"]))
"""


@pytest.mark.parametrize(("flags", "feast_heard"), [([], False), (["-v"], True), (["--log-level", "DEBUG"], True)])
def test_other_libraries_are_quiet_below_warning_unless_asked(flags, feast_heard):
    # A real process: under pytest the root logger already has pytest's handlers.
    done = subprocess.run([sys.executable, "-c", QUIET_PROBE, *flags], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "ingested" in done.stderr  # seasonrec's own INFO lines stay
    assert ("Registry cache expired" in done.stderr) is feast_heard


def test_a_stage_prints_a_short_summary_keeps_the_json_in_a_file_and_no_control_sequences(tmp_path, config):
    # A real pipe, as in CI: no TTY anywhere, so progress must come as plain lines.
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEASONREC")}
    argv = ["data", "generate", "--out", tmp_path / "raw", "--users", 40, "--items", 15, "--seed", 2]
    argv += ["--start", "2024-01-01", "--end", "2024-03-31"]
    command = [sys.executable, "-m", "seasonrec.cli", "--config", str(config), *map(str, argv)]
    proc = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    saved = tmp_path / "data" / "runs" / "data-generate.json"
    assert json.loads(saved.read_text())["users"] == 40
    [summary] = proc.stdout.splitlines()  # one line: the terminal wraps it, so a path stays whole
    assert summary.startswith("data generate: users 40 · items 15 · events ")
    assert summary.endswith(f"(all of it: {saved})")
    assert "generating users: done 1/1" in proc.stderr
    for stream in (proc.stdout, proc.stderr):
        assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f]", stream), repr(stream[-500:])  # no ESC, no \r
