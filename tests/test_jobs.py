"""``dgmix run --jobs``: machine types in worker processes give the outputs of one at a time."""

from __future__ import annotations

import json

import pytest
import torch

from dgmix.config import load_config
from dgmix.errors import InputError
from dgmix.pipeline import resolve_jobs, run_pipeline
from dgmix.training.distributed import DistContext


@pytest.fixture(scope="module")
def two_machines(tmp_path_factory):
    from dgmix.synth import SynthConfig, generate

    out = tmp_path_factory.mktemp("two")
    generate(out, SynthConfig(machines=("fan", "valve"), sections=("00", "01"), train_source=4, train_target=2,
                              test_per_group=2, duration=3.0, seed=3), workers=1, progress=False)
    return out / "dev_data"


def test_two_jobs_write_what_one_job_writes(two_machines, tmp_path, monkeypatch):
    """Each worker gets cores // jobs torch threads; CPU float results depend on the thread count,
    so the one-at-a-time run here uses the workers' count (on a GPU the kernels do not)."""
    cfg = load_config("tiny", overrides={"report": {"enabled": False}})
    runs = {}
    threads = torch.get_num_threads()
    monkeypatch.setattr("os.cpu_count", lambda: 2)  # each of the 2 workers: 1 thread
    for jobs in (1, 2):
        out = tmp_path / f"jobs{jobs}"
        lines: list[str] = []
        torch.set_num_threads(1)
        try:
            summary = run_pipeline(two_machines, out, cfg, methods=["dgmix", "logmel"],
                                   cache_dir=tmp_path / "cache", progress=False, echo=lines.append, jobs=jobs)
        finally:
            torch.set_num_threads(threads)
        runs[jobs] = (out, summary, lines)
        assert json.loads((out / "run_info.json").read_text())["jobs"] == jobs
    (one, s1, l1), (two, s2, l2) = runs[1], runs[2]
    csvs = sorted(p.relative_to(one) for p in one.rglob("anomaly_score_*.csv"))
    assert len(csvs) == 2 * 2 * 2  # methods x machine types x sections
    for rel in csvs:
        assert (one / rel).read_bytes() == (two / rel).read_bytes(), rel
    assert s1.table.official_score("dgmix") == s2.table.official_score("dgmix")
    # the same progress lines, in machine order, up to the times
    strip = [ln.split("] ", 1)[-1].rsplit(", trained in", 1)[0] for ln in l1 if ln.startswith("[")]
    assert strip == [ln.split("] ", 1)[-1].rsplit(", trained in", 1)[0] for ln in l2 if ln.startswith("[")]
    assert [ln for ln in strip if "fan" in ln] == strip[:2]
    stages = json.loads((two / "run_info.json").read_text())["stages"]["machines"]
    assert set(stages) == {"fan", "valve"} and "train" in stages["valve"]["dgmix"]


def test_jobs_setting():
    cpu, gpu = DistContext(), DistContext(device=torch.device("cuda"))
    assert resolve_jobs("auto", 7, cpu) == 1 and resolve_jobs("auto", 7, gpu) == 7
    assert resolve_jobs("3", 2, cpu) == 2 and resolve_jobs(4, 7, cpu) == 4
    for bad in ("0", "-1", "x", "1.5"):
        with pytest.raises(InputError, match="--jobs"):
            resolve_jobs(bad, 3, cpu)
    with pytest.raises(InputError, match="DDP"):
        resolve_jobs(2, 3, DistContext(rank=0, world_size=2))
