"""The README and docs/ say what is true: the README opens with the two
commands, every link between the pages resolves, the documented defaults
are the configuration's, and the webhook verification examples work."""

from __future__ import annotations

import base64
import re
import time
import unicodedata
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
from twisted.trial.unittest import SynchronousTestCase

from dialgw.admin import DEMO_WEBHOOK_URL
from dialgw.config import Settings, load_config, parse_config
from dialgw.webhooks.signing import webhook_headers
from tests.soak import NATURAL

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
SECRET = "whsec_" + base64.b64encode(b"k" * 32).decode()
OLD_SECRET = "whsec_" + base64.b64encode(b"o" * 32).decode()

FENCE = re.compile(r"^```.*?^```[ \t]*$", re.S | re.M)
CODE_SPAN = re.compile(r"`[^`\n]*`")
LINK = re.compile(r"\[[^\]\n]*\]\(([^)\s]+)\)")


def pages() -> list[Path]:
    """The README and every Markdown page under docs/."""
    return [README, *sorted(DOCS.glob("*.md"))]


def prose(path: Path) -> str:
    """A page without its code blocks and code spans (links and headings only live outside them)."""
    return CODE_SPAN.sub("", FENCE.sub("", path.read_text(encoding="utf-8")))


def anchors(path: Path) -> set[str]:
    """GitHub's anchor for each heading of a page (lower case, punctuation gone, spaces to hyphens)."""
    found: set[str] = set()
    text = FENCE.sub("", path.read_text(encoding="utf-8"))
    for heading in re.findall(r"^#{1,6}[ \t]+(.+?)[ \t]*$", text, re.M):
        slug = "".join(
            c for c in heading.lower().replace(" ", "-")
            if c == "-" or c == "_" or unicodedata.category(c)[0] in "LN"
        )
        candidate, n = slug, 0
        while candidate in found:
            n += 1
            candidate = f"{slug}-{n}"
        found.add(candidate)
    return found


def code_block(path: Path, after: str, language: str) -> str:
    """The first ```language block of a page after the heading ``after``."""
    text = path.read_text(encoding="utf-8")
    match = re.search(rf"```{language}\n(.*?)```", text[text.index(after):], re.S)
    assert match is not None, f"no ```{language} block after {after!r} in {path.name}"
    return match.group(1)


def example(path: Path, after: str, secret: str = SECRET) -> dict[str, Any]:
    """Run a page's Python example with a real secret; its globals."""
    code = code_block(path, after, "python").replace('"whsec_..."', repr(secret))
    namespace: dict[str, Any] = {}
    exec(compile(code, str(path.relative_to(ROOT)), "exec"), namespace)
    return namespace


def signed(body: bytes, event_id: str = "evt_1", at: float | None = None,
           secrets: tuple[str, ...] = (SECRET,)) -> dict[str, str]:
    headers = webhook_headers(
        secrets=list(secrets), event_id=event_id, event_name="call.answered",
        timestamp=int(time.time() if at is None else at), body=body, user_agent="dialgw/test",
    )
    # Receivers see header names in whatever case; the examples take them lower-cased.
    return {name.lower(): value for name, value in headers.items()}


