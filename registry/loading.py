"""Loading a registered model's weights: sha256 first, then `torch.load(weights_only=True)`.

torch is imported here, inside the functions, so the registry's metadata commands start
without it. A mismatch or a file that is not plain tensors is refused, never retried with
an unsafe load. Families load weights through `state_dict`, from bytes the registry has
already checked (`Registry.read`).
"""

from __future__ import annotations

import io
from typing import Any

from registry.api import Registry
from registry.errors import IntegrityError


def load_weights(registry: Registry, ref: str, map_location: str = "cpu") -> dict[str, Any]:
    """The state_dict of NAME[:vN|@alias], verified against its recorded sha256."""
    meta = registry.get(ref)
    where = f"{meta['name']}:v{meta['version']}"
    return state_dict(registry.read(meta, "model"), where, map_location)


def state_dict(data: bytes, where: str, map_location: str = "cpu") -> dict[str, Any]:
    """Weights from verified bytes, plain tensors only."""
    import torch

    try:
        return torch.load(io.BytesIO(data), map_location=map_location, weights_only=True)
    except Exception as exc:  # the weights-only unpickler's refusals have no common type
        raise IntegrityError(f"{where}: not a plain-tensor weights file ({exc}); refused") from exc
