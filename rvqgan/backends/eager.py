"""The `torch` backend: eager PyTorch, any device and precision; the model runs as it is."""

from __future__ import annotations

from ..model import Codec
from .base import Backend


def _as_is(model: Codec) -> Codec:
    return model


BACKEND = Backend("torch", "eager PyTorch, any device and precision", _as_is)
