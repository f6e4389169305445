"""The API commands the simulated switch answers (``api``/``bgapi``), with FreeSWITCH's words.

Every command but ``originate`` answers at once; ``originate`` answers when
the far end decides. Each fires its API event just before its output goes
out, and a ``bgapi`` command's output becomes a BACKGROUND_JOB event.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from dialgw.simulator.causes import str2cause
from dialgw.simulator.channels import Channel, stamp
from dialgw.simulator.dialstring import separate
from dialgw.simulator.events import VERSION, uptime_text
from dialgw.simulator.switch import Switch

SHOW_USAGE = (
    "-USAGE: codec|endpoint|application|api|dialplan|file|timer|calls [count]|"
    "channels [count|like <match string>]|calls|detailed_calls|bridged_calls|detailed_bridged_calls|"
    "aliases|complete|chat|management|modules|nat_map|say|interfaces|interface_types|tasks|limits|status\n"
)

_SHOW_COLUMNS = (
    "uuid direction created created_epoch name state cid_name cid_num ip_addr dest application "
    "application_data dialplan context read_codec read_rate read_bit_rate write_codec write_rate "
    "write_bit_rate secure hostname presence_id presence_data accountcode callstate callee_name "
    "callee_num callee_direction call_uuid sent_callee_name sent_callee_num initial_cid_name "
    "initial_cid_num initial_ip_addr initial_dest initial_dialplan initial_context"
).split()


class ApiCommands:
    """The switch's API: what ``api <name> <arg>`` runs."""

    def __init__(self, switch: Switch) -> None:
        self.switch = switch
        self._commands: dict[str, Callable[[str], str]] = {
            "status": self.status,
            "version": self.version,
            "uptime": self.uptime,
            "uuid_exists": self.uuid_exists,
            "uuid_kill": self.uuid_kill,
            "sched_hangup": self.sched_hangup,
            "uuid_setvar": self.uuid_setvar,
            "uuid_getvar": self.uuid_getvar,
            "show": self.show,
        }

    def execute(self, name: str, arg: str, deliver: Callable[[str], None]) -> None:
        """Run an API command; ``deliver(output)`` now, or later for ``originate``."""
        lower = name.lower()
        command = self._commands.get(lower) if name.isidentifier() else None
        if command is None and lower != "originate":
            deliver(f"-ERR {name} Command not found!\n")
            return
        api_headers = [("API-Command", name)]
        if arg:
            api_headers.append(("API-Command-Argument", arg))
        switch = self.switch
        api_event = switch.events.event("API", api_headers)

        def finish(output: str) -> None:
            switch.fire(api_event)
            deliver(output or "-ERR no reply\n")

        if command is None:
            switch.originate(arg, finish)  # completes later, when the far end decides
        else:
            finish(command(arg))

    def background_job(self, job_uuid: str, command: str, arg: str, output: str) -> None:
        """Fire the BACKGROUND_JOB carrying a bgapi command's output."""
        headers = [("Job-UUID", job_uuid), ("Job-Command", command)]
        if arg:
            headers.append(("Job-Command-Arg", arg))
        self.switch.fire(self.switch.events.event("BACKGROUND_JOB", headers, body=output))

    def status(self, arg: str) -> str:
        """``status``."""
        switch = self.switch
        now = switch.clock.seconds()
        counters = switch.counters
        counters.roll(now)
        peak = counters.session_peak
        return (
            f"UP {uptime_text(now - counters.started_at)}\n"
            f"FreeSWITCH (Version {VERSION.replace('~', '  ')}) is ready\n"
            f"{counters.sessions} session(s) since startup\n"
            f"{len(switch.calls)} session(s) - peak {peak}, last 5min {peak} \n"
            f"{counters.sps_last} session(s) per Sec out of max {switch.sessions_per_second}, "
            f"peak {counters.sps_peak}, last 5min {counters.sps_peak} \n"
            f"{switch.max_sessions} session(s) max\n"
            "min idle cpu 0.00/98.67\n"
            "Current Stack Size/Max 240K/8192K\n"
        )

    def version(self, arg: str) -> str:
        """``version``."""
        return f"FreeSWITCH Version {VERSION} ( 64bit)\n"

    def uptime(self, arg: str) -> str:
        """``uptime``: whole seconds, no newline."""
        return str(int(self.switch.clock.seconds() - self.switch.counters.started_at))

    def uuid_exists(self, arg: str) -> str:
        """``uuid_exists <uuid>``."""
        return "true" if self.switch.live(arg.strip()) is not None else "false"

    def uuid_kill(self, arg: str) -> str:
        """``uuid_kill <uuid> [cause]``."""
        argv = separate(arg, " ", limit=2) if arg else []
        if not argv:
            return "-USAGE: <uuid> [cause]\n"
        call = self.switch.live(argv[0])
        if call is None:
            return "-ERR No such channel!\n"
        cause = str2cause(argv[1] if len(argv) > 1 else None)
        self.switch.local_hangup(call, cause)
        return "+OK\n"

    def sched_hangup(self, arg: str) -> str:
        """``sched_hangup [+]<time> <uuid> [<cause>]``."""
        argv = separate(arg, " ", limit=4) if arg else []
        if not argv or not argv[0]:
            return "-USAGE: [+]<time> <uuid> [<cause>]\n"
        call = self.switch.live(argv[1]) if len(argv) > 1 else None
        if call is None:
            return "-ERR No such channel!\n"
        cause = str2cause(argv[2], "ALLOTTED_TIMEOUT") if len(argv) > 2 else "ALLOTTED_TIMEOUT"
        self.switch.schedule_hangup(call, argv[0], cause)
        return "+OK\n"

    def uuid_setvar(self, arg: str) -> str:
        """``uuid_setvar <uuid> <var> [value]`` (no value: unset)."""
        argv = separate(arg, " ", limit=3) if arg else []
        if len(argv) < 2:
            return "-USAGE: <uuid> <var> [value]\n"
        call = self.switch.live(argv[0])
        if call is None:
            return "-ERR No such channel!\n"
        if len(argv) > 2:
            call.variables[argv[1]] = argv[2]
        else:
            call.variables.pop(argv[1], None)
        return "+OK\n"

    def uuid_getvar(self, arg: str) -> str:
        """``uuid_getvar <uuid> <var>``: the value, or ``_undef_``."""
        argv = separate(arg, " ", limit=2) if arg else []
        if len(argv) < 2:
            return "-USAGE: <uuid> <var>\n"
        call = self.switch.live(argv[0])
        if call is None:
            return "-ERR No such channel!\n"
        return call.variables.get(argv[1], "_undef_")

    def show(self, arg: str) -> str:
        """``show channels`` / ``show calls``, as CSV or ``as json``."""
        words = arg.split()
        what = words[0].lower() if words else ""
        if what not in ("channels", "calls"):
            return SHOW_USAGE
        rows = [self._show_row(call) for call in self.switch.calls.values()]
        if words[-2:] == ["as", "json"]:
            if not rows:
                return '{"row_count": 0}\n'
            return json.dumps({"row_count": len(rows), "rows": rows}, separators=(",", ":"), ensure_ascii=False)
        if not rows:
            return "\n0 total.\n"
        lines = [",".join(_SHOW_COLUMNS)] + [",".join(row[c] for c in _SHOW_COLUMNS) for row in rows]
        return "\n".join(lines) + f"\n\n{len(rows)} total.\n"

    def _show_row(self, call: Channel) -> dict[str, str]:
        flipped = call.flipped
        media = call.media
        return {
            "uuid": call.uuid,
            "direction": "outbound",
            "created": stamp(call.created_at),
            "created_epoch": str(int(call.created_at)),
            "name": call.channel_name,
            "state": call.running_state,
            "cid_name": call.destination if flipped else (call.caller_id_name or ""),
            "cid_num": call.destination if flipped else call.caller_id_number,
            "ip_addr": "",
            "dest": call.destination,
            "application": "park" if call.parked else "",
            "application_data": "",
            "dialplan": "",
            "context": "default",
            "read_codec": "PCMU" if media else "",
            "read_rate": "8000" if media else "",
            "read_bit_rate": "64000" if media else "",
            "write_codec": "PCMU" if media else "",
            "write_rate": "8000" if media else "",
            "write_bit_rate": "64000" if media else "",
            "secure": "",
            "hostname": self.switch.hostname,
            "presence_id": "",
            "presence_data": "",
            "accountcode": "",
            "callstate": call.call_state,
            "callee_name": "",
            "callee_num": call.caller_id_number if flipped else call.destination,
            "callee_direction": "RECV" if flipped else "",
            "call_uuid": call.uuid,
            "sent_callee_name": "",
            "sent_callee_num": "",
            "initial_cid_name": call.caller_id_name or "",
            "initial_cid_num": call.caller_id_number,
            "initial_ip_addr": "",
            "initial_dest": call.destination,
            "initial_dialplan": "",
            "initial_context": "default",
        }
