"""On-disk cache of per-clip log-mel spectrograms (paper Sec. 3.1 features).

One ``.npy`` file (float32, ``(n_mels, T)``) per clip, named by a hash of the file's *content*, under
a folder named by the feature settings and the loader options::

    <cache_dir>/<params.spectrogram_key()>-<loader key>/<hash[:2]>/<hash>.npy
    <cache_dir>/<params.spectrogram_key()>-<loader key>/settings.json

So a renamed or copied clip is found again, an edited clip is recomputed, and different settings
never share files. Hashing a clip reads all of it (2 GB for a DCASE machine type), so the hashes
are also kept in ``<cache_dir>/hashes.tsv``, one line per file: its resolved path, inode, size and
modification and change times (ns), and the hash. A file whose five values all match is not read
again (git's index does the same); any change to the file changes its change time. float32 is
kept (float16 would round the -156 dB floor by ~0.1 dB, more than the 1e-3 dB the front end is
checked to). Writes are atomic (temporary file + ``os.replace``), so
several processes may fill the same cache.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dgmix.errors import InputError
from dgmix.io_atomic import atomic_write_bytes, atomic_write_with

from .extract import clip_logmel
from .extract import loader_options as loader_options_for
from .fill import _as_path, fill_cache
from .logmel import FeatureParams, LogMel

#: Bumped when the cached arrays' meaning changes, so old caches are not reused.
CACHE_FORMAT = 1

#: The file of known content hashes under the cache folder (module docstring).
HASH_INDEX = "hashes.tsv"

_DTYPES = {"float32": torch.float32, "float64": torch.float64}


def content_hash(path: str | Path, chunk_size: int = 1 << 20) -> str:
    """blake2b (128-bit) hex digest of a file's bytes."""
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        while chunk := f.read(chunk_size):
            h.update(chunk)
    return h.hexdigest()


