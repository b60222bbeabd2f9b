"""``dgmix download {dcase2022,dcase2023,dcase2024} [--dev] [--additional] [--eval] --to DIR``."""

from __future__ import annotations

from pathlib import Path

import typer

from dgmix.cli.common import fail, guarded, setup, split_list
from dgmix.cli.options import Verbose


def register(app: typer.Typer) -> None:
    @app.command()
    def download(
        dataset: str = typer.Argument(..., help="dcase2022 | dcase2023 | dcase2024 (Task 2)."),
        to: Path = typer.Option(..., "--to", help="Folder to unpack into (DIR/dev_data, DIR/eval_data)."),
        dev: bool = typer.Option(False, "--dev", help="The development set (the default when no part is named)."),
        additional: bool = typer.Option(False, "--additional",
                                        help="The additional training data of the evaluation machine types."),
        eval_: bool = typer.Option(False, "--eval", help="The evaluation test clips."),
        machines: str | None = typer.Option(None, "--machines", help="Comma list: only these machine types' zips."),
        base_url: str = typer.Option("https://zenodo.org", "--base-url",
                                     help="A Zenodo mirror: {BASE}/api/records/<id> and the same file paths."),
        keep_zips: bool = typer.Option(False, "--keep-zips", help="Keep the verified zips after unpacking."),
        timeout: float = typer.Option(60.0, "--timeout", help="Seconds without data before a connection is dropped."),
        verbose: Verbose = False,
    ) -> None:
        """Download a DCASE Task 2 data set from Zenodo: resumable (HTTP Range), each zip checked against
        the md5 the record publishes before it is unpacked; a second run does nothing."""
        from dgmix.download import RECORDS, download_dataset, select_parts

        setup(verbose)
        if dataset not in RECORDS:
            fail(f"unknown data set {dataset!r}; choose one of {', '.join(RECORDS)}", code=2)
        with guarded():
            parts = select_parts(dev, additional, eval_)
            s = download_dataset(dataset, parts, to, base_url, split_list(machines) if machines else None,
                                 echo=typer.echo, timeout=timeout, keep_zips=keep_zips)
            if not s.downloaded and not s.unpacked:
                typer.echo(f"nothing to do: {len(s.already)} zips already verified and unpacked in {to}")
            else:
                typer.echo(f"{len(s.downloaded)} zips downloaded ({s.bytes / 1e6:.1f} MB), {len(s.unpacked)} "
                           f"unpacked, {len(s.already)} already there; next: dgmix data {to}")
            if "eval" in parts:
                typer.echo(f"evaluation labels are not on Zenodo: put the evaluator's ground_truth_data/ and "
                           f"ground_truth_domain/ in {to}/eval_data/ to score the evaluation set")
