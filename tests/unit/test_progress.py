"""User text printed through rich: shown as written, never obeyed."""

import io

from rich.console import Console

from seasonrec.progress import shown


def test_markup_and_escape_bytes_in_an_id_print_literally():
    out, hostile = io.StringIO(), "[bold red]U1[/]\x1b[2J"
    Console(file=out, force_terminal=True, color_system="truecolor").print(f"user {shown(hostile)}", highlight=False)
    printed = out.getvalue()
    assert "[bold red]U1[/]" in printed and "\\x1b[2J" in printed
    assert "\x1b[2J" not in printed and "\x1b[1m" not in printed  # no clear-screen, no bold
