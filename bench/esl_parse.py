"""ESL event parsing throughput: dialgw against a pure-Python floor and the
Python ESL peers, on a stream built from the real FreeSWITCH captures.

    python bench/esl_parse.py [--events N] [--repeat K] [--json PATH]

Each parser reads ``Event-Name`` and ``Unique-ID`` of every event, fed the
same bytes in 4 KiB and 64 KiB chunks. Every run is a fresh process; runs
are interleaved (parser after parser, chunk size after chunk size, then the
next repetition) and the median is printed. Drivers:

- dialgw: `FrameParser.feed` + `parse_event`, and the whole
  `ESLClientProtocol.dataReceived` path (events handed to ``on_event``);
- floor: `bench/floor_esl.py` (`bytes.find` framing, `unquote` on every value);
- greenswitch: its own reader loop `ESLProtocol.receive_events` (which
  frames, decodes and queues each `ESLEvent`) over a fake socket file, an
  `io.BufferedReader` whose raw reads return one chunk at a time;
- genesis: its own reader loop `Protocol.handler` (`ESLReaderFSM`,
  `parse_headers`) over an `asyncio.StreamReader` fed one chunk per loop
  turn (no socket: the same fake-reader idea as for greenswitch).

Also prints what greenswitch and dialgw say ``Hangup-Cause`` is when a
caller-ID name carries a percent-encoded newline. A benchmark, not a test:
nothing here asserts a timing.
"""

from __future__ import annotations

import argparse
import glob
import io
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
CAPTURES = os.path.join(REPO, "tests", "fixtures", "freeswitch")
CHUNKS = (4096, 65536)
PARSERS = ("dialgw", "dialgw-protocol", "floor", "greenswitch", "genesis")
PEERS = ("greenswitch", "genesis")


def event_frames() -> list[bytes]:
    """Every text/event-plain frame of the call captures, re-serialised alone."""
    from dialgw.esl.frames import FrameParser

    frames = []
    for path in sorted(glob.glob(os.path.join(CAPTURES, "call_*.raw"))):
        with open(path, "rb") as f:
            for frame in FrameParser().feed(f.read()):
                if frame.content_type == "text/event-plain":
                    frames.append(
                        b"Content-Length: %d\nContent-Type: text/event-plain\n\n" % len(frame.body) + frame.body
                    )
    return frames


def build_stream(events: int) -> tuple[bytes, int]:
    frames = event_frames()
    copies = max(1, round(events / len(frames)))
    return b"".join(frames) * copies, len(frames) * copies


def chunked(stream: bytes, size: int) -> list[bytes]:
    return [stream[i : i + size] for i in range(0, len(stream), size)]


# -- drivers: each returns (events seen, seconds) ---------------------------


def run_dialgw(chunks: list[bytes]) -> tuple[int, float]:
    from dialgw.esl.frames import FrameParser, parse_event

    seen = 0
    started = time.perf_counter()
    parser = FrameParser()
    for chunk in chunks:
        for frame in parser.feed(chunk):
            event = parse_event(frame)
            _ = event.name, event.unique_id  # read as a consumer would: they are decoded on demand
            seen += 1
    return seen, time.perf_counter() - started


def run_dialgw_protocol(chunks: list[bytes]) -> tuple[int, float]:
    from twisted.internet.task import Clock
    from twisted.internet.testing import StringTransport

    from dialgw.esl.protocol import ESLClientProtocol

    seen = [0]

    def on_event(event) -> None:
        _ = event.name, event.unique_id  # read as a consumer would: they are decoded on demand
        seen[0] += 1

    protocol = ESLClientProtocol("ClueCon", Clock(), command_timeout=0)
    protocol.on_event = on_event
    protocol.makeConnection(StringTransport())
    started = time.perf_counter()
    for chunk in chunks:
        protocol.dataReceived(chunk)
    return seen[0], time.perf_counter() - started


