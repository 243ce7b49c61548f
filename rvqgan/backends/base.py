"""What a backend is: a name, a one-line summary, where it can run, and how it wraps a model."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from ..model import Codec


class BackendError(RuntimeError):
    """A backend cannot run here (a package or a compiler missing, an unsupported device or dtype)."""


@dataclass(frozen=True)
class Backend:
    """One inference backend: what runs a folded model's encoder and decoder.

    Attributes:
        name: what `--backend` and `load_model(backend=...)` call it.
        summary: one line for the CLI's help.
        wrap: `model` (folded, eval mode) → the same model with its encoder and decoder run by
            this backend; the weights id stays the model's, so files decode with any backend.
            Raises `BackendError` where it cannot run.
        devices, dtypes: the device types and parameter dtypes it runs (None: any).
        limits: the one-line reason given when a device or dtype is outside those.
    """

    name: str
    summary: str
    wrap: Callable[[Codec], Codec]
    devices: tuple[str, ...] | None = None
    dtypes: tuple[torch.dtype, ...] | None = None
    limits: str = ""

    def runs(self, dtype: torch.dtype) -> bool:
        """Whether this backend runs models whose weights are `dtype`."""
        return self.dtypes is None or dtype in self.dtypes

    def check(self, device: torch.device | None = None, dtype: torch.dtype | None = None) -> None:
        """Raise `BackendError` (with `limits`) where this backend cannot run a model on `device` in `dtype`."""
        if (device is not None and self.devices is not None and device.type not in self.devices) or (
            dtype is not None and not self.runs(dtype)
        ):
            raise BackendError(self.limits)
