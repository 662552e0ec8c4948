"""The Lua sources: headers, the shared clock preamble, and boundedness (invariant 5), without Redis."""

from __future__ import annotations

import re

import pytest

from tests.support.lua_bounds import findings
from workers import broker as b

PREAMBLE = (
    "local t = redis.call('TIME') local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)"
)

OLD_HEARTBEAT_PRUNE = "redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[3]))"
"""The unbounded trim heartbeat.lua had, which the previous, spelling-bound check let through."""


def test_every_script_exists_and_documents_keys_argv_and_output() -> None:
    for name, filename in b.SCRIPTS.items():
        source = (b.LUA_DIR / filename).read_text()
        header = source.split("]]", 1)[0]
        assert source.startswith("--[["), name
        assert "KEYS[1]" in header, name
        assert "ARGV" in header, name
        assert "Output:" in header, name


def test_scripts_take_now_from_redis_time() -> None:
    """Checked on the text Redis runs: the include is expanded there."""
    for name in b.SCRIPTS:
        source = b.script_source(name)
        if re.search(r"\bnow\b", source.split("]]", 1)[1]):
            assert "redis.call('TIME')" in source, name


def test_the_clock_preamble_is_written_once_and_spliced_in_on_its_marker_line() -> None:
    for name, filename in b.SCRIPTS.items():
        text = (b.LUA_DIR / filename).read_text()
        source = b.script_source(name)
        assert "redis.call('TIME')" not in text, f"{filename}: use -- @include _now.lua"
        assert "@include" not in source, name
        # One line for one: line numbers in Redis errors match the file.
        assert source.count("\n") == text.count("\n"), name
        if "-- @include _now.lua" in text:
            assert source.count(PREAMBLE) == 1, name
            assert source.splitlines()[text.splitlines().index("-- @include _now.lua")] == PREAMBLE
    assert (b.LUA_DIR / "_now.lua").read_text().startswith("--[[")


def test_the_loaded_scripts_are_the_expanded_sources() -> None:
    """What the broker loads (and hashes for EVALSHA) is the expanded text, header first."""
    for name, script in b._load_scripts().items():
        assert script.source == b.script_source(name)
        assert script.source.startswith("--[["), name


def test_every_script_call_is_bounded() -> None:
    sources = {name: b.script_source(name) for name in b.SCRIPTS}
    sources["_now"] = (b.LUA_DIR / "_now.lua").read_text()
    problems = {name: [str(f) for f in findings(source)] for name, source in sources.items()}
    assert {name: found for name, found in problems.items() if found} == {}


@pytest.mark.parametrize(
    "lua",
    [
        OLD_HEARTBEAT_PRUNE,
        "redis.pcall('ZREMRANGEBYSCORE', KEYS[1], '-inf', 5)",
        'redis.call("zremrangebyscore", KEYS[1], "-inf", now)',
        "redis.call('ZRemRangeByLex', KEYS[1], '-', '+')",
        "redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now)",
        "redis.call ( \"zrangebyscore\" ,\n  KEYS[1],\n  '-inf',\n  now\n)",
        "server.call('ZREVRANGEBYSCORE', KEYS[1], now, '-inf')",
        "redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, -1)",
        "redis.call('ZRANGE', KEYS[1], 0, -1)",
        "redis.call('zrange', KEYS[1], 0, n)",
        "redis.call('ZRANGE', KEYS[1], 0, 10, 'BYSCORE')",
        "redis.call('ZREVRANGE', KEYS[1], 0, 100000)",
        "redis.call('LRANGE', KEYS[1], 0, -1)",
        "redis.call('ZREMRANGEBYRANK', KEYS[1], 0, -1)",
        "redis.call('KEYS', 'jq:*')",
        "redis.pcall([[keys]], '*')",
        "redis.call 'FLUSHALL'",
        'redis.call("SMEMBERS", KEYS[1])',
        "local all = redis.call('hgetall', KEYS[1])",
        "redis.call('HVALS', KEYS[1])",
        "redis.call('SUNIONSTORE', KEYS[1], KEYS[2])",
        "local cmd = 'KEYS'\nredis.call(cmd, '*')",
        "local call = redis.call\ncall('KEYS', '*')",
        "redis['call']('KEYS', '*')",
        "-- bounded:\nredis.call('SMEMBERS', KEYS[1])",  # a reason must be given
        "--[[ bounded: a block comment is not a reason ]]\nredis.call('SMEMBERS', KEYS[1])",
    ],
)
def test_the_check_catches_unbounded_calls_whatever_the_spelling(lua: str) -> None:
    assert findings(lua), lua


@pytest.mark.parametrize(
    "lua",
    [
        "redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, 1000)",
        "redis.pcall('zrangebyscore', KEYS[1], '-inf', now, 'limit', 0, tonumber(ARGV[1]))",
        "redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')",
        "redis.call('ZRANGE', KEYS[1], -1, -1)",
        "redis.call('ZRANGE', KEYS[1], '-inf', now, 'BYSCORE', 'LIMIT', 0, 10)",
        "redis.call('ZPOPMIN', KEYS[1], 10)",
        "-- redis.call('KEYS', '*') would be unbounded\nlocal s = \"redis.call('SMEMBERS', x)\"",
        "-- bounded: the set holds one member per worker thread\nredis.call('SMEMBERS', KEYS[1])",
        "redis.call('HGETALL', KEYS[1])  -- bounded: at most 20 fields, written only by this script",
    ],
)
def test_the_check_passes_bounded_calls_and_ignores_comments_and_strings(lua: str) -> None:
    assert findings(lua) == [], lua