def run_floor(chunks: list[bytes]) -> tuple[int, float]:
    sys.path.insert(0, HERE)
    from floor_esl import FloorParser

    seen = 0
    started = time.perf_counter()
    parser = FloorParser()
    for chunk in chunks:
        for headers in parser.feed(chunk):
            headers.get("Event-Name"), headers.get("Unique-ID")
            seen += 1
    return seen, time.perf_counter() - started


class _ChunkedRaw(io.RawIOBase):
    """A socket stand-in: each read returns at most the next chunk."""

    def __init__(self, chunks: list[bytes]) -> None:
        self._chunks = chunks
        self._index = 0
        self._rest = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        if not self._rest:
            if self._index >= len(self._chunks):
                return 0
            self._rest = self._chunks[self._index]
            self._index += 1
        n = min(len(buffer), len(self._rest))
        buffer[:n] = self._rest[:n]
        self._rest = self._rest[n:]
        return n


def greenswitch_reader(chunks: list[bytes], size: int):
    from greenswitch.esl import ESLProtocol

    protocol = ESLProtocol()
    protocol.sock_file = io.BufferedReader(_ChunkedRaw(chunks), buffer_size=size)
    protocol.sock = io.BytesIO()
    protocol.connected = True
    return protocol


def run_greenswitch(chunks: list[bytes], size: int) -> tuple[int, float]:
    protocol = greenswitch_reader(chunks, size)
    queue = protocol._esl_event_queue
    started = time.perf_counter()
    protocol.receive_events()  # returns at end of stream; events are queued
    seen = 0
    while not queue.empty():
        headers = queue.get_nowait().headers
        headers.get("Event-Name"), headers.get("Unique-ID")
        seen += 1
    return seen, time.perf_counter() - started


def run_genesis(chunks: list[bytes]) -> tuple[int, float]:
    import asyncio

    from genesis.protocol.base import Protocol

    class Reader(Protocol):
        pass

    async def main() -> tuple[int, float]:
        protocol = Reader()
        reader = asyncio.StreamReader(limit=2**20)
        protocol.reader = reader
        protocol.is_connected = True

        async def produce() -> None:
            for chunk in chunks:
                reader.feed_data(chunk)
                await asyncio.sleep(0)
            reader.feed_eof()

        seen = 0
        started = time.perf_counter()
        producer = asyncio.ensure_future(produce())
        consumer = asyncio.ensure_future(protocol.handler())
        queue = protocol.events
        while True:
            event = await queue.get()
            if event is None:
                break
            event.get("Event-Name"), event.get("Unique-ID")
            seen += 1
        await producer
        await consumer
        return seen, time.perf_counter() - started

    return asyncio.run(main())


def run_once(parser: str, size: int, events: int) -> dict:
    stream, expected = build_stream(events)
    chunks = chunked(stream, size)
    if parser == "dialgw":
        seen, seconds = run_dialgw(chunks)
    elif parser == "dialgw-protocol":
        seen, seconds = run_dialgw_protocol(chunks)
    elif parser == "floor":
        seen, seconds = run_floor(chunks)
    elif parser == "greenswitch":
        seen, seconds = run_greenswitch(chunks, size)
    elif parser == "genesis":
        seen, seconds = run_genesis(chunks)
    else:
        raise SystemExit(f"unknown parser {parser}")
    if seen != expected:
        raise SystemExit(f"{parser}: saw {seen} events of {expected}")
    return {"parser": parser, "chunk": size, "events": seen, "rate": seen / seconds, "bytes": len(stream)}


# -- correctness: a forged header ---------------------------------------------

FORGED = (
    b"Event-Name: CHANNEL_HANGUP_COMPLETE\n"
    b"Unique-ID: 6f1e3a52-0d3b-4c1e-9a57-2b8f8d1c0a11\n"
    b"Hangup-Cause: USER_BUSY\n"
    b"Caller-Caller-ID-Name: Mallory%0AHangup-Cause%3A%20NORMAL_CLEARING\n"
    b"Caller-Caller-ID-Number: 0721234567\n\n"
)


