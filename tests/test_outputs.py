"""What a run leaves on disk: files a user can share (modes follow the umask like ``open``) and no
resume-only checkpoints once ``dgmix run`` has finished (unless ``--keep-checkpoints``)."""

from __future__ import annotations

import contextlib
import os
import stat
import sys
import threading
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dgmix import io_atomic
from dgmix.cli import app

posix_only = pytest.mark.skipif(sys.platform == "win32", reason="POSIX file modes")


@contextlib.contextmanager
def umask(mask: int):
    """Set the process umask for the block; the old one is restored after, whatever happens."""
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _write_with_every_writer(folder: Path) -> list[Path]:
    """One file per public writer of io_atomic (and the checkpoint writer built on it)."""
    from dgmix.checkpoint import save_checkpoint

    paths = [
        io_atomic.atomic_write_bytes(folder / "bytes.bin", b"\x00\x01"),
        io_atomic.atomic_write_text(folder / "text.json", "{}\n"),
        io_atomic.atomic_write_bytes(folder / "nosync.bin", b"x", fsync=False),
        io_atomic.atomic_write_with(folder / "with.csv", lambda fh: fh.write(b"a,b\n")),
        save_checkpoint(folder / "ckpt.pt", {"epoch": 1}),
    ]
    with io_atomic.atomic_path(folder / "path.npy") as tmp, open(tmp, "wb") as fh:
        fh.write(b"npy")
    paths.append(folder / "path.npy")
    io_atomic.append_line(folder / "log.jsonl", '{"step": 1}')
    paths.append(folder / "log.jsonl")
    return paths


@posix_only
@pytest.mark.parametrize("mask, expected", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)],
                         ids=["umask022", "umask077", "umask002"])
def test_every_writer_gives_the_mode_open_gives(tmp_path, mask, expected):
    with umask(mask):
        paths = _write_with_every_writer(tmp_path / "sub")  # the folder is created by the writers
        with open(tmp_path / "plain.txt", "w") as fh:  # the reference: a normal open
            fh.write("x")
    assert _mode(tmp_path / "plain.txt") == expected
    assert {p.name: _mode(p) for p in paths} == {p.name: expected for p in paths}
    assert not list(tmp_path.rglob("*.tmp"))


@posix_only
def test_rewrite_of_an_old_private_file_takes_the_umask_mode(tmp_path):
    """A file an older version wrote 0600 (or a user chmod-ed) is replaced by a new file, so it gets
    the current umask's mode; the content is replaced whole."""
    path = tmp_path / "config.yaml"
    path.write_text("old\n")
    path.chmod(0o600)
    with umask(0o022):
        io_atomic.atomic_write_text(path, "new\n")
    assert path.read_text() == "new\n" and _mode(path) == 0o644


