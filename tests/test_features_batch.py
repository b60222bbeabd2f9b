"""clips_logmel / FeatureCache.fill_batch: many clips at once equal one clip at a time, bit for bit."""

from __future__ import annotations

import numpy as np
import soundfile as sf

from dgmix.errors import InputError
from dgmix.features import FeatureCache, FeatureParams, clip_logmel, clips_logmel


def _write(path, seconds: float, seed: int, sr: int = 16000) -> str:
    rng = np.random.default_rng(seed)
    sf.write(path, (0.1 * rng.standard_normal(int(seconds * sr))).astype(np.float32), sr, subtype="FLOAT")
    return str(path)


def test_batched_equals_one_by_one_with_mixed_lengths_and_bad_files(tmp_path):
    params = FeatureParams()
    good = [_write(tmp_path / f"c{i}.wav", 10.0 if i % 3 else 4.5, i) for i in range(7)]
    (tmp_path / "bad.wav").write_bytes(b"not audio at all")
    short = _write(tmp_path / "short.wav", 0.5, 99)
    paths = good[:3] + [str(tmp_path / "bad.wav")] + good[3:] + [short]
    out = clips_logmel(paths, params, batch=4)
    assert len(out) == len(paths)
    for p, got in zip(paths, out):
        if p in good:
            assert isinstance(got, np.ndarray)
            assert np.array_equal(got, clip_logmel(p, params))
        else:
            assert isinstance(got, InputError) and got.path == p and got.problem
    assert {o.shape[1] for o in out if isinstance(o, np.ndarray)} == {141, 313}


def test_fill_batch_writes_what_get_reads_and_reports_each_clip(tmp_path):
    params = FeatureParams()
    paths = [_write(tmp_path / f"c{i}.wav", 10.0, i) for i in range(5)]
    (tmp_path / "empty.wav").write_bytes(b"")
    cache = FeatureCache(tmp_path / "cache", params)
    first = cache.fill_batch(paths[:2])
    assert [s for _, s, _ in first] == ["computed", "computed"]
    res = cache.fill_batch(paths + [str(tmp_path / "empty.wav")])
    assert [s for _, s, _ in res] == ["cached", "cached", "computed", "computed", "computed", "error"]
    assert all(v == 313 for _, s, v in res if s != "error")
    for p in paths:
        assert np.array_equal(cache.get(p), clip_logmel(p, params))
