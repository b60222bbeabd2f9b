"""``dgmix synth OUT``: write the synthetic domain-shift development set.

See docs/synthetic-data.md.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from dgmix.cli.common import fail, guarded
from dgmix.synth.generate import SYNTH_SETS, SynthConfig, generate
from dgmix.synth.machines import MACHINES

_DEFAULT = SynthConfig()


def synth(
    out: Annotated[Path, typer.Argument(help="Output folder; clips go to OUT/dev_data/.")],
    set_name: Annotated[str, typer.Option("--set", help=f"Named set: {', '.join(SYNTH_SETS)} "
                                          "(docs/synthetic-data.md); the options below override its fields.")
                        ] = "default",
    machines: Annotated[list[str] | None, typer.Option(
        "--machines", "-m", help=f"Machine types, comma list or repeated (default all: {','.join(MACHINES)}).")
    ] = None,
    sections: Annotated[list[str] | None, typer.Option(
        "--sections", "-s", help="Sections 00-05, comma list or repeated (default 00,01,02).")] = None,
    test_sections: Annotated[list[str] | None, typer.Option(
        "--test-sections", help="Sections that get test clips (default all of --sections; dcase2022: 00,01,02).")
    ] = None,
    train_source: Annotated[
        int | None, typer.Option("--train-source", help="Source-domain training clips per section.")] = None,
    train_target: Annotated[
        int | None, typer.Option("--train-target", help="Target-domain training clips per section.")] = None,
    test_per_group: Annotated[int | None, typer.Option(
        "--test-per-group", help="Test clips per section for each domain x label (4 groups).")] = None,
    duration: Annotated[float, typer.Option("--duration", help="Clip length in seconds.")] = _DEFAULT.duration,
    severity: Annotated[
        float, typer.Option("--severity", help="Anomaly strength multiplier (0 = none).")] = _DEFAULT.severity,
    seed: Annotated[int, typer.Option("--seed", help="Base random seed.")] = _DEFAULT.seed,
    workers: Annotated[int, typer.Option("--workers", "-j", help="Worker processes.")] = 1,
    overwrite: Annotated[bool, typer.Option(
        "--overwrite", help="Replace clips of an earlier run for the same machine types.")] = False,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="Show a progress bar.")] = True,
) -> None:
    """Write a synthetic DCASE 2022 Task 2 style development set with a domain shift per section.

    Layout: OUT/dev_data/<machine>/{train,test}/section_XX_..._<attrs>.wav,
    attributes_XX.csv, and evaluator-format ground truth in OUT/dev_data/ground_truth_data/ and
    ground_truth_domain/. Prints one summary line.
    """
    if set_name not in SYNTH_SETS:
        fail(f"--set: unknown set {set_name!r}; choose one of {', '.join(SYNTH_SETS)}", code=2)
    base = SYNTH_SETS[set_name]
    with guarded(code=2):  # a bad option exits 2, a file that cannot be written 1
        cfg = SynthConfig(
            machines=tuple(machines) if machines else base.machines,
            sections=tuple(sections) if sections else base.sections,
            test_sections=tuple(test_sections) if test_sections else (None if sections else base.test_sections),
            train_source=base.train_source if train_source is None else train_source,
            train_target=base.train_target if train_target is None else train_target,
            test_per_group=base.test_per_group if test_per_group is None else test_per_group,
            duration=duration, severity=severity, seed=seed)
        try:
            report = generate(out, cfg, workers=workers, progress=progress, overwrite=overwrite)
        except OSError as e:
            fail(f"{e.filename or out}: {e.strerror or e}")
    typer.echo(report.summary())


def register(app: typer.Typer) -> None:
    """Add the ``synth`` command to ``app``."""
    app.command("synth")(synth)