class FeatureCache:
    """Per-clip log-mel features on disk, keyed by file content + settings.

    Args:
        cache_dir: root folder of the cache (created if missing).
        params: feature settings. Only the spectrogram fields enter the key, so windowing
            settings (``frames``, ``window_hop``) can change without recomputing.
        loader_options: further keyword arguments for ``dgmix.data.load_audio`` (``pad_to``,
            ``min_samples``, ``allow_silence``); ``channel`` and ``pad`` come from ``params``. By
            default clips shorter than one context window of ``params.frames`` frames are refused
            (``min_samples``); ``FeatureParams(pad=True)`` zero-pads them instead.
        dtype: internal precision of :class:`LogMel` (``"float32"`` or ``"float64"``); the stored
            arrays are float32 either way. It is part of the key.
    """

    def __init__(self, cache_dir: str | Path, params: FeatureParams | None = None,
                 loader_options: dict[str, Any] | None = None, dtype: str = "float32") -> None:
        self.params = params if params is not None else FeatureParams()
        if dtype not in _DTYPES:
            raise ValueError(f"FeatureCache dtype must be 'float32' or 'float64', got {dtype!r}")
        self.dtype = dtype
        self.extra_loader = dict(loader_options or {})
        try:
            defaults = loader_options_for(self.params, **self.extra_loader)
        except ValueError as exc:
            raise ValueError(f"FeatureCache: {exc}") from None
        self.loader_options = defaults
        p = self.params
        self.cache_dir = Path(cache_dir)
        # min_samples only changes the stored array when short clips are padded up to it;
        # otherwise it only decides which clips are refused, so it stays out of the key.
        keyed_loader = dict(defaults)
        if not (defaults["pad"] or defaults["pad_to"] is not None):
            keyed_loader.pop("min_samples")
        spectrogram = {k: v for k, v in p.to_dict().items() if k not in ("frames", "window_hop")}
        meta = {"format": CACHE_FORMAT, "params": spectrogram, "loader": keyed_loader, "dtype": dtype}
        loader_key = hashlib.blake2b(json.dumps({k: meta[k] for k in ("format", "loader", "dtype")}, sort_keys=True)
                                     .encode(), digest_size=6).hexdigest()
        self.key = f"{p.spectrogram_key()}-{loader_key}"
        self.root = self.cache_dir / self.key
        self._meta = meta
        self._module: LogMel | None = None
        # (path, inode, size, mtime_ns, ctime_ns) -> content hash (module docstring), filled from
        # hashes.tsv on the first lookup
        self._hashes: dict[tuple[str, int, int, int, int], str] | None = None

    def _hash_index(self) -> dict[tuple[str, int, int, int, int], str]:
        if self._hashes is None:
            self._hashes = {}
            try:
                lines = (self.cache_dir / HASH_INDEX).read_text(encoding="utf-8", errors="replace").splitlines()
            except OSError:
                lines = []
            for line in lines:  # a torn or foreign line is skipped: that file is hashed again
                parts = line.split("\t")
                if len(parts) == 6 and len(parts[5]) == 32 and all(x.isdigit() for x in parts[1:5]):
                    self._hashes[(parts[0], *map(int, parts[1:5]))] = parts[5]  # type: ignore[index]
        return self._hashes

    def _remember(self, memo: tuple[str, int, int, int, int], h: str) -> None:
        """Append one line to hashes.tsv (one small append: whole lines even with several writers)."""
        if "\t" in memo[0] or "\n" in memo[0]:
            return
        try:
            self.cache_dir.mkdir(parents=True, exist_ok=True)
            with open(self.cache_dir / HASH_INDEX, "a", encoding="utf-8") as f:
                f.write("\t".join(map(str, (*memo, h))) + "\n")
        except OSError:
            pass  # a read-only cache still works; the file is hashed again next time

    # ----------------------------------------------------------------- paths and lookup
    def _hash(self, path: Path) -> str:
        try:
            st = path.stat()
        except OSError as e:
            raise InputError(path, "file not found" if not path.exists() else str(e)) from e
        if path.is_dir():
            raise InputError(path, "is a folder, not an audio file")
        memo = (str(path.resolve()), st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
        index = self._hash_index()
        h = index.get(memo)
        if h is None:
            try:
                h = content_hash(path)
            except OSError as e:
                raise InputError(path, f"cannot read ({e.strerror or e})") from e
            index[memo] = h
            self._remember(memo, h)
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
        return clip_logmel(_as_path(item), self.params, self._logmel(), **self.extra_loader)

    def _write(self, target: Path, array: np.ndarray) -> None:
        target.parent.mkdir(parents=True, exist_ok=True)
        settings = self.root / "settings.json"
        if not settings.exists():
            atomic_write_bytes(settings, json.dumps(self._meta, indent=2, sort_keys=True).encode())
        # entries can be recomputed, so no fsync (a killed process still leaves whole files)
        atomic_write_with(target, lambda f: np.save(f, np.ascontiguousarray(array, dtype=np.float32)),
                          fsync=False)

    def _read(self, target: Path, mmap_mode: str | None = None) -> np.ndarray | None:
        """The stored array, or ``None`` if missing or unreadable (then it is recomputed)."""
        try:
            arr = np.load(target, mmap_mode=mmap_mode, allow_pickle=False)
        except (OSError, ValueError, EOFError):
            return None
        return arr if arr.ndim == 2 and arr.shape[0] == self.params.n_mels and arr.dtype == np.float32 else None

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

    # ----------------------------------------------------------------- parallel fill
    def _spec(self) -> dict[str, Any]:
        return {"cache_dir": str(self.cache_dir), "params": self.params.to_dict(), "loader_options": self.extra_loader,
                "dtype": self.dtype}

    def cached_frames(self, item: Any) -> int | None:
        """Frames T of this clip's cached entry, or ``None`` if absent or unreadable.

        Reads only the ``.npy`` header (memory map), not the data.
        """
        target = self.entry_path(item)
        arr = self._read(target, mmap_mode="r") if target.is_file() else None
        return None if arr is None else int(arr.shape[1])

    #: ``cache.fill(items, workers=2, progress=True, on_error="skip", min_parallel=2048)``: make sure
    #: every clip's features are in the cache (:func:`dgmix.features.fill.fill_cache`).
    fill = fill_cache
