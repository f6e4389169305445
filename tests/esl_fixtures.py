"""Load the real FreeSWITCH captures from shared/fixtures/freeswitch/."""

from __future__ import annotations

import json
import os
from pathlib import Path


def shared_dir() -> Path:
    """shared/ lives beside the repository (repo_root.parent / "shared")."""
    beside = Path(__file__).resolve().parents[2] / "shared"
    if beside.is_dir():
        return beside
    env = os.environ.get("DIALGW_SHARED")
    if env:
        return Path(env)
    return beside


def fixtures_dir() -> Path:
    return shared_dir() / "fixtures" / "freeswitch"


def capture_names() -> list[str]:
    """Every capture with a .raw file, sorted."""
    return sorted(p.stem for p in fixtures_dir().glob("*.raw"))


def raw(name: str) -> bytes:
    """The exact bytes received from FreeSWITCH."""
    return (fixtures_dir() / f"{name}.raw").read_bytes()


def sent(name: str) -> bytes:
    """The exact bytes the recording client sent."""
    return (fixtures_dir() / f"{name}.sent").read_bytes()


def log(name: str) -> list[tuple[str, bytes]]:
    """(direction, bytes) per socket read or write; b"" marks EOF."""
    records = []
    for line in (fixtures_dir() / f"{name}.log").read_text().splitlines():
        if not line.strip():
            continue
        record = json.loads(line)
        data = b"" if record["bytes"] == "<<EOF>>" else record["bytes"].encode("latin-1")
        records.append((record["dir"], data))
    return records


def recv_chunks(name: str) -> list[bytes]:
    """The reads as FreeSWITCH's TCP stream delivered them (EOF dropped)."""
    return [data for direction, data in log(name) if direction == "recv" and data]