@posix_only
def test_concurrent_writers_of_one_file(tmp_path):
    """Threads writing one file at once: each gets its own temporary file, the result is one whole
    write, no temporary file is left and the umask (never changed by a writer) stays as it was."""
    path = tmp_path / "results.json"
    payloads = [(f"{i}:" + "x" * 10_000).encode() for i in range(16)]
    with umask(0o022):
        threads = [threading.Thread(target=io_atomic.atomic_write_bytes, args=(path, p, False)) for p in payloads]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert os.umask(0o022) == 0o022
    assert path.read_bytes() in payloads
    assert _mode(path) == 0o644
    assert not list(tmp_path.glob(".*.tmp"))


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "split.csv"
    io_atomic.atomic_write_text(path, "old\n")

    def boom(fh):
        fh.write(b"half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        io_atomic.atomic_write_with(path, boom)
    assert path.read_text() == "old\n"
    assert not list(tmp_path.glob(".*.tmp"))


def test_remove_training_files_only_touches_finished_pairs(tmp_path):
    from dgmix.rundir import remove_training_files

    out = tmp_path / "run"
    files = {
        # a finished pair: its last.pt and stage weights (and a killed write's temporary copy) go
        "dgmix/fan/done.json": "{}", "dgmix/fan/detector.pt": "d",
        "dgmix/fan/pretrain/last.pt": "12345", "dgmix/fan/pretrain/encoder.pt": "e",
        "dgmix/fan/pretrain/.last.pt.ab12.tmp": "123", "dgmix/fan/pretrain/log.jsonl": "",
        "dgmix/fan/finetune/last.pt": "123", "dgmix/fan/finetune/model.pt": "m",
        "dgmix/fan/finetune/encoder.pt": "e", "dgmix/fan/finetune/summary.json": "{}",
        # an unfinished pair (no done.json): kept for --resume
        "vicreg/fan/pretrain/last.pt": "1", "dgmix/pump/finetune/last.pt": "1",
        # never walked: the cache and the data
        "cache/k/last.pt": "1", "data/dev_data/fan/last.pt": "1", "config.yaml": "",
    }
    for rel, text in files.items():
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        (out / rel).write_text(text)
    gone = {"dgmix/fan/pretrain/last.pt", "dgmix/fan/pretrain/.last.pt.ab12.tmp", "dgmix/fan/finetune/last.pt",
            "dgmix/fan/pretrain/encoder.pt", "dgmix/fan/finetune/model.pt", "dgmix/fan/finetune/encoder.pt"}
    removed = remove_training_files(out)
    assert sorted(str(p.relative_to(out)) for p in removed.paths) == sorted(gone)
    assert removed.nbytes == 5 + 3 + 3 + 3
    left = {str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()}
    assert left == set(files) - gone
    assert remove_training_files(out).paths == []  # a second call finds nothing


# ---- end to end: `dgmix run --preset tiny --methods dgmix` (pre-training and fine-tuning stages)

CHECKPOINTS = ("dgmix/fan/pretrain/last.pt", "dgmix/fan/finetune/last.pt", "dgmix/fan/pretrain/encoder.pt",
               "dgmix/fan/finetune/encoder.pt", "dgmix/fan/finetune/model.pt")
FINAL = ("dgmix/fan/detector.pt", "dgmix/fan/done.json")


def _run(data: Path, out: Path, cache: Path, *extra: str):
    return CliRunner().invoke(app, ["run", "--data", str(data), "--methods", "dgmix", "--preset", "tiny",
                                    "--out", str(out), "--cache", str(cache), "--no-progress", *extra])


def _outputs(out: Path) -> dict[str, bytes]:
    files = sorted(out.glob("*/scores/*.csv")) + [out / "results.csv", out / "results.json"]
    return {str(p.relative_to(out)): p.read_bytes() for p in files}


@posix_only
def test_run_outputs_are_shareable_checkpoints_removed_and_resume_works(tiny_synth, feature_cache, tmp_path):
    out = tmp_path / "run"
    with umask(0o022):
        res = _run(tiny_synth, out, feature_cache)
    assert res.exit_code == 0, res.output
    named = ["config.yaml", "results.json", "split.csv", "run_info.json", "dgmix/fan/detector.pt",
             *(str(p.relative_to(out)) for p in out.glob("dgmix/scores/anomaly_score_*.csv"))]
    assert len(named) > 5  # a score CSV per section
    assert {n: oct(_mode(out / n)) for n in named} == {n: "0o644" for n in named}
    others = {str(p.relative_to(out)): oct(_mode(p)) for p in out.rglob("*") if p.is_file() and _mode(p) != 0o644}
    assert others == {}  # every file of the run folder, report included

    assert "removed 5 training file(s)" in res.output
    assert [c for c in CHECKPOINTS if (out / c).exists()] == []
    assert [f for f in FINAL if not (out / f).is_file()] == []
    assert not list(out.rglob("*.tmp"))

    before = _outputs(out)
    again = _run(tiny_synth, out, feature_cache, "--resume")
    assert again.exit_code == 0, again.output
    assert "finished in the earlier run, kept" in again.output
    assert _outputs(out) == before


def test_keep_checkpoints_keeps_them(tiny_synth, feature_cache, tmp_path):
    out = tmp_path / "run"
    res = _run(tiny_synth, out, feature_cache, "--keep-checkpoints")
    assert res.exit_code == 0, res.output
    assert "training file" not in res.output
    assert [c for c in CHECKPOINTS if not (out / c).is_file()] == []
    assert [f for f in FINAL if not (out / f).is_file()] == []


def test_an_interrupted_run_keeps_its_checkpoints_until_resumed(tiny_synth, feature_cache, tmp_path, monkeypatch):
    """Interrupted after training (here: in the report), the run keeps its checkpoints; the
    --resume that completes it removes them."""
    import dgmix.report

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    out = tmp_path / "run"
    with monkeypatch.context() as m:
        m.setattr(dgmix.report, "build_report", interrupted)
        res = _run(tiny_synth, out, feature_cache)
    assert res.exit_code == 130, res.output
    assert [c for c in CHECKPOINTS if not (out / c).is_file()] == []

    res = _run(tiny_synth, out, feature_cache, "--resume")
    assert res.exit_code == 0, res.output
    assert [c for c in CHECKPOINTS if (out / c).exists()] == []
    assert (out / "report.html").is_file()
