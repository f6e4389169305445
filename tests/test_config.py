"""Tests for dialgw.config: defaults, the shipped files, one-line errors."""

from __future__ import annotations

import os

from twisted.trial.unittest import SynchronousTestCase

from dialgw.config import ConfigError, load_config, parse_config

HERE = os.path.dirname(os.path.abspath(__file__))
ETC = os.path.join(os.path.dirname(HERE), "etc")

MINIMAL = """\
[node]
id = acW68

[freeswitch:fs1]
endpoint = tcp:host=127.0.0.1:port=8021
"""


def with_lines(base: str, section: str, *lines: str) -> str:
    """``base`` with ``lines`` added to ``[section]`` (appended if new)."""
    header = f"[{section}]\n"
    if header in base:
        return base.replace(header, header + "".join(line + "\n" for line in lines), 1)
    return base + "\n" + header + "".join(line + "\n" for line in lines)


class DefaultsTests(SynchronousTestCase):
    def test_minimal_config_gets_spec_defaults(self) -> None:
        s = parse_config(MINIMAL)
        self.assertEqual(s.node.id, "acW68")
        self.assertEqual(s.api.listen, "tcp:8080:interface=127.0.0.1")
        self.assertTrue(s.api.metrics)
        self.assertIsNone(s.api.admin_listen)
        self.assertEqual(s.database.backend, "sqlite")
        self.assertEqual(s.database.path, "/var/lib/dialgw/dialgw.sqlite")
        self.assertIsNone(s.database.dsn)
        (fs,) = s.freeswitch
        self.assertEqual(
            (fs.name, fs.endpoint, fs.password, fs.max_channels, fs.max_cps, fs.heartbeat_sec, fs.dial_string),
            ("fs1", "tcp:host=127.0.0.1:port=8021", "ClueCon", 200, 30, 20, "sofia/gateway/trunk/{to}"),
        )
        self.assertEqual((s.webhooks.timeout_sec, s.webhooks.max_attempts, s.webhooks.max_age_sec), (10, 10, 86400))
        r = s.ratelimit
        self.assertEqual(
            (r.backend, r.dials_per_sec, r.burst, r.max_concurrent, r.cooldown_after, r.cooldown_window_sec,
             r.cooldown_sec),
            ("memory", 5, 10, 100, 20, 10, 30),
        )
        self.assertEqual(s.redis.url, "redis://127.0.0.1:6379/0")
        self.assertEqual(s.log.format, "text")
        self.assertIsNone(s.simulator)

    def test_several_freeswitch_nodes_keep_file_order(self) -> None:
        text = MINIMAL + "[freeswitch:b-2]\nendpoint = tcp:10.0.0.2:8021\nmax_cps = 7\n"
        s = parse_config(text)
        self.assertEqual([n.name for n in s.freeswitch], ["fs1", "b-2"])
        self.assertEqual(s.freeswitch_node("b-2").max_cps, 7)
        self.assertIsNone(s.freeswitch_node("nope"))

    def test_inline_comments_are_stripped(self) -> None:
        s = parse_config(with_lines(MINIMAL, "freeswitch:fs1", "max_cps = 12   ; per second", "password = pw # x"))
        self.assertEqual(s.freeswitch[0].max_cps, 12)
        self.assertEqual(s.freeswitch[0].password, "pw")

    def test_values_are_typed(self) -> None:
        text = MINIMAL + (
            "[api]\nmetrics = no\nadmin_listen = unix:/run/dialgw/admin.sock\n"
            "[ratelimit]\ndials_per_sec = 0.5\nbackend = redis\n"
            "[webhooks]\ntimeout_sec = 2.5\n"
            "[database]\nbackend = postgresql\ndsn = host=db dbname=dialgw\n"
            "[log]\nformat = json\n"
            "[simulator]\nlisten = tcp:8021:interface=127.0.0.1\nheartbeat_sec = 5\n"
        )
        s = parse_config(text)
        self.assertFalse(s.api.metrics)
        self.assertEqual(s.api.admin_listen, "unix:/run/dialgw/admin.sock")
        self.assertEqual(s.ratelimit.dials_per_sec, 0.5)
        self.assertEqual(s.ratelimit.backend, "redis")
        self.assertEqual(s.webhooks.timeout_sec, 2.5)
        self.assertEqual((s.database.backend, s.database.dsn), ("postgresql", "host=db dbname=dialgw"))
        self.assertEqual(s.log.format, "json")
        self.assertEqual((s.simulator.listen, s.simulator.heartbeat_sec), ("tcp:8021:interface=127.0.0.1", 5))

    def test_systemd_listen_is_accepted_without_inherited_sockets(self) -> None:
        s = parse_config(MINIMAL + "[api]\nlisten = systemd:domain=INET:index=0\n")
        self.assertEqual(s.api.listen, "systemd:domain=INET:index=0")


