"""Job kinds, plugged in: one module per kind (``profile``, ``network``, ``calibration``), each a
``JobKind`` of typed params and a ``run(ctx, job)``; ``registry`` maps the stored kind name to it, and the
worker (``profiler_service/worker.py``) claims a job and dispatches through it. A kind reaches the worker only
through its ``JobContext``."""
