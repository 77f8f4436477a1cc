"""Loading a registered model's weights: sha256 first, then `torch.load(weights_only=True)`.

torch is imported here, inside the function, so the registry's metadata commands start
without it. A mismatch or a file that is not plain tensors is refused, never retried with
an unsafe load.
"""

from __future__ import annotations

import hashlib
import io
from typing import Any

from registry.api import Registry
from registry.errors import IntegrityError


def load_weights(registry: Registry, ref: str, map_location: str = "cpu") -> dict[str, Any]:
    """The state_dict of NAME[:vN|@alias], verified against its recorded sha256."""
    import torch

    meta = registry.get(ref)
    entry = meta["artifacts"]["model"]
    path = registry.store.root / entry["file"]
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise IntegrityError(
            f"{path}: cannot read the registered weights ({exc}); refused"
        ) from exc
    if hashlib.sha256(data).hexdigest() != entry["sha256"]:
        raise IntegrityError(
            f"{path}: does not match the sha256 recorded at registration of "
            f"{meta['name']}:v{meta['version']}; refused"
        )
    try:
        return torch.load(io.BytesIO(data), map_location=map_location, weights_only=True)
    except Exception as exc:  # the weights-only unpickler's refusals have no common type
        raise IntegrityError(f"{path}: not a plain-tensor weights file ({exc}); refused") from exc
