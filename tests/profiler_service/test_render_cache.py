"""The table-body cache renders a body once, however many requests miss it together."""

import threading

from profiler_service.services.render_cache import RenderCache


def test_concurrent_misses_render_once_and_all_get_the_body():
    cache = RenderCache()
    started = threading.Event()
    release = threading.Event()
    calls = []

    def render() -> bytes:
        calls.append(1)
        started.set()
        release.wait(10)  # hold the render until every other caller is queued behind it
        return b"body"

    out: list[bytes] = []
    threads = [threading.Thread(target=lambda: out.append(cache.get_or_render(("t", "etag"), render)))
               for _ in range(8)]
    threads[0].start()
    started.wait(10)
    for t in threads[1:]:
        t.start()
    release.set()
    for t in threads:
        t.join(10)
    assert out == [b"body"] * 8 and len(calls) == 1 and cache.renders == 1


def test_least_recently_used_tables_are_evicted():
    cache = RenderCache(max_entries=2)
    for table in ("a", "b", "c"):
        assert cache.get_or_render((table, "v1"), lambda t=table: t.encode()) == table.encode()
    assert cache.renders == 3 and cache.get_or_render(("c", "v1"), lambda: b"x") == b"c"
    assert cache.get_or_render(("a", "v1"), lambda: b"again") == b"again"  # evicted, rendered anew


def test_a_new_version_renders_again_and_drops_that_tables_older_versions_only():
    cache = RenderCache()
    cache.get_or_render(("t", "v1"), lambda: b"old")
    cache.get_or_render(("t", "v1", "gzip"), lambda: b"old-gz")
    cache.get_or_render(("u", "v1"), lambda: b"other table")
    assert cache.get_or_render(("t", "v2"), lambda: b"new") == b"new"
    assert set(cache._items) == {("u", "v1"), ("t", "v2")}
    assert cache.get_or_render(("t", "v2", "gzip"), lambda: b"new-gz") == b"new-gz"  # variants coexist
    assert cache.get_or_render(("t", "v2"), lambda: b"x") == b"new"


def test_a_failed_render_leaves_no_stale_flight():
    cache = RenderCache()

    def boom() -> bytes:
        raise RuntimeError("db down")

    for _ in range(2):
        try:
            cache.get_or_render(("k", 1), boom)
        except RuntimeError:
            pass
    assert cache.get_or_render(("k", 1), lambda: b"ok") == b"ok" and cache._rendering == {}
