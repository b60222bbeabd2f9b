"""The ``dgmix`` command line. Each verb lives in its own module that exposes ``register(app)``."""

from __future__ import annotations

import importlib

import typer

app = typer.Typer(
    name="dgmix",
    help="DG-Mix anomalous machine sound detection: data, features, training, scoring, metrics.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# Verb modules, in pipeline order. A module listed here that is missing is an error, not a skip.
_VERBS = ["synth", "data", "features", "train", "run", "score", "evaluate", "methods", "serve", "watch", "export",
          "report", "download"]

for _name in _VERBS:
    importlib.import_module(f"dgmix.cli.{_name}").register(app)


def main() -> None:
    app()
