"""Where a device's training starts: `train.init_from`, resolved against the model store.

- `scratch`: new weights;
- `production`: the version that holds `production` for the device's model when the stage
  plans its work; a device with none (or whose production is another type of model: a
  `train.model` switched) trains from scratch, and says so;
- `NAME:vN`, comma-separated: pinned parents (replaying a day against the models it started
  from); a device whose model is not pinned follows the `scratch` or `production` in the same
  list, and without one it is skipped, with that reason.
The resolved parent is recorded in the train stage's outputs and, through the deploy stage,
as the registered version's `lineage.parent_version`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from pipelines.errors import ParamError
from registry.api import Registry
from registry.errors import InvalidNameError
from registry.naming import parse_name, parse_ref

log = logging.getLogger("stage")
RULES = ("scratch", "production")


@dataclass(frozen=True)
class Start:
    how: str  # scratch | production | pinned
    parent: str | None = None  # NAME:vN, the version the weights come from
    note: str = ""  # why a device meant to be fine-tuned is not

    @property
    def parent_version(self) -> int | None:
        return None if self.parent is None else int(self.parent.rsplit(":v", 1)[1])

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class InitFrom:
    pins: dict[str, int]  # model name -> pinned version
    rule: str | None  # for the models not pinned: scratch, production, or None (skipped)

    @property
    def needs_store(self) -> bool:
        return bool(self.pins) or self.rule == "production"


def parse(text: str) -> InitFrom:
    """`train.init_from` as pins and a rule; ParamError naming the item that is wrong."""
    pins: dict[str, int] = {}
    rules = []
    for item in text.split(","):
        if item in RULES:
            rules.append(item)
            continue
        try:
            ref = parse_ref(item)
        except InvalidNameError as exc:
            raise ParamError(f"train.init_from: {exc}") from exc
        if ref.version is None or str(ref.name) in pins:
            raise ParamError(f"train.init_from: {item!r}: expected one NAME:vN per model")
        pins[str(ref.name)] = ref.version
    if len(rules) > 1:
        raise ParamError(f"train.init_from: {text!r}: expected at most one of scratch, production")
    return InitFrom(pins, rules[0] if rules else None)


def resolve(init: InitFrom, name: str, production: Mapping[str, int]) -> Start | None:
    """Where model `name` starts; None: it is not to be trained in this run (not pinned, no
    rule). `production`: model name -> the version holding production now."""
    if name in init.pins:
        return Start("pinned", f"{name}:v{init.pins[name]}")
    if init.rule is None:
        return None
    if init.rule == "scratch":
        return Start("scratch")
    if name in production:
        return Start("production", f"{name}:v{production[name]}")
    device = parse_name(name).scope
    other = [f"{n}:v{v}" for n, v in production.items() if parse_name(n).scope == device]
    if other:
        return Start(
            "scratch", note=f"production is {other[0]}, another model type: trained from scratch"
        )
    return Start("scratch", note="no production version yet: trained from scratch")


def production(store: Path, family: str) -> dict[str, int]:
    """Model name -> the version holding production now, for `family`'s models."""
    return {
        m["name"]: m["version"]
        for m in Registry(store).list(alias="production")
        if m["family"] == family
    }


@dataclass(frozen=True)
class Plan:
    starts: dict[str, Start | None]  # scope -> where its training starts (None: not trained)
    store: Path | None  # the store `init_from` was resolved against; None: it needs none


def plan(
    init_from: str, names: Mapping[str, str], family: str, noun: str, store: Callable[[], Path]
) -> Plan:
    """Where each scope's model (`names`: scope -> its model name) starts in this run; a pin
    that names no model of the run is said in a warning (`noun`: what a scope is). The store
    (`store()`) is located only when `init_from` needs it."""
    init = parse(init_from)
    root = store() if init.needs_store else None
    held = production(root, family) if init.rule == "production" else {}
    for name in sorted(set(init.pins) - set(names.values())):
        log.warning("train.init_from pins %s, which is no %s of this run", name, noun)
    return Plan({scope: resolve(init, name, held) for scope, name in names.items()}, root)
