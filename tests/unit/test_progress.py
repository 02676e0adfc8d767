"""Progress and user text on the terminal: bars on a TTY, plain lines elsewhere, ids printed not obeyed."""

import io

from rich.console import Console

from seasonrec import progress as p
from seasonrec.progress import progress, shown, task


def test_markup_and_escape_bytes_in_an_id_print_literally():
    out, hostile = io.StringIO(), "[bold red]U1[/]\x1b[2J"
    Console(file=out, force_terminal=True, color_system="truecolor").print(f"user {shown(hostile)}", highlight=False)
    printed = out.getvalue()
    assert "[bold red]U1[/]" in printed and "\\x1b[2J" in printed
    assert "\x1b[2J" not in printed and "\x1b[1m" not in printed  # no clear-screen, no bold


def test_off_a_terminal_a_task_is_plain_lines_with_its_counts_and_note(capsys, monkeypatch):
    monkeypatch.setattr(p, "PLAIN_EVERY_S", 0.0)  # a line at every step, as a slow step gets every 30 s
    with task("building", total=2) as bar:
        bar.advance()
        bar.note("val_loss 0.5")
        bar.advance()
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert lines[0] == "building: 1/2 (0.0 s)"
    assert lines[-1].startswith("building: done 2/2, val_loss 0.5 in ")
    assert "\x1b" not in err and "\r" not in err


def test_quiet_between_lines_off_a_terminal(capsys):
    assert list(progress(range(500), description="steps")) == list(range(500))
    assert capsys.readouterr().err.splitlines()[0].startswith("steps: done 500/500 in ")


def test_on_a_terminal_nested_tasks_share_one_display_and_stay_once_done(monkeypatch):
    out = io.StringIO()
    monkeypatch.setattr(p, "console", Console(file=out, force_terminal=True, width=100))
    with task("outer", total=1) as outer:
        for _ in progress([1, 2], description="inner"):
            pass
        outer.advance()
    assert p._live is None  # the display is stopped with the outermost task
    text = out.getvalue()
    assert "outer" in text and "inner" in text and "2/2" in text
