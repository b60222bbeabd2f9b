"""``dgmix data ROOT``: count the clips under a dataset folder, list the files it cannot use.

It also shows the seeded train/test split that ``dgmix run`` will use for layouts that have none
(``--test-normals``, or the ``split`` section of ``--config``, as for ``dgmix run``;
:mod:`dgmix.data.split`) and warns about test sections that lack a group (their missing metrics
will be n/a).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Annotated

import typer

from dgmix.cli.common import error_lines, errors_json, fail, guarded, loader_overrides
from dgmix.cli.options import OnError
from dgmix.config import DEFAULT_PRESET, RunConfig, load_config, read_config_file
from dgmix.data import Dataset, parse_test_normals, scan
from dgmix.data.split import split_lines
from dgmix.errors import InputError
from dgmix.features.logmel import FeatureParams
from dgmix.metrics.groups import incomplete_group_warnings

_COLUMNS = ("machine", "section", "domain", "split", "label", "n")


def format_table(ds: Dataset) -> str:
    """Counts per machine/section/domain/split/label as an aligned text table, then the errors."""
    rows = [list(_COLUMNS), *([str(c[k]) for k in _COLUMNS] for c in ds.counts())]
    widths = [max(len(r[i]) for r in rows) for i in range(len(_COLUMNS))]
    # text columns left-aligned, the count right-aligned
    lines = ["  ".join([*(c.ljust(w) for c, w in zip(r[:-1], widths)), r[-1].rjust(widths[-1])]) for r in rows]
    if len(rows) > 1:
        lines.append(f"total: {len(ds.records)} clips, {len(ds.machines())} machine type(s)")
    else:
        lines = [f"no usable clips found under {ds.root}"]
    lines.extend(split_lines(ds.splits, ds.split_config))
    lines.extend(f"warning: {w}" for w in incomplete_group_warnings(ds.records))
    return "\n".join(lines + error_lines(ds.errors))


def as_json(ds: Dataset) -> str:
    """``{"counts": [...], "errors": [{"path", "error"}, ...], "split": {"config", "groups"},
    "warnings": [...]}`` as one JSON document (``split.groups``: one entry per machine type and ID
    that got the seeded split)."""
    return json.dumps({
        "counts": ds.counts(), "errors": errors_json(ds.errors),
        "split": {"config": dataclasses.asdict(ds.split_config),
                  "groups": [dataclasses.asdict(g) | {"train_normal": g.train_normal} for g in ds.splits]},
        "warnings": incomplete_group_warnings(ds.records)})


def run_config(config: Path | None, test_normals: str | None, pad: bool, allow_silence: bool,
               channel: int | None) -> RunConfig:
    """The settings the later stages would use: the default preset (or the one a run's config.yaml
    names), ``--config``, then the flags; its ``features`` the audio check, its ``split`` the split."""
    overrides = loader_overrides(pad, allow_silence, channel)
    if test_normals is not None:
        overrides["split"] = {"test_normals": parse_test_normals(test_normals)}
    # a run's config.yaml names its preset; a plain overrides file applies to the default preset
    preset = (read_config_file(config).get("preset") if config is not None else None) or DEFAULT_PRESET
    return load_config(preset, config, overrides)


def refuse_like_features(ds: Dataset, params: FeatureParams, fail: bool = False) -> None:
    """Move the clips that ``dgmix features``, ``run`` and ``score`` would refuse (too short, silent,
    NaN, ...) from ``ds.records`` to ``ds.errors``, so that ``dgmix data`` counts what they use."""
    from dgmix.features.extract import clip_problem

    kept = []
    for rec in ds.records:
        problem = clip_problem(rec.path, params)
        if problem is None:
            kept.append(rec)
        elif fail:
            raise InputError(rec.path, problem)
        else:
            ds.errors.append((rec.path, problem))
    ds.records = kept
    ds.errors.sort(key=lambda e: str(e[0]))


def data(
    root: Annotated[Path, typer.Argument(help="Dataset folder (dev_data/, eval_data/ or machine folders).")],
    json_out: Annotated[bool, typer.Option("--json", help="Print one JSON object instead of a table.")] = False,
    ground_truth: Annotated[Path | None, typer.Option(
        "--ground-truth", help="Folder with ground_truth_data/ and ground_truth_domain/ CSVs.")] = None,
    check_audio: Annotated[bool, typer.Option(
        "--check-audio/--no-check-audio", help="Read each clip as the feature stages will (unreadable, empty, too "
        "short, silent, NaN) and list those they would refuse.")] = True,
    pad: Annotated[
        bool, typer.Option("--pad", help="Count clips shorter than one window as usable (zero-padded).")] = False,
    allow_silence: Annotated[bool, typer.Option("--allow-silence", help="Count all-zero clips as usable.")] = False,
    channel: Annotated[
        int | None, typer.Option("--channel", min=0, help="Check this channel of multi-channel files.")] = None,
    on_error: Annotated[OnError, typer.Option(
        "--on-error", help="skip: list bad files at the end; fail: stop at the first")] = OnError.skip,
    test_normals: Annotated[str | None, typer.Option(
        "--test-normals", help="Layouts without a train/test split: normal clips per machine type and ID in the test "
        "set, N or a FRACTION (default: match, the MIMII protocol).")] = None,
    config: Annotated[Path | None, typer.Option(
        "--config", help="YAML/TOML run config (e.g. a run's config.yaml) whose `features` section the audio check "
        "uses and whose `split` section the split uses.")] = None,
) -> None:
    """Count the clips per machine type / section / domain / split / label."""
    if not root.exists():
        fail(f"{root}: dataset folder not found", code=2)
    if ground_truth is not None and not ground_truth.is_dir():
        fail(f"{ground_truth}: ground-truth folder not found", code=2)
    with guarded(code=2):
        cfg = run_config(config, test_normals, pad, allow_silence, channel)
    try:
        ds = scan(root, ground_truth=ground_truth, check_audio=check_audio, on_error=on_error.value, split=cfg.split)
        if check_audio:
            refuse_like_features(ds, cfg.features, fail=on_error is OnError.fail)
    except InputError as e:
        # A bad file (--on-error fail) exits 1; a bad argument (root, ground truth) exits 2.
        fail(str(e), 1 if on_error is OnError.fail else 2)
    typer.echo(as_json(ds) if json_out else format_table(ds))


def register(app: typer.Typer) -> None:
    """Add the ``data`` command to ``app``."""
    app.command("data")(data)
