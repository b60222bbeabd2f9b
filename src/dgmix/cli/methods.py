"""``dgmix methods``: the registered methods, what each does and the scoring it recommends."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    @app.command()
    def methods() -> None:
        """List the methods `dgmix run --methods` accepts (paper rows marked *)."""
        from dgmix.methods import get_method, method_names

        for name in method_names():
            m = get_method(name)
            extra = ", ".join(f"{k}={v}" for k, v in m.default_scoring.items())
            typer.echo(f"{name}{'*' if m.paper else ''}\t{m.summary}" + (f" [scoring: {extra}]" if extra else ""))
