"""On-disk cache of per-clip log-mel spectrograms (paper Sec. 3.1 features).

One ``.npy`` file (float32, ``(n_mels, T)``) per clip, named by a hash of the file's *content*, under
a folder named by the feature settings and the loader options::

    <cache_dir>/<params.spectrogram_key()>-<loader key>/<hash[:2]>/<hash>.npy
    <cache_dir>/<params.spectrogram_key()>-<loader key>/settings.json

So a renamed or copied clip is found again, an edited clip is recomputed, and different settings
never share files. float32 is kept (float16 would round the -156 dB floor by ~0.1 dB, more than
the 1e-3 dB the front end is checked to). Writes are atomic (temporary file + ``os.replace``), so
several processes may fill the same cache.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
import os
import tempfile
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dgmix.errors import InputError

from .logmel import FeatureParams, LogMel
from .windows import n_windows

#: Bumped when the cached arrays' meaning changes, so old caches are not reused.
CACHE_FORMAT = 1

_LOADER_KEYS = ("channel", "pad", "pad_to", "min_samples", "allow_silence")
_DTYPES = {"float32": torch.float32, "float64": torch.float64}


def content_hash(path: str | Path, chunk_size: int = 1 << 20) -> str:
    """blake2b (128-bit) hex digest of a file's bytes."""
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        while chunk := f.read(chunk_size):
            h.update(chunk)
    return h.hexdigest()


def _as_path(item: Any) -> Path:
    """A path from a path-like or from anything with a ``.path`` (e.g. ``ClipRecord``)."""
    return Path(getattr(item, "path", item))


@dataclass
class FillReport:
    """What :meth:`FeatureCache.fill` did.

    Attributes:
        computed: clips whose features were computed now.
        cached: clips found in the cache.
        errors: ``(path, problem)`` for clips that could not be loaded.
        frames: number of frames T of every successful clip, by path.
        seconds: wall-clock time of the fill.
    """

    computed: int = 0
    cached: int = 0
    errors: list[tuple[Path, str]] = field(default_factory=list)
    frames: dict[Path, int] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def total_frames(self) -> int:
        """Frames over all successful clips."""
        return int(sum(self.frames.values()))

    def total_windows(self, frames: int = 64, hop: int = 8) -> int:
        """Context windows over all successful clips (paper Sec. 3.1: P = 64, L = 8)."""
        return int(sum(n_windows(t, frames, hop) for t in self.frames.values()))


