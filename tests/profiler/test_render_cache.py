"""The table-body cache renders a body once, however many requests miss it together."""

import threading

from profiler_service.api.cache import RenderCache


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


def test_a_new_etag_renders_again_and_old_entries_are_evicted():
    cache = RenderCache(max_entries=2)
    for etag in ("a", "b", "c"):
        assert cache.get_or_render(("t", etag), lambda e=etag: e.encode()) == etag.encode()
    assert cache.renders == 3 and cache.get_or_render(("t", "c"), lambda: b"x") == b"c"
    assert cache.get_or_render(("t", "a"), lambda: b"again") == b"again"  # evicted, rendered anew


def test_a_failed_render_leaves_no_stale_flight():
    cache = RenderCache()

    def boom() -> bytes:
        raise RuntimeError("db down")

    for _ in range(2):
        try:
            cache.get_or_render("k", boom)
        except RuntimeError:
            pass
    assert cache.get_or_render("k", lambda: b"ok") == b"ok" and cache._rendering == {}
