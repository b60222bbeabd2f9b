"""Optional dependencies (pip extras), imported only by the verbs that need them.

``dgmix serve`` needs the ``[serve]`` extra (fastapi, uvicorn, python-multipart), ``dgmix export``
and ``dgmix score --onnx`` the ``[export]`` extra (onnx, onnxruntime). The core package never imports
them at module level, so it works without them; a missing one is a one-line :class:`MissingExtra`.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from dgmix.errors import DgmixError


class MissingExtra(DgmixError):
    """An optional package is not installed; the message says which ``pip install`` to run."""


def require(module: str, extra: str, what: str, package: str | None = None) -> ModuleType:
    """Import ``module`` or raise :class:`MissingExtra` naming the extra that provides it.

    ``package`` is the name pip knows it by (default: the module's top-level name)."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingExtra(f"{what} needs the '{package or module.split('.')[0]}' package, which is not installed; "
                           f"run: pip install -e '.[{extra}]' in the dgmix source folder") from None
