"""Parsing ``originate`` arguments the way FreeSWITCH splits them.

The API line is split on spaces (single quotes protect spaces and are
removed, backslash escapes are processed); the ``{k=v,...}`` block is split
on commas (or the ``^^X`` delimiter) and each part at its first ``=``.
"""

from __future__ import annotations

import attrs

ORIGINATE_USAGE = (
    "-USAGE: <call url> <exten>|&<application_name>(<app_args>) "
    "[<dialplan>] [<context>] [<cid_name>] [<cid_num>] [<timeout_sec>]\n"
)

_UNESCAPE = {"n": "\n", "r": "\r", "t": "\t", "s": " "}


def _cleanup(token: str, delim: str) -> str:
    """Remove unescaped single quotes, process escapes, trim unquoted outer spaces."""
    out: list[str] = []
    quoted = False
    end = 0  # length of out up to the last character worth keeping at the end
    i = 0
    while i < len(token):
        char = token[i]
        if char == "\\" and i + 1 < len(token):
            nxt = token[i + 1]
            literal = nxt in ("'", '"', "\\", delim)
            if literal or nxt in _UNESCAPE:
                out.append(nxt if literal else _UNESCAPE[nxt])
                end = len(out)
                i += 2
                continue
        if char == "'":
            quoted = not quoted
            i += 1
            continue
        if char == " " and not quoted and not out:
            i += 1
            continue
        out.append(char)
        if char != " " or quoted:
            end = len(out)
        i += 1
    return "".join(out[:end])


def separate(text: str, delim: str, limit: int = 1024) -> list[str]:
    """Split like ``switch_separate_string``: quotes and backslashes protect ``delim``."""
    tokens: list[str] = []
    current: list[str] = []
    quoted = False
    i = 0
    if delim == " ":
        text = text.lstrip(" ")
    while i < len(text):
        char = text[i]
        if char == "\\" and i + 1 < len(text):
            current += [char, text[i + 1]]
            i += 2
            continue
        if char == "'":
            quoted = not quoted
        elif char == delim and not quoted and len(tokens) < limit - 1:
            tokens.append("".join(current))
            current = []
            i += 1
            if delim == " ":
                while i < len(text) and text[i] == " ":
                    i += 1
            continue
        current.append(char)
        i += 1
    if current or (tokens and delim != " "):
        tokens.append("".join(current))
    return [_cleanup(token, delim) for token in tokens]


def _end_of_block(text: str, opening: str, closing: str) -> int:
    depth = 0
    for index, char in enumerate(text):
        if char == opening:
            depth += 1
        elif char == closing:
            depth -= 1
            if depth == 0:
                return index
    return -1


def parse_variables(block: str) -> dict[str, str]:
    """``a=1,b='x y'`` (the inside of ``{}``) → variables, in order."""
    delim = ","
    if block.startswith("^^") and len(block) > 2:
        delim, block = block[2], block[3:]
    variables: dict[str, str] = {}
    for part in separate(block, delim):
        if "=" not in part:
            continue
        name, value = part.split("=", 1)
        if name:
            variables[name] = value
    return variables


@attrs.frozen
class Originate:
    """A parsed ``originate`` command."""

    arg: str
    variables: dict[str, str]
    dial_string: str
    destination: str
    application: str
    timeout: int
    cid_name: str | None
    cid_num: str | None


class UsageError(ValueError):
    """The arguments do not make an originate; the reply is ``-USAGE: ...``."""


def _destination(dial_string: str) -> str:
    leg = dial_string
    while leg.startswith("["):
        end = _end_of_block(leg, "[", "]")
        if end < 0:
            break
        leg = leg[end + 1 :]
    for separator in ("|", ",", ":_:"):
        leg = leg.split(separator, 1)[0]
    last = leg.rsplit("/", 1)[-1]
    return last.split("@", 1)[0]


def parse_originate(arg: str) -> Originate:
    """Parse ``originate``'s argument string; raise :class:`UsageError` if it makes no sense."""
    argv = separate(arg, " ", limit=10)
    if not 2 <= len(argv) <= 7:
        raise UsageError(arg)
    url = argv[0]
    variables: dict[str, str] = {}
    while url[:1] in ("<", "{"):
        closing = ">" if url[0] == "<" else "}"
        end = _end_of_block(url, url[0], closing)
        if end < 0:
            break
        variables.update(parse_variables(url[1:end]))
        url = url[end + 1 :]

    def given(index: int) -> str | None:
        if len(argv) > index and argv[index] and argv[index] != "undef":
            return argv[index]
        return None

    timeout = 60
    positional = given(6)
    if positional and positional.isdigit():
        timeout = int(positional)
    override = variables.get("originate_timeout", "")
    if override.isdigit() and int(override) > 0:
        timeout = int(override)
    return Originate(
        arg=arg,
        variables=variables,
        dial_string=url,
        destination=_destination(url),
        application=argv[1],
        timeout=timeout,
        cid_name=given(4),
        cid_num=given(5),
    )
