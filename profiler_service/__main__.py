"""``python -m profiler_service``.

Guarded: the engine's spawned children import this module as ``__mp_main__``.
"""

from profiler_service.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