class ShippedFilesTests(SynchronousTestCase):
    def test_production_config_loads(self) -> None:
        s = load_config(os.path.join(ETC, "dialgw.conf"))
        self.assertEqual(len(s.node.id), 5)
        self.assertEqual(s.freeswitch[0].endpoint, "tcp:host=127.0.0.1:port=8021")
        self.assertEqual(s.database.path, "/var/lib/dialgw/dialgw.sqlite")
        self.assertIsNone(s.simulator)

    def test_dev_config_runs_the_simulator(self) -> None:
        s = load_config(os.path.join(ETC, "dialgw-dev.conf"))
        self.assertEqual(s.api.listen, "tcp:8080:interface=127.0.0.1")
        self.assertEqual(s.database.path, "var/dialgw.sqlite")
        self.assertEqual(s.simulator.listen, "tcp:8021:interface=127.0.0.1")
        self.assertEqual(s.simulator.heartbeat_sec, 5)
        (fs,) = s.freeswitch
        self.assertEqual((fs.name, fs.endpoint, fs.heartbeat_sec), ("sim", "tcp:host=127.0.0.1:port=8021", 5))


# (name, config text, expected str(ConfigError))
ERROR_CASES = [
    ("no node section", "[freeswitch:fs1]\nendpoint = tcp:h:1\n", "[node] section is required"),
    ("node id missing", "[node]\n[freeswitch:a]\nendpoint = tcp:h:1\n", "[node] id: is required"),
    ("node id too short", MINIMAL.replace("acW68", "ab12"), "[node] id: must be exactly 5 ASCII letters or digits, got 'ab12'"),
    ("node id punctuation", MINIMAL.replace("acW68", "ab-12"), "[node] id: must be exactly 5 ASCII letters or digits, got 'ab-12'"),
    ("node id non-ascii", MINIMAL.replace("acW68", "abc1\u0663"), "[node] id: must be exactly 5 ASCII letters or digits, got 'abc1\u0663'"),
    ("no freeswitch node", "[node]\nid = acW68\n", "[freeswitch:NAME] at least one [freeswitch:NAME] section is required"),
    ("bad freeswitch name", MINIMAL + "[freeswitch:a b]\nendpoint = tcp:h:1\n", "[freeswitch:a b] node name must be letters, digits, _ or -"),
    ("endpoint missing", "[node]\nid = acW68\n[freeswitch:fs1]\nmax_cps = 3\n", "[freeswitch:fs1] endpoint: is required"),
    ("max_cps not int", with_lines(MINIMAL, "freeswitch:fs1", "max_cps = abc"), "[freeswitch:fs1] max_cps: must be an integer between 1 and 10000, got 'abc'"),
    ("max_cps zero", with_lines(MINIMAL, "freeswitch:fs1", "max_cps = 0"), "[freeswitch:fs1] max_cps: must be an integer between 1 and 10000, got '0'"),
    ("max_channels float", with_lines(MINIMAL, "freeswitch:fs1", "max_channels = 2.5"), "[freeswitch:fs1] max_channels: must be an integer between 1 and 100000, got '2.5'"),
    ("heartbeat negative", with_lines(MINIMAL, "freeswitch:fs1", "heartbeat_sec = -1"), "[freeswitch:fs1] heartbeat_sec: must be an integer between 1 and 3600, got '-1'"),
    ("password with space", with_lines(MINIMAL, "freeswitch:fs1", "password = a b"), "[freeswitch:fs1] password: must be non-empty, without spaces or control characters"),
    ("dial string without to", with_lines(MINIMAL, "freeswitch:fs1", "dial_string = sofia/gateway/trunk/x"), "[freeswitch:fs1] dial_string: must contain {to} exactly once, got 'sofia/gateway/trunk/x'"),
    ("dial string to twice", with_lines(MINIMAL, "freeswitch:fs1", "dial_string = {to}/{to}"), "[freeswitch:fs1] dial_string: must contain {to} exactly once, got '{to}/{to}'"),
    ("dial string variable block", with_lines(MINIMAL, "freeswitch:fs1", "dial_string = {x}sofia/{to}"), "[freeswitch:fs1] dial_string: braces are allowed only in {to}, got '{x}sofia/{to}'"),
    ("dial string comma", with_lines(MINIMAL, "freeswitch:fs1", "dial_string = sofia/gw/{to},x"), "[freeswitch:fs1] dial_string: may contain only letters, digits and _ . / @ : { } + -, got 'sofia/gw/{to},x'"),
    ("bad client endpoint", MINIMAL.replace("tcp:host=127.0.0.1:port=8021", "tcp:host=x:port=abc"), "[freeswitch:fs1] endpoint: not a valid Twisted client endpoint string (invalid literal for int() with base 10: 'abc'), got 'tcp:host=x:port=abc'"),
    ("bad server endpoint", MINIMAL + "[api]\nlisten = bogus:1\n", "[api] listen: not a valid Twisted server endpoint string (Unknown endpoint type: 'bogus'), got 'bogus:1'"),
    ("metrics not yes/no", MINIMAL + "[api]\nmetrics = maybe\n", "[api] metrics: must be yes or no, got 'maybe'"),
    ("unknown backend", MINIMAL + "[database]\nbackend = mysql\n", "[database] backend: must be one of sqlite, postgresql, got 'mysql'"),
    ("postgresql without dsn", MINIMAL + "[database]\nbackend = postgresql\n", "[database] dsn: is required"),
    ("dials_per_sec zero", MINIMAL + "[ratelimit]\ndials_per_sec = 0\n", "[ratelimit] dials_per_sec: must be a number greater than 0 and at most 100000, got '0'"),
    ("dials_per_sec nan", MINIMAL + "[ratelimit]\ndials_per_sec = nan\n", "[ratelimit] dials_per_sec: must be a number greater than 0 and at most 100000, got 'nan'"),
    ("burst zero", MINIMAL + "[ratelimit]\nburst = 0\n", "[ratelimit] burst: must be an integer between 1 and 1000000, got '0'"),
    ("ratelimit backend", MINIMAL + "[ratelimit]\nbackend = memcached\n", "[ratelimit] backend: must be one of memory, redis, got 'memcached'"),
    ("webhook attempts", MINIMAL + "[webhooks]\nmax_attempts = ten\n", "[webhooks] max_attempts: must be an integer between 1 and 1000, got 'ten'"),
    ("redis url", MINIMAL + "[redis]\nurl = http://x\n", "[redis] url: must be a redis://, rediss:// or unix:// URL, got 'http://x'"),
    ("log format", MINIMAL + "[log]\nformat = xml\n", "[log] format: must be one of text, json, got 'xml'"),
    ("simulator without listen", MINIMAL + "[simulator]\nheartbeat_sec = 5\n", "[simulator] listen: is required"),
    ("unknown section", MINIMAL + "[webhook]\ntimeout_sec = 5\n", "[webhook] unknown section"),
    ("DEFAULT section", MINIMAL + "[DEFAULT]\nmax_cps = 5\n", "[DEFAULT] unknown section"),
    ("unknown key", MINIMAL + "[api]\nlisten_on = tcp:80\n", "[api] listen_on: unknown key"),
    ("typo in node key", with_lines(MINIMAL, "freeswitch:fs1", "max_cpss = 5"), "[freeswitch:fs1] max_cpss: unknown key"),
    ("duplicate key", with_lines(MINIMAL, "freeswitch:fs1", "max_cps = 5", "max_cps = 6"), "[freeswitch:fs1] max_cps: duplicate key (line 6)"),
    ("duplicate section", MINIMAL + "[node]\nid = other\n", "[node] duplicate section (line 6)"),
    ("key before any section", "id = acW68\n", "<string>: line 1: a key outside any [section]: 'id = acW68'"),
    ("continuation line", with_lines(MINIMAL, "freeswitch:fs1", "password = a", "  b"), "[freeswitch:fs1] password: must be on one line"),
]