class FeatureCache:
    """Per-clip log-mel features on disk, keyed by file content + settings.

    Args:
        cache_dir: root folder of the cache (created if missing).
        params: feature settings. Only the spectrogram fields enter the key, so windowing
            settings (``frames``, ``window_hop``) can change without recomputing.
        loader_options: keyword arguments for ``dgmix.data.load_audio`` (``channel``, ``pad``,
            ``pad_to``, ``min_samples``, ``allow_silence``). By default clips shorter than one
            context window of ``params.frames`` frames are refused (``min_samples``); pass
            ``{"pad": True}`` to zero-pad them instead.
        dtype: internal precision of :class:`LogMel` (``"float32"`` or ``"float64"``); the stored
            arrays are float32 either way. It is part of the key.
    """

    def __init__(
        self,
        cache_dir: str | Path,
        params: FeatureParams | None = None,
        loader_options: dict[str, Any] | None = None,
        dtype: str = "float32",
    ) -> None:
        from dgmix.data import min_samples_for

        self.params = params if params is not None else FeatureParams()
        if dtype not in _DTYPES:
            raise ValueError(f"FeatureCache dtype must be 'float32' or 'float64', got {dtype!r}")
        self.dtype = dtype
        options = dict(loader_options or {})
        unknown = sorted(set(options) - set(_LOADER_KEYS))
        if unknown:
            raise ValueError(
                f"FeatureCache: unknown loader option(s) {', '.join(unknown)}; "
                f"known: {', '.join(_LOADER_KEYS)}"
            )
        p = self.params
        defaults: dict[str, Any] = {
            "channel": None,
            "pad": False,
            "pad_to": None,
            "min_samples": min_samples_for(p.frames, p.n_fft, p.hop_length, center=True),
            "allow_silence": False,
        }
        defaults.update(options)
        self.loader_options = defaults
        self.cache_dir = Path(cache_dir)
        # min_samples only changes the stored array when short clips are padded up to it;
        # otherwise it only decides which clips are refused, so it stays out of the key.
        keyed_loader = dict(defaults)
        if not (defaults["pad"] or defaults["pad_to"] is not None):
            keyed_loader.pop("min_samples")
        meta = {
            "format": CACHE_FORMAT,
            "params": {k: v for k, v in p.to_dict().items() if k not in ("frames", "window_hop")},
            "loader": keyed_loader,
            "dtype": dtype,
        }
        loader_key = hashlib.blake2b(
            json.dumps({k: meta[k] for k in ("format", "loader", "dtype")}, sort_keys=True).encode(),
            digest_size=6,
        ).hexdigest()
        self.key = f"{p.spectrogram_key()}-{loader_key}"
        self.root = self.cache_dir / self.key
        self._meta = meta
        self._module: LogMel | None = None
        # (path, inode, size, mtime_ns, ctime_ns) -> content hash, so repeated lookups of an
        # unchanged file in one process skip rehashing. Across processes the hash is always
        # recomputed from the bytes.
        self._hashes: dict[tuple[str, int, int, int, int], str] = {}

    # ----------------------------------------------------------------- paths and lookup
    def _hash(self, path: Path) -> str:
        try:
            st = path.stat()
        except OSError as e:
            raise InputError(path, "file not found" if not path.exists() else str(e)) from e
        if path.is_dir():
            raise InputError(path, "is a folder, not an audio file")
        memo = (str(path.resolve()), st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
        h = self._hashes.get(memo)
        if h is None:
            try:
                h = content_hash(path)
            except OSError as e:
                raise InputError(path, f"cannot read ({e.strerror or e})") from e
            self._hashes[memo] = h
        return h

    def entry_path(self, item: Any) -> Path:
        """Where the features of this clip are (or would be) stored."""
        h = self._hash(_as_path(item))
        return self.root / h[:2] / f"{h}.npy"

    def contains(self, item: Any) -> bool:
        """Whether this clip's features are in the cache (no computing)."""
        return self.entry_path(item).is_file()

    # ----------------------------------------------------------------- compute and store
    def _logmel(self) -> LogMel:
        if self._module is None:
            self._module = LogMel(self.params, dtype=_DTYPES[self.dtype])
        return self._module

    def compute(self, item: Any) -> np.ndarray:
        """Load the clip and compute its log-mel, ``(n_mels, T)`` float32, without the cache."""
        from dgmix.data import load_audio

        path = _as_path(item)
        wave = load_audio(path, sample_rate=self.params.sample_rate, **self.loader_options)
        with torch.no_grad():
            out = self._logmel()(torch.from_numpy(wave).unsqueeze(0))[0]
        return out.numpy()

    def _write(self, target: Path, array: np.ndarray) -> None:
        target.parent.mkdir(parents=True, exist_ok=True)
        settings = self.root / "settings.json"
        if not settings.exists():
            self._atomic_bytes(settings, json.dumps(self._meta, indent=2, sort_keys=True).encode())
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".npy", dir=target.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                np.save(f, np.ascontiguousarray(array, dtype=np.float32))
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    @staticmethod
    def _atomic_bytes(target: Path, data: bytes) -> None:
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=target.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def _read(self, target: Path) -> np.ndarray | None:
        """The stored array, or ``None`` if missing or unreadable (then it is recomputed)."""
        try:
            arr = np.load(target, allow_pickle=False)
        except (OSError, ValueError, EOFError):
            return None
        if arr.ndim != 2 or arr.shape[0] != self.params.n_mels or arr.dtype != np.float32:
            return None
        return arr

    def get_status(self, item: Any) -> tuple[np.ndarray, bool]:
        """``(features, computed)``: features of one clip and whether they had to be computed."""
        target = self.entry_path(item)
        if target.is_file():
            arr = self._read(target)
            if arr is not None:
                return arr, False
        arr = self.compute(item)
        self._write(target, arr)
        return arr, True

    def get(self, item: Any) -> np.ndarray:
        """Log-mel features ``(n_mels, T)`` float32 of one clip (a path or a ``ClipRecord``).

        Computed and stored on a miss. Raises ``InputError`` for files that cannot be loaded.
        """
        return self.get_status(item)[0]

    def get_many(self, items: Iterable[Any]) -> list[np.ndarray]:
        """:meth:`get` for each item, in order (in this process; use :meth:`fill` first to
        compute misses in parallel)."""
        return [self.get(it) for it in items]

    # ----------------------------------------------------------------- parallel fill
    def _spec(self) -> dict[str, Any]:
        return {
            "cache_dir": str(self.cache_dir),
            "params": self.params.to_dict(),
            "loader_options": self.loader_options,
            "dtype": self.dtype,
        }

    def cached_frames(self, item: Any) -> int | None:
        """Frames T of this clip's cached entry, or ``None`` if absent or unreadable.

        Reads only the ``.npy`` header (memory map), not the data.
        """
        target = self.entry_path(item)
        if not target.is_file():
            return None
        try:
            arr = np.load(target, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError, EOFError):
            return None
        if arr.ndim != 2 or arr.shape[0] != self.params.n_mels or arr.dtype != np.float32:
            return None
        return int(arr.shape[1])

    def fill(
        self,
        items: Sequence[Any],
        workers: int = 2,
        progress: bool = True,
        on_error: str = "skip",
        min_parallel: int = 32,
    ) -> FillReport:
        """Make sure every clip's features are in the cache.

        Clips already cached are found first, in this process (content hash + ``.npy`` header).
        The rest are computed by ``workers`` processes (``spawn`` start method, one torch thread
        each), or in this process when ``workers <= 1`` or fewer than ``min_parallel`` clips are
        missing (starting a worker costs a torch import, a few seconds).

        Args:
            items: paths or ``ClipRecord``s.
            workers: processes to use.
            progress: show a tqdm progress bar (on stderr).
            on_error: ``"skip"`` lists bad files in the report; ``"fail"`` raises the first one
                as ``InputError``.
            min_parallel: fewest missing clips for which worker processes are started.

        Returns:
            A :class:`FillReport`. Running it again on the same clips computes nothing.
        """
        from tqdm import tqdm

        if on_error not in ("skip", "fail"):
            raise ValueError(f"on_error must be 'skip' or 'fail', got {on_error!r}")
        paths = [str(_as_path(it)) for it in items]
        report = FillReport()
        t0 = time.perf_counter()
        bar = tqdm(total=len(paths), desc="features", unit="clip", disable=not progress)

        def record(result: tuple[str, str, Any]) -> None:
            path, status, value = result
            if status == "error":
                if on_error == "fail":
                    raise InputError(path, value)
                report.errors.append((Path(path), value))
            else:
                report.frames[Path(path)] = int(value)
                if status == "computed":
                    report.computed += 1
                else:
                    report.cached += 1
            bar.update(1)

        try:
            missing = []
            for p in paths:
                try:
                    t = self.cached_frames(p)
                except InputError as e:
                    record((p, "error", e.problem))
                    continue
                if t is None:
                    missing.append(p)
                else:
                    record((p, "cached", t))
            n_proc = min(int(workers), len(missing))
            if n_proc <= 1 or len(missing) < min_parallel:
                for p in missing:
                    record(_fill_one_with(self, p))
            else:
                self._fill_parallel(missing, n_proc, record)
        finally:
            bar.close()
        report.errors.sort(key=lambda e: str(e[0]))
        report.seconds = time.perf_counter() - t0
        return report

    def _fill_parallel(self, paths: list[str], n_proc: int, record: Any) -> None:
        """Compute ``paths`` in ``n_proc`` spawned processes, passing each result to ``record``."""
        chunk = max(1, min(16, len(paths) // (n_proc * 8)))
        chunks = [paths[i : i + chunk] for i in range(0, len(paths), chunk)]
        pool = ProcessPoolExecutor(
            n_proc, mp_context=mp.get_context("spawn"), initializer=_init_worker,
            initargs=(self._spec(),),
        )
        try:
            futures = [pool.submit(_fill_chunk, c) for c in chunks]
            for fut in as_completed(futures):
                try:
                    results = fut.result()
                except BrokenProcessPool as e:
                    raise RuntimeError(
                        f"a feature worker process died ({e}); retry with --workers 1"
                    ) from e
                for result in results:
                    record(result)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)


def _fill_one_with(cache: FeatureCache, path: str) -> tuple[str, str, Any]:
    """``(path, "computed"|"cached", T)`` or ``(path, "error", problem)``."""
    try:
        arr, computed = cache.get_status(path)
    except InputError as e:
        return path, "error", e.problem
    except (OSError, ValueError, RuntimeError) as e:
        return path, "error", " ".join(f"{type(e).__name__}: {e}".split())
    return path, "computed" if computed else "cached", int(arr.shape[1])


_WORKER_CACHE: FeatureCache | None = None


def _init_worker(spec: dict[str, Any]) -> None:
    """Pool initializer (spawn-safe): one torch thread, one FeatureCache per worker process."""
    global _WORKER_CACHE
    torch.set_num_threads(1)
    _WORKER_CACHE = FeatureCache(
        spec["cache_dir"],
        FeatureParams.from_dict(spec["params"]),
        loader_options=spec["loader_options"],
        dtype=spec["dtype"],
    )


def _fill_chunk(paths: list[str]) -> list[tuple[str, str, Any]]:
    """Worker task: compute (or find) the features of a few clips."""
    if _WORKER_CACHE is None:
        raise RuntimeError("feature worker was not initialised")
    return [_fill_one_with(_WORKER_CACHE, p) for p in paths]