def forged_header() -> dict[str, str | None]:
    """What each parser says Hangup-Cause is (the switch said USER_BUSY)."""
    from dialgw.esl.frames import FrameParser, parse_event

    frame = b"Content-Length: %d\nContent-Type: text/event-plain\n\n" % len(FORGED) + FORGED
    dialgw_event = parse_event(FrameParser().feed(frame)[0])
    protocol = greenswitch_reader([frame], 4096)
    protocol.receive_events()
    green = protocol._esl_event_queue.get_nowait().headers
    return {
        "dialgw": dialgw_event.get("Hangup-Cause"),
        "dialgw caller name": dialgw_event.get("Caller-Caller-ID-Name"),
        "greenswitch": green.get("Hangup-Cause"),
        "greenswitch caller name": green.get("Caller-Caller-ID-Name"),
    }


# -- the comparison -------------------------------------------------------------


def measure(events: int, repeat: int) -> dict:
    rates: dict[str, list[float]] = {}
    info = {}
    for _ in range(repeat):
        for size in CHUNKS:
            for parser in PARSERS:
                out = subprocess.run(
                    [sys.executable, __file__, "--once", parser, str(size), "--events", str(events)],
                    check=True, capture_output=True, text=True,
                ).stdout.strip().splitlines()[-1]
                result = json.loads(out)
                info = result
                rates.setdefault(f"{parser}@{size}", []).append(result["rate"])
    medians = {key: statistics.median(values) for key, values in rates.items()}
    ratios = {}
    for size in CHUNKS:
        fastest = max(PEERS, key=lambda p: medians[f"{p}@{size}"])
        ratios[str(size)] = {
            "fastest_peer": fastest,
            "vs_peer": medians[f"dialgw@{size}"] / medians[f"{fastest}@{size}"],
            "vs_floor": medians[f"dialgw@{size}"] / medians[f"floor@{size}"],
            "protocol_vs_peer": medians[f"dialgw-protocol@{size}"] / medians[f"{fastest}@{size}"],
        }
    return {
        "events": info["events"], "bytes": info["bytes"], "repeat": repeat,
        "rates": rates, "medians": medians, "ratios": ratios, "forged": forged_header(),
    }


def report(result: dict) -> None:
    print(f"ESL parsing: {result['events']} events ({result['bytes'] / 1e6:.1f} MB) from the call_*.raw "
          f"captures, median of {result['repeat']} interleaved runs, events/s")
    print(f"{'parser':<18}" + "".join(f"{f'{size // 1024} KiB chunks':>18}" for size in CHUNKS))
    for parser in PARSERS:
        print(f"{parser:<18}" + "".join(f"{result['medians'][f'{parser}@{size}']:>18,.0f}" for size in CHUNKS))
    for size in CHUNKS:
        r = result["ratios"][str(size)]
        print(f"{size // 1024:>2} KiB: dialgw / fastest peer ({r['fastest_peer']}) = {r['vs_peer']:.2f}x "
              f"(target >= 4x), dialgw / floor = {r['vs_floor']:.2f}x, "
              f"whole protocol / fastest peer = {r['protocol_vs_peer']:.2f}x")
    forged = result["forged"]
    print("forged header (switch said Hangup-Cause: USER_BUSY; caller name "
          "'Mallory%0AHangup-Cause%3A%20NORMAL_CLEARING'):")
    print(f"  greenswitch Hangup-Cause = {forged['greenswitch']!r}, "
          f"caller name = {forged['greenswitch caller name']!r}")
    print(f"  dialgw      Hangup-Cause = {forged['dialgw']!r}, caller name = {forged['dialgw caller name']!r}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=20000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", help="also write the figures to this file")
    parser.add_argument("--once", nargs=2, metavar=("PARSER", "CHUNK"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.once:
        print(json.dumps(run_once(args.once[0], int(args.once[1]), args.events)))
        return
    result = measure(args.events, args.repeat)
    report(result)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f)


if __name__ == "__main__":
    main()
