"""When `captioncast serve` starts itself again on jemalloc, and with what environment."""

from __future__ import annotations

from pathlib import Path

from captioncast.allocator import describe, find_jemalloc, jemalloc_environment

LIB = Path("/usr/lib/x86_64-linux-gnu/libjemalloc.so.2")


def test_auto_preloads_jemalloc_in_front_of_what_was_preloaded_and_purges_in_background() -> None:
    env = jemalloc_environment({"LD_PRELOAD": "/opt/libfoo.so", "PATH": "/bin"}, "auto", LIB)
    assert env is not None
    assert env["LD_PRELOAD"] == f"{LIB} /opt/libfoo.so"
    assert env["MALLOC_CONF"] == "background_thread:true"
    assert env["PATH"] == "/bin"
    assert describe(env) == "jemalloc"


def test_a_users_malloc_conf_is_kept() -> None:
    env = jemalloc_environment({"MALLOC_CONF": "narenas:1"}, "auto", LIB)
    assert env is not None and env["MALLOC_CONF"] == "narenas:1"


def test_no_restart_when_not_wanted_not_found_already_preloaded_or_already_restarted() -> None:
    assert jemalloc_environment({}, "system", LIB) is None
    assert jemalloc_environment({}, "auto", None) is None
    assert jemalloc_environment({"LD_PRELOAD": "libtcmalloc.so.4"}, "auto", LIB) is None
    assert jemalloc_environment({"LD_PRELOAD": "libjemalloc.so.2"}, "auto", LIB) is None
    # a preload the loader refused must not make the process start itself forever
    restarted = jemalloc_environment({}, "auto", LIB)
    assert restarted is not None
    assert jemalloc_environment({**restarted, "LD_PRELOAD": ""}, "auto", LIB) is None
    assert describe({}) == "glibc"


def test_the_library_is_found_only_where_it_is(tmp_path: Path) -> None:
    assert find_jemalloc([str(tmp_path)]) is None
    (tmp_path / "libjemalloc.so.2").write_bytes(b"")
    assert find_jemalloc(["/nonexistent", str(tmp_path)]) == tmp_path / "libjemalloc.so.2"
