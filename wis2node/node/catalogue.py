"""Reference data shipped with the project: WIS2 Global Service addresses and IANA's TLD list."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from functools import cache
from pathlib import Path

DATA = Path(__file__).parent / "data"
GLOBAL_SERVICES_CSV = DATA / "global-services.csv"
TLDS_TXT = DATA / "tlds-alpha-by-domain.txt"


@dataclass(frozen=True)
class GlobalService:
    """One address of a WIS2 Global Service (provisional list; see the CSV's header)."""

    service: str  # global-broker | global-cache
    operator: str  # the operator's centre-id
    ip: str


@cache
def global_services() -> tuple[GlobalService, ...]:
    """The catalogue of Global Service addresses, in file order."""
    with GLOBAL_SERVICES_CSV.open(encoding="utf-8") as handle:
        rows = csv.DictReader(line for line in handle if not line.startswith("#"))
        return tuple(GlobalService(row["service"], row["operator"], row["ip"]) for row in rows)


def operators() -> frozenset[str]:
    """Every operator named in the catalogue (what an exclude list may name)."""
    return frozenset(service.operator for service in global_services())


@cache
def top_level_domains() -> frozenset[str]:
    """IANA's top-level domains, upper case, as pywis-topics checks a centre-id's first token."""
    lines = TLDS_TXT.read_text(encoding="ascii").splitlines()
    return frozenset(line.strip() for line in lines if line.strip() and not line.startswith("#"))
