"""Options that several CLI verbs declare alike (``Annotated`` types; a verb may still declare its own)."""

from __future__ import annotations

from enum import Enum
from typing import Annotated

import typer

from dgmix.config import DEFAULT_PRESET

PRESET_HELP = (f"paper | cpu | tiny (default {DEFAULT_PRESET}, the same for every verb: a short schedule "
               "for a 2-core machine; paper = the paper's schedule, 100 + 20 epochs).")


class OnError(str, Enum):
    """What to do with a file that cannot be used."""

    skip = "skip"
    fail = "fail"


Verbose = Annotated[bool, typer.Option("--verbose", "-v")]
Progress = Annotated[bool, typer.Option("--progress/--no-progress", help="Show a progress bar.")]
Preset = Annotated[str, typer.Option("--preset", help=PRESET_HELP)]
Seed = Annotated[int | None, typer.Option("--seed")]
Resume = Annotated[bool, typer.Option("--resume", help="Continue from OUT/last.pt exactly.")]
Pad = Annotated[bool, typer.Option("--pad", help="Zero-pad clips shorter than one window (features.pad).")]
AllowSilence = Annotated[bool, typer.Option("--allow-silence", help="Accept all-zero clips (features.allow_silence).")]
