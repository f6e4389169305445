"""The INI configuration file (SPEC §6) turned into typed, validated settings.

Every mistake -- an unknown section or key, a bad value, a missing required
key -- raises `ConfigError`, whose ``str()`` is one line naming the section
and key, so the daemon and ``dialgw-admin check-config`` can refuse a bad file
without a traceback.
"""

from __future__ import annotations

import configparser
import math
import re
from collections.abc import Callable, Mapping
from typing import TypeVar
from urllib.parse import urlsplit

import attrs
from twisted.internet.endpoints import clientFromString, serverFromString

from dialgw.ids import is_node_id

DEFAULT_CONFIG_PATH = "/etc/dialgw/dialgw.conf"


class ConfigError(Exception):
    """A configuration mistake; ``str()`` is one line: ``[section] key: problem``."""

    def __init__(self, problem: str, section: str | None = None, key: str | None = None,
                 source: str | None = None) -> None:
        super().__init__(problem, section, key, source)
        self.problem = problem
        self.section = section
        self.key = key
        self.source = source

    def __str__(self) -> str:
        if self.section is None:
            where = f"{self.source}: " if self.source else ""
            return f"{where}{self.problem}"
        if self.key is None:
            return f"[{self.section}] {self.problem}"
        return f"[{self.section}] {self.key}: {self.problem}"


@attrs.frozen
class NodeSettings:
    """``[node]``: this gateway node."""

    id: str


@attrs.frozen
class ApiSettings:
    """``[api]``: the HTTP API listener."""

    listen: str = "tcp:8080:interface=127.0.0.1"
    metrics: bool = True
    admin_listen: str | None = None


@attrs.frozen
class DatabaseSettings:
    """``[database]``: where sessions and apps live."""

    backend: str = "sqlite"
    path: str = "/var/lib/dialgw/dialgw.sqlite"
    dsn: str | None = None


@attrs.frozen
class FreeSwitchNodeSettings:
    """One ``[freeswitch:NAME]`` section: a FreeSWITCH server reached over ESL."""

    name: str
    endpoint: str
    password: str = "ClueCon"
    max_channels: int = 200
    max_cps: int = 30
    heartbeat_sec: int = 20
    dial_string: str = "sofia/gateway/trunk/{to}"


@attrs.frozen
class WebhookSettings:
    """``[webhooks]``: delivery timeout and retry bounds."""

    timeout_sec: float = 10.0
    max_attempts: int = 10
    max_age_sec: int = 86400


@attrs.frozen
class RateLimitSettings:
    """``[ratelimit]``: per-app defaults (apps may override some)."""

    backend: str = "memory"
    dials_per_sec: float = 5.0
    burst: int = 10
    max_concurrent: int = 100
    cooldown_after: int = 20
    cooldown_window_sec: int = 10
    cooldown_sec: int = 30


@attrs.frozen
class RedisSettings:
    """``[redis]``: used when ``[ratelimit] backend = redis``."""

    url: str = "redis://127.0.0.1:6379/0"


@attrs.frozen
class LogSettings:
    """``[log]``: log line format."""

    format: str = "text"


@attrs.frozen
class SimulatorSettings:
    """``[simulator]`` (development only): run the embedded FreeSWITCH simulator.

    With ``webhook_receiver`` (a server endpoint string) the daemon also runs
    a small receiver that logs every webhook it gets (`dialgw.devreceiver`).
    """

    listen: str
    heartbeat_sec: int = 20
    webhook_receiver: str | None = None


@attrs.frozen
class Settings:
    """The whole validated configuration."""

    node: NodeSettings
    api: ApiSettings
    database: DatabaseSettings
    freeswitch: tuple[FreeSwitchNodeSettings, ...]
    webhooks: WebhookSettings
    ratelimit: RateLimitSettings
    redis: RedisSettings
    log: LogSettings
    simulator: SimulatorSettings | None = None

    def freeswitch_node(self, name: str) -> FreeSwitchNodeSettings | None:
        """The ``[freeswitch:NAME]`` settings called ``name``, if any."""
        for node in self.freeswitch:
            if node.name == name:
                return node
        return None


# --- value parsers: each takes the raw text and returns a value or raises
# ValueError with the "what is wrong" part of the message.


class _DummyReactor:
    """Stands in for a reactor: endpoint parsers only store it, never use it."""


