"""The device's clock: how fast the device runs now, and the speed every served figure is scaled to.

A CPU shared with other processes, or a virtual machine's, does not keep one speed: the same network reads
faster or slower from one minute to the next. Every measurement therefore times a fixed workload beside it,
the drift reference, and is stored scaled to that reference's quiet speed, so figures measured at different
times compare. This package holds that clock; the measurement protocol that consults it is
``measure/protocol.py``.

Glossary (the words the code uses):

- **drift reference**: the fixed workload timed between a measurement's samples (``measure/reference.py``);
  its median during the measurement is the result's ``ref_ms``.
- **burst**: the reference timed alone for ``nominal_s`` seconds in blocks, interleaved with a stand-in op as
  in a measurement (``burst.py``); a worker takes one before its first job on a configuration and again
  every ``nominal_refresh_s``.
- **block**: ``BLOCK_RUNS`` consecutive runs of a burst; its median is a speed without one run's luck.
- **quiet speed**: the speed read from a burst's block medians: their median when no other process shared
  the machine, their lower quartile when one did (``burst.quiet_speed``).
- **shared / unshared**: whether other processes kept the machine busy during a stretch, from the kernel's
  CPU accounting (``tenants.py``). Only an unshared burst may move the nominal slower.
- **nominal** (``nominal_ms``): the stored quiet speed of a configuration (device, backend, threads,
  reference), versioned (``drift.py``). A result is stored as ``stats * nominal_ms / ref_ms``; a new version
  rescales every stored figure of the configuration, so all share one clock.
- **drift**: how far the device's speed during a measurement lay from the nominal; the scaling above
  removes it.
- **window**: for pooling, the last three refresh periods of bursts (``burst.RecentBursts``), so a swing of
  seconds moves nothing; for the history, the last hour over which the bursts' spread is read
  (``history.py``). A whole network is also timed in windows (``measure/tasks.py``).
- **slow-down / settle**: a measurement whose reference ran more than ``max_slowdown`` over the quiet speed
  was timed while another tenant held the machine; the protocol's ``Settler`` repeats it until one result is
  steady.
- **history**: every burst kept with the nominal it left (``history.py``, ``GET /v1/device/clocks``): how far
  the device's own quiet speed moved, the floor under two latencies read minutes apart.

The one interface a worker uses is ``device.DeviceClock``. The child process imports only ``burst`` and
``tenants`` (no database)."""