class ErrorTests(SynchronousTestCase):
    def test_each_mistake_is_one_line_naming_section_and_key(self) -> None:
        for name, text, expected in ERROR_CASES:
            with self.subTest(name):
                try:
                    parse_config(text)
                except ConfigError as e:
                    self.assertEqual(str(e), expected, name)
                    self.assertNotIn("\n", str(e), name)
                else:
                    self.fail(f"{name}: no ConfigError")

    def test_missing_file_is_a_config_error(self) -> None:
        path = self.mktemp()
        with self.assertRaises(ConfigError) as cm:
            load_config(path)
        self.assertEqual(str(cm.exception), f"{path}: cannot read config file: No such file or directory")

    def test_directory_is_a_config_error(self) -> None:
        path = self.mktemp()
        os.mkdir(path)
        with self.assertRaises(ConfigError) as cm:
            load_config(path)
        self.assertTrue(str(cm.exception).startswith(f"{path}: cannot read config file:"))

    def test_source_names_the_file_in_parse_errors(self) -> None:
        path = self.mktemp()
        with open(path, "w") as f:
            f.write("junk\n")
        with self.assertRaises(ConfigError) as cm:
            load_config(path)
        self.assertEqual(str(cm.exception), f"{path}: line 1: a key outside any [section]: 'junk'")
