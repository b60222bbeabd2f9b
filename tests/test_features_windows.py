"""Context windows (paper Sec. 3.1: P = 64 frames, L = 8) checked against brute-force slicing."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from dgmix.features import WindowDataset, WindowIndex, clip_windows, n_windows


def brute_starts(t: int, frames: int, hop: int) -> list[int]:
    """Every start s with s + frames <= t, stepping by hop."""
    starts = []
    s = 0
    while s + frames <= t:
        starts.append(s)
        s += hop
    return starts


def test_n_windows_paper_numbers() -> None:
    assert n_windows(313) == 32  # 10-s clip, SPEC Sec. 2
    assert n_windows(64) == 1
    assert n_windows(63) == 0
    assert n_windows(0) == 0
    assert n_windows(71) == 1
    assert n_windows(72) == 2


@pytest.mark.parametrize("frames,hop", [(64, 8), (3, 2), (5, 5), (1, 1), (4, 7)])
def test_n_windows_matches_brute_force(frames: int, hop: int) -> None:
    for t in range(120):
        assert n_windows(t, frames, hop) == len(brute_starts(t, frames, hop)), t


def test_n_windows_rejects_bad_settings() -> None:
    with pytest.raises(ValueError):
        n_windows(100, 0, 8)
    with pytest.raises(ValueError):
        n_windows(100, 64, 0)


@pytest.mark.parametrize(
    "lengths,frames,hop",
    [([0, 63, 64, 71, 72, 100, 5, 313], 64, 8), ([3, 0, 10, 7, 2, 11, 4], 3, 2), ([9], 4, 5)],
)
def test_window_index_matches_brute_force(lengths: list[int], frames: int, hop: int) -> None:
    expected = [(c, s) for c, t in enumerate(lengths) for s in brute_starts(t, frames, hop)]
    index = WindowIndex(lengths, frames, hop)
    assert len(index) == len(expected)
    assert [index[i] for i in range(len(index))] == expected
    clips, starts = index.locate(np.arange(len(index)))
    assert list(zip(clips.tolist(), starts.tolist())) == expected
    # random order and repeats, negative indices
    rng = np.random.default_rng(0)
    idx = rng.integers(0, len(index), 50)
    clips, starts = index.locate(idx)
    assert list(zip(clips.tolist(), starts.tolist())) == [expected[i] for i in idx]
    assert index[-1] == expected[-1]
    for c in range(len(lengths)):
        assert [expected[i][0] for i in index.clip_windows(c)] == [c] * len(index.clip_windows(c))
    with pytest.raises(IndexError):
        index.locate(len(index))
    with pytest.raises(IndexError):
        index.locate(np.array([0, -len(index) - 1]))


def test_window_index_empty() -> None:
    index = WindowIndex([10, 20], 64, 8)
    assert len(index) == 0
    clips, starts = index.locate(np.array([], dtype=np.int64))
    assert clips.size == 0 and starts.size == 0
    with pytest.raises(IndexError):
        index.locate(0)


def test_clip_windows_numpy_and_torch() -> None:
    rng = np.random.default_rng(1)
    feat = rng.standard_normal((128, 313)).astype(np.float32)
    expected = np.stack([feat[:, s : s + 64] for s in brute_starts(313, 64, 8)])[:, None]
    got = clip_windows(feat)
    assert got.shape == (32, 1, 128, 64)
    np.testing.assert_array_equal(got, expected)
    assert np.shares_memory(got, feat)  # a view, not a copy
    got_t = clip_windows(torch.from_numpy(feat))
    assert isinstance(got_t, torch.Tensor) and got_t.shape == (32, 1, 128, 64)
    np.testing.assert_array_equal(got_t.numpy(), expected)
    # uneven tail: 100 frames, P=64, L=8 -> starts 0..32 (5 windows), frames 96..99 unused
    small = feat[:, :100]
    assert clip_windows(small).shape == (5, 1, 128, 64)
    np.testing.assert_array_equal(clip_windows(small)[-1, 0], small[:, 32:96])
    assert clip_windows(feat[:, :63]).shape == (0, 1, 128, 64)
    assert clip_windows(torch.from_numpy(feat[:, :63])).shape == (0, 1, 128, 64)
    with pytest.raises(ValueError):
        clip_windows(feat[0])


def _features(lengths: list[int], n_mels: int = 128, seed: int = 2) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((n_mels, t)).astype(np.float32) for t in lengths]


def test_window_dataset_items_and_batch() -> None:
    lengths = [313, 63, 100, 64]
    feats = _features(lengths)
    labels = [3, 1, 0, 2]
    ds = WindowDataset(feats, frames=64, hop=8, labels=labels)
    expected = [
        (feats[c][:, s : s + 64], labels[c])
        for c, t in enumerate(lengths)
        for s in brute_starts(t, 64, 8)
    ]
    assert len(ds) == len(expected) == 32 + 0 + 5 + 1
    for i in (0, 31, 32, 36, 37):
        window, label = ds[i]
        assert window.shape == (1, 128, 64) and window.dtype == torch.float32
        np.testing.assert_array_equal(window[0].numpy(), expected[i][0])
        assert int(label) == expected[i][1]
    idx = np.array([37, 0, 5, 5, 33, 31])
    batch = ds.batch(idx)
    assert batch.shape == (6, 1, 128, 64) and batch.dtype == torch.float32
    np.testing.assert_array_equal(batch[:, 0].numpy(), np.stack([expected[i][0] for i in idx]))
    assert ds.batch_labels(idx).tolist() == [expected[i][1] for i in idx]
    assert ds.clip_of(idx).tolist() == [3, 0, 0, 0, 2, 0]
    # the batch is a copy: writing to it leaves the features alone
    batch.zero_()
    assert np.abs(feats[0]).sum() > 0
    assert ds.batch(np.array([], dtype=np.int64)).shape == (0, 1, 128, 64)


def test_window_dataset_without_labels_and_with_dataloader() -> None:
    feats = _features([80, 90], n_mels=16)
    ds = WindowDataset(feats, frames=8, hop=4)
    assert isinstance(ds[0], torch.Tensor) and ds[0].shape == (1, 16, 8)
    loader = DataLoader(ds, batch_size=7, shuffle=False)
    first = next(iter(loader))
    np.testing.assert_array_equal(first.numpy(), ds.batch(np.arange(7)).numpy())
    with pytest.raises(ValueError, match="no labels"):
        ds.batch_labels([0])


def test_window_dataset_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="mel bins"):
        WindowDataset([np.zeros((128, 70)), np.zeros((64, 70))])
    with pytest.raises(ValueError, match="labels"):
        WindowDataset([np.zeros((128, 70))], labels=[0, 1])
    with pytest.raises(ValueError, match="shape"):
        WindowDataset([np.zeros(70)])