def _int_between(low: int, high: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        # int() would accept " 1_0" and "+5"; insist on plain digits.
        if re.fullmatch(r"-?[0-9]+", text, re.ASCII) and low <= int(text) <= high:
            return int(text)
        raise ValueError(f"must be an integer between {low} and {high}, got {text!r}")

    return parse


def _number_between(low: float, high: float) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not re.fullmatch(r"[0-9]+(\.[0-9]+)?", text, re.ASCII) or not (low < value <= high):
            raise ValueError(f"must be a number greater than {low:g} and at most {high:g}, got {text!r}")
        return value

    return parse


def _choice(*choices: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if text not in choices:
            raise ValueError(f"must be one of {', '.join(choices)}, got {text!r}")
        return text

    return parse


def _yes_no(text: str) -> bool:
    value = configparser.ConfigParser.BOOLEAN_STATES.get(text.lower())
    if value is None:
        raise ValueError(f"must be yes or no, got {text!r}")
    return value


def _endpoint_kind(text: str) -> str:
    return text.split(":", 1)[0].strip().lower()


def _server_endpoint(text: str) -> str:
    if _endpoint_kind(text) == "systemd":
        # Parsing a systemd endpoint reads the inherited descriptors; outside
        # systemd that fails, so check only the shape here.
        if re.fullmatch(r"systemd:domain=(INET6?|UNIX):index=[0-9]+", text):
            return text
        raise ValueError(f"must look like systemd:domain=INET:index=0, got {text!r}")
    try:
        # Twisted's endpoint parsers are untyped; the dummy reactor is never used.
        serverFromString(_DummyReactor(), text)  # type: ignore[no-untyped-call]
    except Exception as e:
        raise ValueError(f"not a valid Twisted server endpoint string ({_one_line(e)}), got {text!r}") from None
    return text


def _client_endpoint(text: str) -> str:
    try:
        clientFromString(_DummyReactor(), text)  # type: ignore[no-untyped-call]
    except Exception as e:
        raise ValueError(f"not a valid Twisted client endpoint string ({_one_line(e)}), got {text!r}") from None
    return text


def _node_id(text: str) -> str:
    if not is_node_id(text):
        raise ValueError(f"must be exactly 5 ASCII letters or digits, got {text!r}")
    return text


def _password(text: str) -> str:
    if not text or re.search(r"[\s\x00-\x1f\x7f]", text):
        raise ValueError("must be non-empty, without spaces or control characters")
    return text


_DIAL_STRING_CHARS = re.compile(r"[A-Za-z0-9_./@:{}+-]+", re.ASCII)


def _dial_string(text: str) -> str:
    if not _DIAL_STRING_CHARS.fullmatch(text):
        raise ValueError(f"may contain only letters, digits and _ . / @ : {{ }} + -, got {text!r}")
    if text.count("{to}") != 1:
        raise ValueError(f"must contain {{to}} exactly once, got {text!r}")
    rest = text.replace("{to}", "")
    if "{" in rest or "}" in rest:
        raise ValueError(f"braces are allowed only in {{to}}, got {text!r}")
    return text


def _redis_url(text: str) -> str:
    parts = urlsplit(text)
    if parts.scheme not in ("redis", "rediss", "unix") or not (parts.netloc or parts.path):
        raise ValueError(f"must be a redis://, rediss:// or unix:// URL, got {text!r}")
    return text


def _non_empty(text: str) -> str:
    if not text:
        raise ValueError("must not be empty")
    return text


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__


# --- sections


S = TypeVar("S")


class _Section:
    """Reads one section's keys into a settings class, and rejects the rest.

    A key that is absent takes the settings class's default (the defaults
    are written there only); a key without a default is required.
    """

    def __init__(self, parser: configparser.ConfigParser, name: str) -> None:
        self.name = name
        self._values = dict(parser.items(name)) if parser.has_section(name) else {}

    def build(self, settings: type[S], fixed: Mapping[str, object] | None = None,
              **parsers: Callable[[str], object]) -> S:
        """``settings(**fixed, key=parse(text), ...)`` for the keys present."""
        fields = attrs.fields_dict(settings)  # type: ignore[arg-type]
        values: dict[str, object] = dict(fixed or {})
        for key, parse in parsers.items():
            if key in self._values:
                try:
                    values[key] = parse(self._values[key])
                except ValueError as e:
                    raise ConfigError(str(e), self.name, key) from None
            elif fields[key].default is attrs.NOTHING:
                raise ConfigError("is required", self.name, key)
        for key in self._values:
            if key not in parsers:
                raise ConfigError("unknown key", self.name, key)
        return settings(**values)


_FIXED_SECTIONS = ("node", "api", "database", "webhooks", "ratelimit", "redis", "log", "simulator")
_FS_SECTION = re.compile(r"freeswitch:([A-Za-z0-9_-]+)", re.ASCII)


def parse_config(text: str, source: str = "<string>") -> Settings:
    """Parse and validate configuration text; raise `ConfigError` on any mistake."""
    parser = configparser.ConfigParser(
        inline_comment_prefixes=(";", "#"),
        interpolation=None,
        strict=True,
        empty_lines_in_values=False,
        # A [DEFAULT] section would silently add keys to every section;
        # treat it like any other unknown section instead.
        default_section="\x00no-default",
    )
    try:
        parser.read_string(text, source=source)
    except configparser.DuplicateSectionError as e:
        raise ConfigError(f"duplicate section (line {e.lineno})", e.section) from None
    except configparser.DuplicateOptionError as e:
        raise ConfigError(f"duplicate key (line {e.lineno})", e.section, e.option) from None
    except configparser.MissingSectionHeaderError as e:
        raise ConfigError(f"line {e.lineno}: a key outside any [section]: {e.line.strip()!r}",
                          source=source) from None
    except configparser.ParsingError as e:
        lineno, line = e.errors[0]
        raise ConfigError(f"line {lineno}: cannot parse {line.strip()!r}", source=source) from None
    except configparser.Error as e:
        raise ConfigError(_one_line(e), source=source) from None

    fs_names: list[str] = []
    for name in parser.sections():
        m = _FS_SECTION.fullmatch(name)
        if m:
            fs_names.append(m.group(1))
        elif name.startswith("freeswitch:"):
            raise ConfigError("node name must be letters, digits, _ or -", name)
        elif name not in _FIXED_SECTIONS:
            raise ConfigError("unknown section", name)
        for key, value in parser.items(name):
            if "\n" in value:
                raise ConfigError("must be on one line", name, key)

    if not parser.has_section("node"):
        raise ConfigError("section is required", "node")
    node = _Section(parser, "node").build(NodeSettings, id=_node_id)
    api = _Section(parser, "api").build(
        ApiSettings, listen=_server_endpoint, metrics=_yes_no, admin_listen=_server_endpoint
    )

    s = _Section(parser, "database")
    database = s.build(DatabaseSettings, backend=_choice("sqlite", "postgresql"), path=_non_empty, dsn=_non_empty)
    if database.backend == "postgresql" and database.dsn is None:
        raise ConfigError("is required", "database", "dsn")

    if not fs_names:
        raise ConfigError("at least one [freeswitch:NAME] section is required", "freeswitch:NAME")
    nodes = [
        _Section(parser, f"freeswitch:{name}").build(
            FreeSwitchNodeSettings,
            {"name": name},
            endpoint=_client_endpoint,
            password=_password,
            max_channels=_int_between(1, 100000),
            max_cps=_int_between(1, 10000),
            heartbeat_sec=_int_between(1, 3600),
            dial_string=_dial_string,
        )
        for name in fs_names
    ]
    webhooks = _Section(parser, "webhooks").build(
        WebhookSettings,
        timeout_sec=_number_between(0, 300),
        max_attempts=_int_between(1, 1000),
        max_age_sec=_int_between(1, 30 * 86400),
    )
    ratelimit = _Section(parser, "ratelimit").build(
        RateLimitSettings,
        backend=_choice("memory", "redis"),
        dials_per_sec=_number_between(0, 100000),
        burst=_int_between(1, 1000000),
        max_concurrent=_int_between(1, 10000000),
        cooldown_after=_int_between(1, 1000000),
        cooldown_window_sec=_int_between(1, 86400),
        cooldown_sec=_int_between(1, 86400),
    )
    redis = _Section(parser, "redis").build(RedisSettings, url=_redis_url)
    log = _Section(parser, "log").build(LogSettings, format=_choice("text", "json"))
    simulator = None
    if parser.has_section("simulator"):
        simulator = _Section(parser, "simulator").build(
            SimulatorSettings,
            listen=_server_endpoint,
            heartbeat_sec=_int_between(1, 3600),
            webhook_receiver=_server_endpoint,
        )

    return Settings(
        node=node,
        api=api,
        database=database,
        freeswitch=tuple(nodes),
        webhooks=webhooks,
        ratelimit=ratelimit,
        redis=redis,
        log=log,
        simulator=simulator,
    )


def load_config(path: str) -> Settings:
    """Read and validate the file at ``path``; raise `ConfigError` on any mistake."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise ConfigError(f"cannot read config file: {e.strerror or _one_line(e)}", source=path) from None
    except UnicodeDecodeError:
        raise ConfigError("config file is not valid UTF-8", source=path) from None
    return parse_config(text, source=path)
