"""A small Lua reader that finds Redis calls whose cost grows with a key's size (invariant 5).

It reads the code the way Lua does, not line by line with fixed spellings: comments and strings are told
apart, a call may span lines, ``redis.call`` / ``redis.pcall`` / ``server.call`` all count, the command
name may be in any case and either quote. A call is unbounded unless its arguments bound it (LIMIT, a
literal rank range) or the line above (or the call's own line) says why in a ``-- bounded: <reason>``
comment. A call it cannot read (a command name that is not a literal, ``redis.call`` passed around as a
value) counts as unbounded too: the check must not be fooled by indirection.

``tests/unit/test_broker_scripts.py`` runs it on every script. From the repository root,
``python -m tests.support.lua_bounds FILE...`` prints the findings and exits 1 if there are any.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path

MAX_RANGE = 1000
"""A literal rank range (ZRANGE key 0 9) is bounded when it spans fewer elements than this."""

ALWAYS = frozenset(
    {
        "KEYS",
        "SMEMBERS",
        "HGETALL",
        "HKEYS",
        "HVALS",
        "SINTER",
        "SUNION",
        "SDIFF",
        "SINTERSTORE",
        "SUNIONSTORE",
        "SDIFFSTORE",
        "ZUNION",
        "ZINTER",
        "ZDIFF",
        "ZUNIONSTORE",
        "ZINTERSTORE",
        "ZDIFFSTORE",
        "ZREMRANGEBYSCORE",
        "ZREMRANGEBYLEX",
        "FLUSHALL",
        "FLUSHDB",
    }
)
"""Commands with no argument that bounds them: only a ``-- bounded:`` reason lets them pass."""

NEEDS_LIMIT = frozenset({"ZRANGEBYSCORE", "ZREVRANGEBYSCORE", "ZRANGEBYLEX", "ZREVRANGEBYLEX", "SORT"})
"""Bounded only with ``LIMIT offset count``."""

RANK_RANGE = frozenset({"ZRANGE", "ZREVRANGE", "LRANGE", "ZREMRANGEBYRANK"})
"""Bounded by ``LIMIT`` (ZRANGE BYSCORE/BYLEX) or by literal ``start stop`` indices of one sign."""

CALL_RE = re.compile(r"\b(?:redis|server)\s*\.\s*p?call\b")
INDEXED_RE = re.compile(r"\b(?:redis|server)\s*\[")
BOUNDED_RE = re.compile(r"^--\s*bounded:\s*\S")
INT_RE = re.compile(r"^-?\d+$")


@dataclass(frozen=True)
class Finding:
    line: int
    call: str
    why: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.why}: {self.call}"


def _long_bracket(src: str, i: int) -> int | None:
    """If ``src[i:]`` opens a long bracket ``[[`` / ``[==[``, the index just past its close, else None."""
    match = re.match(r"\[(=*)\[", src[i:])
    if not match:
        return None
    close = "]" + match[1] + "]"
    end = src.find(close, i + match.end())
    return len(src) if end < 0 else end + len(close)


def _blank(text: str) -> str:
    """Spaces for ``text``, keeping its newlines (so offsets and line numbers stay put)."""
    return re.sub(r"[^\n]", " ", text)


def scan(src: str) -> tuple[str, str, dict[int, str]]:
    """(code with comments blanked, the same with string contents blanked too, {line: line comment}).

    Offsets and line numbers are the same in all three, so a match in one is read in another.
    """
    code: list[str] = []
    bare: list[str] = []
    comments: dict[int, str] = {}
    i = 0
    while i < len(src):
        ch = src[i]
        if src.startswith("--", i):
            end = _long_bracket(src, i + 2)
            if end is None:  # a line comment (only these carry "-- bounded:" reasons)
                newline = src.find("\n", i)
                end = len(src) if newline < 0 else newline
                comments[src.count("\n", 0, i) + 1] = src[i:end]
            code.append(_blank(src[i:end]))
            bare.append(_blank(src[i:end]))
            i = end
            continue
        if ch in "'\"":
            j = i + 1
            while j < len(src) and src[j] != ch and src[j] != "\n":
                j += 2 if src[j] == "\\" else 1
            end = min(j + 1, len(src))
        elif ch == "[" and (end := _long_bracket(src, i)) is not None:
            pass
        else:
            code.append(ch)
            bare.append(ch)
            i += 1
            continue
        code.append(src[i:end])
        bare.append(_blank(src[i:end]))
        i = end
    return "".join(code), "".join(bare), comments


def _string_value(token: str) -> str | None:
    """The value of a literal string token ('x', "x", [[x]]), else None."""
    token = token.strip()
    if len(token) >= 2 and token[0] in "'\"" and token[-1] == token[0]:
        return token[1:-1]
    match = re.fullmatch(r"\[(=*)\[(.*)\]\1\]", token, re.DOTALL)
    return match[2] if match else None


def _arguments(code: str, start: int) -> tuple[list[str], int] | None:
    """Top-level comma-separated arguments of the call whose ``(`` is at ``start``; None if unclosed."""
    args: list[str] = []
    depth, i, begin = 0, start, start + 1
    while i < len(code):
        ch = code[i]
        if ch in "'\"":
            j = i + 1
            while j < len(code) and code[j] != ch:
                j += 2 if code[j] == "\\" else 1
            i = j + 1
            continue
        if ch == "[" and (end := _long_bracket(code, i)) is not None:
            i = end
            continue
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
            if depth == 0:
                args.append(code[begin:i].strip())
                return [a for a in args if a], i + 1
        elif ch == "," and depth == 1:
            args.append(code[begin:i].strip())
            begin = i + 1
        i += 1
    return None


def _has_limit(args: list[str]) -> bool:
    """``'LIMIT', offset, count`` with a count that is not a negative literal (-1 means "all")."""
    for k, arg in enumerate(args):
        value = _string_value(arg)
        if value is not None and value.upper() == "LIMIT" and k + 2 < len(args):
            count = args[k + 2].strip()
            return not (INT_RE.match(count) and int(count) < 0)
    return False


def _flags(args: list[str]) -> set[str]:
    return {value.upper() for arg in args if (value := _string_value(arg)) is not None}


def _literal_span(start: str, stop: str) -> bool:
    if not (INT_RE.match(start) and INT_RE.match(stop)):
        return False
    a, b = int(start), int(stop)
    return (a >= 0) == (b >= 0) and a <= b and b - a < MAX_RANGE


def _why_unbounded(args: list[str]) -> str | None:
    if not args:
        return "a call without arguments"
    command = _string_value(args[0])
    if command is None:
        return "the command name is not a literal string (cannot be checked)"
    command = command.upper()
    if command in ALWAYS:
        return f"{command} has no argument that bounds it"
    if command in NEEDS_LIMIT and not _has_limit(args):
        return f"{command} without LIMIT offset count"
    if command in RANK_RANGE:
        if _has_limit(args):
            return None
        if {"BYSCORE", "BYLEX"} & _flags(args[4:]):
            return f"{command} BYSCORE/BYLEX without LIMIT"
        if len(args) < 4 or not _literal_span(args[2], args[3]):
            return f"{command} over a rank range that is not a small literal one"
    return None


def findings(source: str) -> list[Finding]:
    """Every unbounded or unreadable Redis call in ``source`` not excused by a ``-- bounded:`` reason."""
    code, bare, comments = scan(source)

    def excused(line: int) -> bool:
        return any(BOUNDED_RE.match(comments.get(n, "")) for n in (line, line - 1))

    out: list[Finding] = []
    for match in INDEXED_RE.finditer(bare):
        line = bare.count("\n", 0, match.start()) + 1
        out.append(Finding(line, match[0], "redis used through an index (cannot be checked)"))
    for match in CALL_RE.finditer(bare):
        line = bare.count("\n", 0, match.start()) + 1
        rest = code[match.end() :]
        stripped = rest.lstrip()
        at = match.end() + len(rest) - len(stripped)
        if stripped.startswith("("):
            parsed = _arguments(code, at)
            if parsed is None:
                out.append(Finding(line, match[0], "unclosed call"))
                continue
            args, end = parsed
            text = " ".join(code[match.start() : end].split())
        elif stripped[:1] in ("'", '"') or (stripped[:1] == "[" and _long_bracket(code, at)):
            token = re.match(r"('[^']*'|\"[^\"]*\"|\[(=*)\[.*?\]\2\])", stripped, re.DOTALL)
            args, text = [token[0] if token else stripped], match[0] + " " + stripped.split("\n", 1)[0]
        else:
            out.append(Finding(line, match[0], "redis.call used as a value (cannot be checked)"))
            continue
        why = _why_unbounded(args)
        if why is not None and not excused(line):
            out.append(Finding(line, text, why))
    return out


def main(paths: list[str]) -> int:
    status = 0
    for path in paths:
        for finding in findings(Path(path).read_text(encoding="utf-8")):
            print(f"{path}: {finding}")
            status = 1
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
