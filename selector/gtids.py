"""The executed GTID set, kept up to date transaction by transaction.

MariaDB: one ``domain-server-seq`` per replication domain (the form of
``@@gtid_binlog_pos`` / ``BINLOG_GTID_POS()``), e.g. ``0-1-42,1-7-3``.
MySQL: ``uuid:interval[:interval...]`` per source, e.g. ``3e11...:1-42``.

An unknown starting set stays unknown (``None``): a set built from the middle
of the binlog would claim less than was executed.
"""

from __future__ import annotations


class GtidTracker:
    def __init__(self, mariadb: bool, initial: str | None) -> None:
        self.mariadb = mariadb
        self.known = initial is not None
        self.pending: str | None = None  # GTID of the open transaction
        self.last: str | None = None  # GTID of the last committed transaction
        self._domains: dict[str, str] = {}  # MariaDB: domain -> "d-s-n"
        self._intervals: dict[str, list[list[int]]] = {}  # MySQL: uuid -> [[a, b], ...]
        if initial:
            self._parse(initial)
        self._text = self._format() if self.known else None

    def _parse(self, text: str) -> None:
        for part in text.replace("\n", "").split(","):
            part = part.strip()
            if not part:
                continue
            if self.mariadb:
                self._domains[part.split("-", 1)[0]] = part
            else:
                sid, *ranges = part.split(":")
                spans = self._intervals.setdefault(sid.lower(), [])
                for r in ranges:
                    a, _, b = r.partition("-")
                    spans.append([int(a), int(b or a)])
                spans.sort()

    def _format(self) -> str:
        if self.mariadb:
            return ",".join(self._domains[d] for d in sorted(self._domains, key=int))
        return ",".join(
            sid + "".join(f":{a}" if a == b else f":{a}-{b}" for a, b in spans)
            for sid, spans in sorted(self._intervals.items())
        )

    def begin(self, gtid: str) -> None:
        self.pending = gtid

    def commit(self) -> None:
        gtid, self.pending = self.pending, None
        if gtid is None:
            return
        self.last = gtid
        if not self.known:
            return
        if self.mariadb:
            self._domains[gtid.split("-", 1)[0]] = gtid
        else:
            sid, _, gno_text = gtid.rpartition(":")
            self._add(sid.lower(), int(gno_text))
        self._text = self._format()

    def _add(self, sid: str, gno: int) -> None:
        spans = self._intervals.setdefault(sid, [])
        if spans and spans[-1][1] + 1 == gno:
            spans[-1][1] = gno
            return
        if any(a <= gno <= b for a, b in spans):
            return
        spans.append([gno, gno])
        spans.sort()
        merged: list[list[int]] = []
        for a, b in spans:
            if merged and merged[-1][1] + 1 >= a:
                merged[-1][1] = max(merged[-1][1], b)
            else:
                merged.append([a, b])
        self._intervals[sid] = merged

    def current(self) -> str | None:
        """The executed set after the last committed transaction (None if unknown)."""
        return self._text
