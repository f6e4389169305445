"""Load the real FreeSWITCH captures (tests/fixtures/freeswitch/)."""

from __future__ import annotations

import json
from pathlib import Path


def fixtures_dir() -> Path:
    """The captures, copied byte for byte from shared/fixtures/freeswitch/.

    They live in the repository so that a clean clone tests itself; a test
    below checks the copy against shared/ whenever shared/ is beside it.
    """
    return Path(__file__).resolve().parent / "fixtures" / "freeswitch"


def shared_fixtures_dir() -> Path:
    """shared/fixtures/freeswitch beside the repository, if it is there."""
    return Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "freeswitch"


def relative_files(root: Path) -> list[str]:
    """Every plain file under ``root``, in its folders too, as sorted POSIX paths relative to it."""
    return sorted(path.relative_to(root).as_posix() for path in root.rglob("*") if path.is_file())


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
