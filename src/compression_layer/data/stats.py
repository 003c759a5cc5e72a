"""Row accounting of a data stage: rows in, kept, rejected by reason, per domain.

Rows are counted twice on purpose: ``rows_in`` where lines are read, kept/rejected where rows
are written. ``check()`` compares the two, so a row lost anywhere in between fails the stage
instead of vanishing silently. The dict form is the stage's DVC metrics file.
"""

from __future__ import annotations

from typing import Any, Iterable

from compression_layer.data.jsonl import DataError


# Sums are kept exactly, as integer multiples of 2**-1074 (the smallest float step), so a mean does
# not depend on the order the values were added in (one process, or chunks merged).
_EXPONENT = 1074


def _exact(value: float) -> int:
    numerator, denominator = float(value).as_integer_ratio()  # the denominator is a power of two
    return numerator << (_EXPONENT - denominator.bit_length() + 1)


class AccountingError(DataError):
    """kept + rejected (+ collapsed duplicates) differs from rows in: a bug, never ignored."""


class StageStats:
    def __init__(self, stage: str, reasons: Iterable[str], domains: Iterable[str] = ()):
        self.stage = stage
        self.reasons = list(reasons)
        self.rows_in = 0
        self.kept = 0
        self.rejected = dict.fromkeys(self.reasons, 0)
        self.collapsed: int | None = None  # duplicates collapsed; only stages that collapse set it
        self.per_domain: dict[str, dict[str, Any]] = {}
        self.sums: dict[str, int] = {}  # exact, see _exact
        for domain in domains:
            self._domain(domain)

    def _domain(self, domain: str) -> dict[str, Any]:
        entry = self.per_domain.get(domain)
        if entry is None:
            entry = {"rows": 0, "kept": 0, "rejected": 0}
            if self.collapsed is not None:
                entry["collapsed"] = 0
            entry["rejected_by_reason"] = dict.fromkeys(self.reasons, 0)
            self.per_domain[domain] = entry
        return entry

    def keep(self, domain: str, n: int = 1) -> None:
        self.kept += n
        entry = self._domain(domain)
        entry["rows"] += n
        entry["kept"] += n

    def reject(self, reason: str, domain: str) -> None:
        if reason not in self.rejected:
            raise KeyError(f"unknown reject reason {reason!r} in stage {self.stage}")
        self.rejected[reason] += 1
        entry = self._domain(domain)
        entry["rows"] += 1
        entry["rejected"] += 1
        entry["rejected_by_reason"][reason] += 1

    def collapse(self, domain: str) -> None:
        """One duplicate row folded into an earlier occurrence (not written)."""
        if self.collapsed is None:
            raise ValueError("call track_duplicates() first")
        self.collapsed += 1
        entry = self._domain(domain)
        entry["rows"] += 1
        entry["collapsed"] += 1

    def track_duplicates(self) -> None:
        self.collapsed = 0
        for entry in self.per_domain.values():
            entry.setdefault("collapsed", 0)

    def add(self, name: str, value: float) -> None:
        """Accumulate a per-kept-row value (its mean over kept rows is reported)."""
        self.sums[name] = self.sums.get(name, 0) + _exact(value)

    def merge(self, other: "StageStats") -> None:
        """Add the counts of another part of the same input (e.g. a chunk decided in another process)."""
        self.rows_in += other.rows_in
        self.kept += other.kept
        for reason, n in other.rejected.items():
            self.rejected[reason] += n
        if other.collapsed is not None:
            self.collapsed = (self.collapsed or 0) + other.collapsed
        for domain, theirs in other.per_domain.items():
            mine = self._domain(domain)
            for key in ("rows", "kept", "rejected", "collapsed"):
                if key in theirs:
                    mine[key] = mine.get(key, 0) + theirs[key]
            for reason, n in theirs["rejected_by_reason"].items():
                mine["rejected_by_reason"][reason] += n
        for name, total in other.sums.items():
            self.sums[name] = self.sums.get(name, 0) + total

    @property
    def rejected_total(self) -> int:
        return sum(self.rejected.values())

    def check(self) -> None:
        """Fail loudly unless every row read was written somewhere (or collapsed)."""
        accounted = self.kept + self.rejected_total + (self.collapsed or 0)
        if accounted != self.rows_in:
            collapsed = f" + {self.collapsed} collapsed" if self.collapsed is not None else ""
            raise AccountingError(
                f"{self.stage}: {self.kept} kept + {self.rejected_total} rejected{collapsed} = {accounted} "
                f"!= {self.rows_in} rows in"
            )
        per_domain = sum(entry["rows"] for entry in self.per_domain.values())
        if per_domain != self.rows_in:
            raise AccountingError(f"{self.stage}: per-domain rows sum to {per_domain}, not {self.rows_in}")

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "rows_in": self.rows_in,
            "kept": self.kept,
            "rejected": self.rejected_total,
        }
        if self.collapsed is not None:
            out["duplicates_collapsed"] = self.collapsed
        out["rejected_by_reason"] = dict(self.rejected)
        out["per_domain"] = {name: dict(entry) for name, entry in sorted(self.per_domain.items())}
        for name, total in sorted(self.sums.items()):
            out[f"kept_mean_{name}"] = round(total / (self.kept << _EXPONENT), 4) if self.kept else None
        return out
