"""The kernel below picamera2, faked where picamera2 reaches it directly rather than through libcamera.

- dma-heap buffers (`picamera2.dma_heap.DmaHeap`, used by its DmaAllocator): memfd memory instead of /dev/dma_heap, with
  the allocation's cost (rig.ALLOC_S_PER_MB); the dma-buf ioctls (DMA_BUF_SET_NAME, DMA_BUF_IOCTL_SYNC) succeed, as
  they do on a Pi, where the sync only flushes caches.
- the platform probe (`picamera2.platform`): VIDIOC_QUERYCAP on /dev/video* answers "pispbe" on a Raspberry Pi 5; here
  the rig says which platform it is.

The patches are applied as those picamera2 modules are imported (an import hook installed by `install()`), so the real
modules run unchanged above them.
"""

from __future__ import annotations

import fcntl
import importlib.abc
import importlib.machinery
import os
import sys
import time
import types
from typing import Any

from . import rig


class _UniqueFD:
    """picamera2.dma_heap.UniqueFD's interface."""

    def __init__(self, fd: int = -1) -> None:
        self._fd = fd

    def release(self) -> int:
        fd, self._fd = self._fd, -1
        return fd

    def get(self) -> int:
        return self._fd

    def isValid(self) -> bool:  # picamera2's name
        return self._fd >= 0


class FakeDmaHeap:
    """A dma-heap whose buffers are anonymous shared memory."""

    isValid = True

    def alloc(self, name: str, size: int) -> _UniqueFD:
        fd = os.memfd_create(name, os.MFD_CLOEXEC)
        os.ftruncate(fd, size)
        time.sleep(rig.ALLOC_S_PER_MB * size / 1e6)  # the kernel zeroes and maps the pages
        return _UniqueFD(fd)

    def close(self) -> None:
        pass


def _dma_buf_ioctl(fd: int, request: int, arg: Any = 0, mutate_flag: bool = True) -> Any:
    """fcntl.ioctl, with the dma-buf requests answered as the kernel does for a dma-buf."""
    from picamera2 import dma_heap

    if request in (dma_heap.DMA_BUF_IOCTL_SYNC, dma_heap.DMA_BUF_SET_NAME):
        return 0
    return fcntl.ioctl(fd, request, arg, mutate_flag)


_fcntl_shim = types.SimpleNamespace(ioctl=_dma_buf_ioctl)


def _patch(module: types.ModuleType) -> None:
    name = module.__name__
    if name == "picamera2.platform":
        module._platform = module.Platform.PISP if rig.platform() == "pisp" else module.Platform.VC4  # type: ignore[attr-defined]
    elif name == "picamera2.dma_heap":
        module.DmaHeap = FakeDmaHeap  # type: ignore[attr-defined]
    elif name == "picamera2.allocators.dmaallocator":
        module.DmaHeap = FakeDmaHeap  # type: ignore[attr-defined]
        module.fcntl = _fcntl_shim  # type: ignore[attr-defined]


_PATCHED = ("picamera2.platform", "picamera2.dma_heap", "picamera2.allocators.dmaallocator")


class _Loader(importlib.abc.Loader):
    def __init__(self, inner: importlib.abc.Loader) -> None:
        self._inner = inner

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType | None:
        return self._inner.create_module(spec)

    def exec_module(self, module: types.ModuleType) -> None:
        self._inner.exec_module(module)
        _patch(module)


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname: str, path: Any, target: Any = None) -> importlib.machinery.ModuleSpec | None:
        if fullname not in _PATCHED:
            return None
        for finder in sys.meta_path:
            if finder is self:
                continue
            spec = finder.find_spec(fullname, path, target) if hasattr(finder, "find_spec") else None
            if spec is not None and spec.loader is not None:
                spec.loader = _Loader(spec.loader)
                return spec
        return None


def install() -> None:
    """Patch those picamera2 modules as they load (and any already loaded); idempotent."""
    if not any(isinstance(finder, _Finder) for finder in sys.meta_path):
        sys.meta_path.insert(0, _Finder())
    for name in _PATCHED:
        if name in sys.modules:
            _patch(sys.modules[name])