class ReadmeTests(SynchronousTestCase):
    def test_opens_with_the_two_commands(self) -> None:
        text = README.read_text(encoding="utf-8")
        title, rest = text.split("\n", 1)
        self.assertEqual(title, "# dialgw")
        block = re.match(r"\s*```\n(.*?)```", rest, re.S)
        self.assertIsNotNone(block, "the README must open with the two set-up commands")
        assert block is not None
        commands = [line.split("#")[0].strip() for line in block.group(1).splitlines()]
        self.assertEqual(commands, ["make run", "make test"])
        makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
        for target in ("run", "test"):
            self.assertRegex(makefile, rf"(?m)^{target}:", f"Makefile has no {target} target")

    def test_stays_a_front_door(self) -> None:
        lines = README.read_text(encoding="utf-8").count("\n")
        self.assertLess(lines, 150, "the README is the front door: move reference material to docs/")

    def test_make_run_is_what_the_readme_says(self) -> None:
        text = README.read_text(encoding="utf-8")
        settings = load_config(str(ROOT / "etc" / "dialgw-dev.conf"))
        self.assertEqual(settings.api.listen, "tcp:8080:interface=127.0.0.1")
        self.assertIn("http://127.0.0.1:8080", text)
        self.assertEqual(settings.database.backend, "sqlite")
        self.assertTrue(settings.database.path.startswith("var/"))
        self.assertIn("SQLite under `./var`", text)
        self.assertEqual(settings.ratelimit.backend, "memory")
        self.assertIn("in-memory rate limits", text)
        assert settings.simulator is not None
        self.assertEqual(settings.simulator.listen, "tcp:8021:interface=127.0.0.1")
        self.assertEqual(settings.simulator.webhook_receiver, "tcp:8099:interface=127.0.0.1")
        self.assertIn("127.0.0.1:8021", text)
        self.assertEqual(DEMO_WEBHOOK_URL, "http://127.0.0.1:8099/webhooks")
        self.assertIn(DEMO_WEBHOOK_URL, text)


class LinkTests(SynchronousTestCase):
    def test_every_relative_link_resolves(self) -> None:
        checked = 0
        for page in pages():
            for target in LINK.findall(prose(page)):
                if re.match(r"[a-z]+:", target):
                    continue  # http(s), mailto: not ours to check
                path_part, _, anchor = target.partition("#")
                resolved = (page.parent / path_part).resolve() if path_part else page
                where = f"{page.relative_to(ROOT)} links to {target}"
                self.assertTrue(resolved.exists(), f"{where}: no such file")
                if anchor:
                    self.assertEqual(resolved.suffix, ".md", f"{where}: an anchor in a non-Markdown file")
                    self.assertIn(anchor, anchors(resolved), f"{where}: no such heading")
                checked += 1
        self.assertGreater(checked, 50)

    def test_readme_leads_to_every_page(self) -> None:
        linked_from_readme = {
            (README.parent / target.partition("#")[0]).resolve()
            for target in LINK.findall(prose(README))
        }
        for page in sorted(DOCS.glob("*.md")):
            if page.name == "architecture.md":
                continue  # for developers: linked from development.md (checked below)
            self.assertIn(page, linked_from_readme, f"the README's 'Where to go next' misses docs/{page.name}")
        self.assertIn("(architecture.md)", prose(DOCS / "development.md"))


#: Sections of the configuration table -> the part of `Settings` they fill.
SECTIONS: dict[str, Callable[[Settings], Any]] = {
    "[node]": lambda s: s.node,
    "[api]": lambda s: s.api,
    "[database]": lambda s: s.database,
    "[freeswitch:NAME]": lambda s: s.freeswitch[0],
    "[webhooks]": lambda s: s.webhooks,
    "[ratelimit]": lambda s: s.ratelimit,
    "[redis]": lambda s: s.redis,
    "[log]": lambda s: s.log,
    "[simulator]": lambda s: s.simulator,
}
MINIMAL = {
    "[node]": "id = abcde",
    "[freeswitch:NAME]": "endpoint = tcp:host=127.0.0.1:port=8021",
    "[simulator]": "listen = tcp:8021:interface=127.0.0.1",
}


def config_table() -> list[tuple[str, str, str]]:
    """(section, key, default) of each row of docs/configuration.md's table."""
    rows = []
    section = ""
    for line in (DOCS / "configuration.md").read_text(encoding="utf-8").splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if not line.startswith("|") or len(cells) != 4 or cells[1] in ("key", "---"):
            continue
        section = cells[0].strip("`") or section
        rows.append((section, cells[1].strip("`"), cells[2]))
    return rows


def config_with(section: str = "", line: str = "") -> Settings:
    """The minimal configuration (with a [simulator]), plus one key."""
    parts = {name: [body] for name, body in MINIMAL.items()}
    if section:
        parts.setdefault(section, []).append(line)
    return parse_config("\n".join(
        f"{name.replace('NAME', 'fs1')}\n" + "\n".join(lines) + "\n" for name, lines in parts.items()
    ))


