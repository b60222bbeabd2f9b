"""What a verb may do with an output folder that already holds something, and what a finished
run may drop from it.

A second run into a used folder would mix its results with the old ones (another run's machine
types, CSVs and detectors, an appended training log). So an existing, non-empty output folder is
refused unless the user says which of two things they mean:

* ``--resume``: continue the run that is there; the result equals that of an uninterrupted run
  (finished work is kept, unfinished work continues from its last checkpoint);
* ``--overwrite``: start clean; everything in the folder is removed first, except entries listed
  in ``keep`` (``dgmix run`` keeps its ``cache/``, whose entries are keyed by the clips' content and
  the feature settings and so cannot be stale).

Once ``dgmix run`` has finished, the training stages' weight files are no longer needed and
:func:`remove_training_files` deletes them (``--keep-checkpoints`` keeps them): a finished
(method, machine type) pair is read back from its ``done.json`` and score CSVs by ``--resume``, and
``dgmix score`` / ``serve`` / ``export`` read ``detector.pt``, which holds the encoder.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from dgmix.errors import InputError


def prepare_out_dir(out: Path, resume: bool, overwrite: bool, keep: Sequence[str] = (),
                    marker: str = "config.yaml") -> None:
    """Check (and with ``overwrite`` clear) the output folder ``out`` before a verb writes to it.

    ``marker`` is a file every run folder of that verb holds: ``--overwrite`` refuses to clear a
    non-empty folder without it (it may not be a dgmix folder at all), and ``--resume`` refuses a
    folder without it (nothing to resume). Raises :class:`InputError` naming ``out``.
    """
    out = Path(out)
    if resume and overwrite:
        raise InputError(out, "--resume and --overwrite exclude each other; pass one")
    if out.exists() and not out.is_dir():
        raise InputError(out, "output path exists and is not a folder")
    entries = sorted(p.name for p in out.iterdir()) if out.is_dir() else []
    if resume:
        if not (out / marker).is_file():
            raise InputError(out, f"nothing to resume: no {marker} in this folder (run without --resume)")
        return
    if not entries:
        return
    if not overwrite:
        shown = ", ".join(entries[:4]) + (", ..." if len(entries) > 4 else "")
        raise InputError(out, f"output folder is not empty ({shown}); pass --resume to continue "
                         "that run or --overwrite to start clean, or choose another --out")
    if not (out / marker).is_file():
        raise InputError(out, f"--overwrite refused: the folder holds no {marker}, so it may not be a "
                         "dgmix output folder; remove it yourself or choose another --out")
    for path in (out / name for name in entries if name not in keep):
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()


@dataclass
class Removed:
    """What :func:`remove_training_files` deleted."""

    paths: list[Path] = field(default_factory=list)
    nbytes: int = 0


def remove_training_files(out: Path) -> Removed:
    """Delete the training stages' weight files of the finished pairs in the run folder ``out``.

    They are a stage's resume checkpoint ``last.pt`` (written after every epoch by the training
    loop, so that an interrupted stage continues exactly), a temporary copy of one left by a killed
    write (``.last.pt.*.tmp``), and the stage's final weights (``encoder.pt``, ``model.pt``), at
    ``out/<method>/<machine>/<stage>/``: once the pair's ``detector.pt`` is written it holds the
    encoder scoring needs, and ``--resume`` reads a finished pair back from its ``done.json``. Only
    pairs whose ``done.json`` exists are touched: a pair that did not finish (say, of an earlier
    interrupted run with other ``--methods``) keeps its files, so ``--resume`` can still continue
    it. Never ``detector.pt``, logs or summaries; the feature cache is not walked.
    """
    from dgmix.pipeline import DONE_FILE
    from dgmix.training.finetune import MODEL_FILE
    from dgmix.training.loop import LAST
    from dgmix.training.pretrain import ENCODER_FILE

    out = Path(out)
    removed = Removed()
    for done in sorted(out.glob(f"*/*/{DONE_FILE}")):
        pair = done.parent
        for stage in sorted(p for p in pair.iterdir() if p.is_dir() and not p.is_symlink()):
            for path in [stage / LAST, stage / ENCODER_FILE, stage / MODEL_FILE, *sorted(stage.glob(".*.pt.*.tmp"))]:
                if path.is_file() and not path.is_symlink():
                    removed.nbytes += path.stat().st_size
                    removed.paths.append(path)
                    path.unlink()
    return removed
