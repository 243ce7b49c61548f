"""Which network and which trained weights: the two digests that code files and checkpoints record.

- `config_digest`: 16 hex digits naming the architecture (a `ModelConfig` without its
  training-only fields). Written into every `.rvq` header; `digest_matches` accepts it on decode.
- `tensors_digest`: SHA-256 of a state dict (names, dtypes, shapes, bytes). Recorded in our
  checkpoints to detect modified files, and, cut to 16 digits, the `Codec.weights_id` that code
  files carry so that a different trained model of the same architecture refuses them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping
from typing import Any

import torch

from .config import ModelConfig

# `ModelConfig` fields that only change training, not the function the codec computes.
TRAINING_ONLY_FIELDS = ("quantizer_dropout",)


def tensors_digest(state_dict: Mapping[str, torch.Tensor]) -> str:
    """SHA-256 over names, dtypes, shapes and bytes of all tensors, in name order."""
    h = hashlib.sha256()
    for name in sorted(state_dict):
        t = state_dict[name].detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def _digest(fields: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:16]


def config_digest(config: ModelConfig) -> str:
    """Short hash (16 hex digits) of the architecture: every `ModelConfig` field except `TRAINING_ONLY_FIELDS`.

    Written into every code file, it says which network made the codes; two models that differ
    only in training settings code alike and share it.
    """
    return _digest({k: v for k, v in config.to_dict().items() if k not in TRAINING_ONLY_FIELDS})


def digest_matches(digest: str, config: ModelConfig) -> bool:
    """Whether a code file's digest names `config`'s architecture.

    `output_padding` changes only the decoder's last few samples, not the codes, so a file made
    with either value matches. Files written before the digest left training settings out carry
    the hash of the whole config; they are accepted too.
    """
    accepted = set()
    for output_padding in (True, False):
        variant = dataclasses.replace(config, output_padding=output_padding)
        accepted |= {config_digest(variant), _digest(variant.to_dict())}
    return digest in accepted
