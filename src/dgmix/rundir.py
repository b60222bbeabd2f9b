"""What a verb may do with an output folder that already holds something (issue 13).

A second run into a used folder would mix its results with the old ones (another run's machine
types, CSVs and detectors, an appended training log). So an existing, non-empty output folder is
refused unless the user says which of two things they mean:

* ``--resume``: continue the run that is there; the result equals that of an uninterrupted run
  (finished work is kept, unfinished work continues from its last checkpoint);
* ``--overwrite``: start clean; everything in the folder is removed first, except entries listed
  in ``keep`` (``dgmix run`` keeps its ``cache/``, whose entries are keyed by the clips' content and
  the feature settings and so cannot be stale).
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
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
    for name in entries:
        if name in keep:
            continue
        path = out / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