class ConfigurationDocTests(SynchronousTestCase):
    def test_every_key_is_documented(self) -> None:
        documented = {(section, key) for section, key, _ in config_table()}
        settings = config_with()
        for section, part in SECTIONS.items():
            for field in attrs.fields(type(part(settings))):
                if (section, field.name) == ("[freeswitch:NAME]", "name"):
                    continue  # NAME itself
                self.assertIn((section, field.name), documented, f"{section} {field.name} is not documented")

    def test_documented_defaults_are_the_defaults(self) -> None:
        baseline = config_with()
        rows = config_table()
        self.assertEqual(len(rows), len({(section, key) for section, key, _ in rows}), "a key documented twice")
        for section, key, default in rows:
            where = f"docs/configuration.md: {section} {key} default {default}"
            actual = getattr(SECTIONS[section](baseline), key, None)
            if default == "(absent)":
                self.assertIsNone(actual, where)
            elif default.startswith("`"):
                value = default.strip("`")
                self.assertEqual(getattr(SECTIONS[section](config_with(section, f"{key} = {value}")), key),
                                 actual, where)
            else:
                self.assertTrue(default.startswith("(required"), where)


class SimulatorDocTests(SynchronousTestCase):
    def test_scenarios_end_as_documented(self) -> None:
        """docs/simulator.md's table gives each last digit the cause the soak expects of it."""
        text = (DOCS / "simulator.md").read_text(encoding="utf-8")
        documented: dict[str, str] = {}
        for digits, ends_with in re.findall(r"^\| ([0-9, ]+) \| [^|]+ \| ([^|]+) \|$", text, re.M):
            for digit in digits.split(", "):
                documented[digit] = ends_with
        self.assertEqual(sorted(documented), sorted(NATURAL))
        for digit, (_, cause) in NATURAL.items():
            self.assertIn(f"`{cause}`", documented[digit], f"last digit {digit}")


BODY = b'{"id":"evt_1","event":"call.answered","session_uuid":"acW68-x","status":"answered"}'


class WebhookExampleTests(SynchronousTestCase):
    """Both verification examples of docs/webhooks.md do what the page says."""

    def checkers(self, secret: str = SECRET) -> dict[str, Callable[[bytes, dict[str, str]], bool]]:
        page = DOCS / "webhooks.md"
        handle = example(page, "### With the `standardwebhooks` package", secret)["handle"]
        by_hand = example(page, "### With the standard library only", secret)["is_from_dialgw"]
        return {
            "standardwebhooks": lambda body, headers: bool(handle(body, headers) == 204),
            "standard library": lambda body, headers: bool(by_hand(body, headers)),
        }

    def test_accept_a_signed_webhook_and_refuse_tampering(self) -> None:
        for name, accepts in self.checkers().items():
            self.assertTrue(accepts(BODY, signed(BODY)), name)
            self.assertFalse(accepts(BODY.replace(b"answered", b"ended"), signed(BODY)), name)
            self.assertFalse(accepts(BODY, signed(BODY, secrets=(OLD_SECRET,))), name)
            self.assertFalse(accepts(BODY, {}), name)

    def test_refuse_a_replay_from_an_hour_ago(self) -> None:
        for name, accepts in self.checkers().items():
            self.assertFalse(accepts(BODY, signed(BODY, "evt_2", at=time.time() - 3600)), name)

    def test_accept_either_secret_during_a_rotation(self) -> None:
        for secret in (SECRET, OLD_SECRET):
            for name, accepts in self.checkers(secret).items():
                self.assertTrue(accepts(BODY, signed(BODY, secrets=(SECRET, OLD_SECRET))), f"{name} with {secret}")

    def test_standardwebhooks_example_dedupes(self) -> None:
        handle = example(DOCS / "webhooks.md", "### With the `standardwebhooks` package")["handle"]
        headers = signed(BODY)
        self.assertEqual(handle(BODY, headers), 204)
        self.assertEqual(handle(BODY, headers), 204)
        self.assertEqual(handle(BODY.replace(b"answered", b"ended"), headers), 400)
        self.assertEqual(handle(BODY, signed(BODY, "evt_2", at=time.time() - 3600)), 400)
