"""What `registry show` and `registry diff` print for people: a version as a model card, two
versions as the keys that differ. The registry does not know a family's fields: whatever a
version's metadata holds beyond the registry's own is shown as dotted keys, one per line."""

from __future__ import annotations

from typing import Any

from registry.tables import columns

# The registry's own fields: the card shows them in its sections; anything else is the
# family's (e.g. the acoustic family's `inference`).
OWN = {"name", "version", "family", "scope", "model_type", "created", "actor", "aliases"}
OWN |= {"artifacts", "content_sha256", "lineage", "metrics", "params", "existing"}
DIGEST = 12  # hex digits of a sha256 shown: enough to tell files apart by eye


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    """Nested mappings as {dotted.key: value}; lists and scalars are values."""
    if not isinstance(tree, dict):
        return {prefix: tree} if prefix else {}
    flat: dict[str, Any] = {}
    for key in sorted(tree):
        flat |= (
            flatten(tree[key], f"{prefix}{key}.")
            if isinstance(tree[key], dict)
            else {f"{prefix}{key}": tree[key]}
        )
    return {k.rstrip("."): v for k, v in flat.items()}


def changed(first: dict[str, Any], second: dict[str, Any]) -> dict[str, list[Any]]:
    """{dotted.key: [first's, second's]} of every key whose value differs (None: absent)."""
    a, b = flatten(first), flatten(second)
    return {
        key: [a.get(key), b.get(key)] for key in sorted(set(a) | set(b)) if a.get(key) != b.get(key)
    }


def shown(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list):
        return "[" + ", ".join(shown(v) for v in value) + "]"
    return "-" if value is None else str(value)


def model_card(
    meta: dict[str, Any], parent: dict[str, Any] | None, problems: list[dict[str, Any]] | None
) -> str:
    """The version as a card: identity and aliases, lineage, metrics, the params that differ
    from its parent (all of them without one), the family's settings, files with digests and
    whether they were verified (`problems`: None when they were not checked)."""
    lineage = meta.get("lineage") or {}
    held = ", ".join(meta.get("aliases") or []) or "no alias"
    head = [
        f"{meta['name']}:v{meta['version']}  ({held})",
        f"family {meta['family']}, device {meta['scope']}, model type {meta['model_type']}",
        f"registered {meta['created'][:19].replace('T', ' ')} by {meta.get('actor', '-')}",
    ]
    sections = [
        ("lineage", [[k, v] for k, v in _lineage(lineage).items()]),
        ("metrics", [[k, shown(v)] for k, v in flatten(meta.get("metrics") or {}).items()]),
        _params(meta, parent),
        ("settings", [[k, shown(v)] for k, v in flatten(_family_fields(meta)).items()]),
        ("files", [_file_row(kind, a) for kind, a in sorted(meta["artifacts"].items())]),
    ]
    parts = ["\n".join(head)]
    for title, rows in sections:
        if rows:
            parts.append(f"{title}\n" + columns(rows, indent="  "))
    return "\n\n".join([*parts, _verified(meta, problems)])


def _verified(meta: dict[str, Any], problems: list[dict[str, Any]] | None) -> str:
    if problems is None:
        ref = f"{meta['name']}:v{meta['version']}"
        return f"files not verified here (`registry show {ref} --verify` checks them)"
    if not problems:
        return "files verified: the metadata and every file match the digests recorded for them"
    rows = [[p["file"], p["problem"], p["repair"]] for p in problems]
    return "files DAMAGED\n" + columns(rows, indent="  ")


def _lineage(lineage: dict[str, Any]) -> dict[str, str]:
    parent = lineage.get("parent_version")
    commit = lineage.get("git_commit")
    return {
        "started from": "scratch" if parent is None else f"v{parent} (fine-tuned)",
        "experiment": lineage.get("dvc_experiment") or "- (a plain run)",
        "git commit": "-"
        if not commit
        else f"{commit[:DIGEST]}" + (" (uncommitted changes)" if lineage.get("git_dirty") else ""),
        "data": (lineage.get("data_fingerprint") or "-")[:DIGEST],
    }


def _params(meta: dict[str, Any], parent: dict[str, Any] | None) -> tuple[str, list[list[str]]]:
    params = meta.get("params") or {}
    if parent is None:
        return "params", [[k, shown(v)] for k, v in flatten(params).items()]
    title = f"params that differ from v{parent['version']}"
    rows = [
        [k, f"{shown(a)} -> {shown(b)}"]
        for k, (a, b) in changed(parent.get("params") or {}, params).items()
    ]
    return title, rows or [["(none)", ""]]


def _family_fields(meta: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in meta.items() if k not in OWN}


def _file_row(kind: str, artifact: dict[str, Any]) -> list[str]:
    return [kind, artifact["file"], _size(artifact["bytes"]), artifact["sha256"][:DIGEST]]


def _size(n: int) -> str:
    for unit in ("B", "kB", "MB"):
        if n < 1000 or unit == "MB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n} B"
