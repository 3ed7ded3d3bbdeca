"""The delete guard: how many plain deletes a run may make before it refuses them (`--max-delete`, `--force`)."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd


@dataclass(frozen=True)
class DeleteLimit:
    """`--max-delete`: a count (`500`) or a share of the planned dataset files (`10%`)."""

    count: int | None = None
    percent: float | None = None

    @classmethod
    def parse(cls, text: str | None) -> DeleteLimit | None:
        """None for the default rule; ValueError with a sentence if `text` is malformed."""
        if text is None or not text.strip():
            return None
        text = text.strip()
        try:
            if not text.isascii():  # int() and float() also read `٥٠٠` and `５`
                raise ValueError
            if text.endswith("%"):
                value = float(text[:-1])
                if not 0 <= value <= 100:
                    raise ValueError
                return cls(percent=value)
            value_int = int(text)
            if value_int < 0:
                raise ValueError
            return cls(count=value_int)
        except ValueError:
            raise ValueError(f"'{text}' is not a number of files (500) or a percentage (10%)") from None

    def exceeded(self, deletes: int, existing: int) -> bool:
        if self.count is not None:
            return deletes > self.count
        return deletes > existing * (self.percent or 0) / 100


DEFAULT_DELETE_SHARE = 0.10
DEFAULT_DELETE_FLOOR = 100


def _rule_broken(writes: int, existing: int, limit: DeleteLimit | None) -> str | None:
    """The run-wide rule (default, or --max-delete) that `writes` of `existing` files break, in words; None if
    they break none."""
    if limit is None:
        too_many = writes > DEFAULT_DELETE_FLOOR and writes > existing * DEFAULT_DELETE_SHARE
        rule = f"more than {DEFAULT_DELETE_SHARE:.0%} of them and more than {DEFAULT_DELETE_FLOOR}"
    else:
        too_many = limit.exceeded(writes, existing)
        rule = f"more than --max-delete {limit.count if limit.count is not None else f'{limit.percent:g}%'}"
    return rule if too_many else None


def delete_guard(deletes: int, existing: int, limit: DeleteLimit | None) -> str | None:
    """The refusal message if `deletes` plain deletes are too many, else None."""
    rule = _rule_broken(deletes, existing, limit)
    if rule is None:
        return None
    return (
        f"refusing {deletes:,} deletes of the {existing:,} dataset files of the planned episodes "
        f"({rule}); check the sheets, then rerun with --force or a higher --max-delete"
    )


#: episodes named one by one in a per-episode refusal
EPISODES_SHOWN = 5


def episode_delete_guard(counts: pd.DataFrame, limit: DeleteLimit | None) -> str | None:
    """The refusal message if one episode would lose too many of its own files, else None.

    `counts` is `Plan.deletes_leaving_by_episode()`. The default rule is the run-wide one per episode (more
    than 10 % of its files and more than 100); `--max-delete P%` applies P per episode, and `--max-delete N`
    is already exceeded run-wide by any episode above N.
    """
    if limit is None:
        deletes = counts["deletes"]
        over = counts[(deletes > DEFAULT_DELETE_FLOOR) & (deletes > counts["files"] * DEFAULT_DELETE_SHARE)]
        rule = f"more than {DEFAULT_DELETE_SHARE:.0%} of its files and more than {DEFAULT_DELETE_FLOOR}"
    else:
        over = counts[[limit.exceeded(int(d), int(f)) for d, f in zip(counts["deletes"], counts["files"], strict=True)]]
        shown = limit.count if limit.count is not None else f"{limit.percent:g}%"
        rule = f"more than --max-delete {shown} of its files"
    if over.empty:
        return None
    named = "; ".join(
        f"{eid} would lose {int(row.deletes):,} of its {int(row.files):,} dataset files"
        for eid, row in over.head(EPISODES_SHOWN).iterrows()
    )
    more = f" (and {len(over) - EPISODES_SHOWN} more episodes)" if len(over) > EPISODES_SHOWN else ""
    return (
        f"refusing the deletes: {named}{more} ({rule}, per episode); check those sheets, then rerun with --force "
        "or a higher --max-delete"
    )


def refresh_guard(refreshes: int, existing: int, limit: DeleteLimit | None) -> str | None:
    """The refusal message if `refreshes` (dataset objects rewritten from their sources) are too many, by the
    delete guard's rule: a mistyped TUTTLE_IMG_SIZE must not rewrite the catalogue unasked."""
    rule = _rule_broken(refreshes, existing, limit)
    if rule is None:
        return None
    return (
        f"refusing {refreshes:,} refreshes of the {existing:,} dataset files of the planned episodes ({rule}): "
        "that many sources differ from their dataset copies (a changed TUTTLE_IMG_SIZE?); check, then rerun with "
        "--force or a higher --max-delete"
    )
