"""How a command fails on an expected error (bad input, a missing file, a refused operation):
one line on stderr, ``error: ...``, and an exit status, never a traceback. Every ``notefeed``
command module uses :func:`fail`."""

from __future__ import annotations

from typing import NoReturn

__all__ = ["fail"]


def fail(msg: str, code: int = 2) -> NoReturn:
    """Print ``error: msg`` on stderr (red on a terminal; the message's own brackets are kept
    as text) and exit with ``code``."""
    import typer
    from rich.console import Console
    from rich.markup import escape

    Console(stderr=True).print(f"[red]error:[/red] {escape(msg)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)
