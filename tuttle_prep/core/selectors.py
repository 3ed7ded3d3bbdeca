"""Selectors (`--season S01`, `--episode S01E01`) checked against the ids that exist: one that matches
nothing is a usage error naming the nearest real ids, never a job failure."""

from __future__ import annotations

import difflib
from collections.abc import Iterable

#: how many near ids a message names
NEAREST = 3


def nearest(wanted: str, known: Iterable[str], n: int = NEAREST) -> list[str]:
    """The known ids closest to `wanted` (difflib's ratio), best first; the first few known ones when none is
    close."""
    ids = sorted(set(known))
    close = difflib.get_close_matches(wanted, ids, n=n, cutoff=0.5)
    return close or ids[:n]


def unmatched(option: str, wanted: Iterable[str], known: Iterable[str], what: str) -> list[str]:
    """One sentence per value of `option` that is not in `known`: `--episode S09E09: no such episode in the
    manifests (nearest: S01E09, S01E03)`. `what` names the thing and where it was looked for."""
    ids = sorted(set(known))
    messages = []
    for value in sorted(set(wanted) - set(ids)):
        near = nearest(value, ids)
        hint = f" (nearest: {', '.join(near)})" if near else " (there are none)"
        messages.append(f"{option} {value}: no such {what}{hint}")
    return messages
