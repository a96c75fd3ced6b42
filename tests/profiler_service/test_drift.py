"""Results scaled to the device's nominal speed by the drift reference timed with them."""

import pytest

from profiler_service.clock import drift
from profiler_service.db.engine import Database
from profiler_service.db.models import Device, Network
from shared.schemas import OpStats


def _stats(median: float, ref: float | None) -> OpStats:
    return OpStats(median_ms=median, mean_ms=median, std_ms=0.1 * median, p10_ms=0.9 * median,
                   p90_ms=1.1 * median, count=30, ref_ms=ref)


def test_the_first_observation_fixes_the_nominal_per_backend_and_threads(db: Database, device_id: int):
    with db.session() as s:
        assert drift.nominal_ms(s, device_id, "onnxruntime", 1, 2.0) == 2.0
        assert drift.nominal_ms(s, device_id, "onnxruntime", 1, 3.0) == 2.0  # fixed from then on
        assert drift.nominal_ms(s, device_id, "onnxruntime", 4, 0.7) == 0.7  # another configuration
        assert drift.nominal_ms(s, device_id, "torch", 1, 5.0) == 5.0
    with db.session() as s:  # stored, not per session
        assert drift.nominal_ms(s, device_id, "onnxruntime", 1, 9.0) == 2.0


def test_a_result_timed_while_the_machine_ran_slow_is_scaled_back(db: Database, device_id: int):
    with db.session() as s:
        first = drift.normalise(s, _stats(10.0, 2.0), device_id=device_id, backend="onnxruntime", threads=1)
        slow = drift.normalise(s, _stats(13.0, 2.6), device_id=device_id, backend="onnxruntime", threads=1)
    assert first.median_ms == pytest.approx(10.0)
    # the reference ran 30% slower too: the same op at the nominal speed
    for f in drift.SCALED:
        assert getattr(slow, f) == pytest.approx(getattr(first, f))
    assert slow.ref_ms == 2.6 and slow.count == 30  # the raw reference is kept: the raw figure is recoverable


def test_without_a_reference_nothing_changes(db: Database, device_id: int):
    st = _stats(10.0, None)
    with db.session() as s:
        assert drift.normalise(s, st, device_id=device_id, backend="onnxruntime", threads=1) == st


def test_a_different_reference_workload_gets_its_own_nominal(db: Database, device_id: int):
    with db.session() as s:
        assert drift.nominal_ms(s, device_id, "onnxruntime", 1, 2.0) == 2.0
        assert drift.nominal_ms(s, device_id, "onnxruntime", 1, 7.0, reference="another@224") == 7.0


KEY = "expanded_conv-input:8x8x16-output:8x8x16-expand:3-kernel:3-stride:1-idskip:1"


def _table_with_entry(s, device_id: int, median: float, ref: float, key: str = KEY,
                      reference: str = drift.REFERENCE):
    from profiler_service.services import networks, tables

    table = tables.get_or_create_table(s, s.get(Device, device_id), "onnxruntime", 1, 1)
    stored = drift.normalise(s, _stats(median, ref), device_id=device_id, backend="onnxruntime", threads=1,
                         reference=reference)
    tables.upsert_measurements(s, table, {key: stored}, reference=reference)
    net = Network(table_id=table.id, arch={"keys": [key]}, status="done")
    s.add(net)
    networks.store_measured(s, net, stored, reference)
    return table, net


def test_a_burst_replaces_a_first_observation_and_rescales_what_is_stored(db: Database, device_id: int):
    from profiler_service.services import tables

    with db.session() as s:
        table, net = _table_with_entry(s, device_id, 10.0, 2.5)  # the first observation: a slow stretch
        assert drift.current(s, device_id, "onnxruntime", 1).source == drift.FIRST
        etag, table_id, net_id = table.etag, table.id, net.id
    with db.session() as s:
        row = drift.record_quiet(s, device_id, "onnxruntime", 1, 2.0)  # the reference alone, quiet: 2.0 ms
        assert (row.nominal_ms, row.version, row.source) == (2.0, 2, drift.BURST)
    with db.session() as s:
        entry = tables.entries(s, table_id)[KEY]
        # measured 10 ms while the reference took 2.5: at the quiet speed it is 10 * 2.0 / 2.5
        assert entry.median_ms == pytest.approx(8.0) and entry.p90_ms == pytest.approx(8.8)
        assert entry.nominal_ms == 2.0 and entry.ref_ms == 2.5
        assert s.get(Network, net_id).median_ms == pytest.approx(8.0)
        assert s.get(Network, net_id).nominal_ms == 2.0
        assert tables.get_table(s, table_id).etag != etag  # clients refetch the rescaled table


def test_only_a_clearly_quieter_burst_makes_a_new_version(db: Database, device_id: int):
    with db.session() as s:
        assert drift.record_quiet(s, device_id, "onnxruntime", 1, 2.0).version == 1
        assert drift.record_quiet(s, device_id, "onnxruntime", 1, 2.6).nominal_ms == 2.0  # busier: shared, not slower
        assert drift.record_quiet(s, device_id, "onnxruntime", 1, 2.6, others_cores=0.9).nominal_ms == 2.0  # shared
        assert drift.record_quiet(s, device_id, "onnxruntime", 1, 1.99).version == 1  # within the noise
        row = drift.record_quiet(s, device_id, "onnxruntime", 1, 1.8)
        assert (row.nominal_ms, row.version) == (1.8, 2)
        # a later result is scaled to the current nominal
        assert drift.normalise(s, _stats(9.0, 2.7), device_id=device_id, backend="onnxruntime",
                           threads=1).median_ms == pytest.approx(6.0)


def test_a_slower_burst_no_one_shared_moves_the_nominal_and_every_figure_with_it(db: Database, device_id: int):
    """The device itself runs slower (a VM's host gave it less): the figures follow, so served milliseconds
    stay what the device gives now."""
    from profiler_service.services import tables

    with db.session() as s:
        drift.record_quiet(s, device_id, "onnxruntime", 1, 2.0)
        table, net = _table_with_entry(s, device_id, 10.0, 2.0)
        table_id, net_id = table.id, net.id
    with db.session() as s:
        assert drift.record_quiet(s, device_id, "onnxruntime", 1, 2.03, others_cores=0.0).version == 1  # the noise
        row = drift.record_quiet(s, device_id, "onnxruntime", 1, 2.2, others_cores=0.05)
        assert (row.nominal_ms, row.version) == (2.2, 2)
    with db.session() as s:
        assert tables.entries(s, table_id)[KEY].median_ms == pytest.approx(11.0)
        assert s.get(Network, net_id).median_ms == pytest.approx(11.0)
        assert drift.record_quiet(s, device_id, "onnxruntime", 1, 2.0, others_cores=None).version == 3  # faster again


CIFAR_REF = "proxyless-cifar@32/3x3_SepConv/warm3"
CIFAR_KEY = "SepConv-input:32x32x32-output:32x32x32-kernel:3-stride:1"


def test_a_quieter_nominal_rescales_only_the_figures_timed_against_its_reference(db: Database, device_id: int):
    """A job of one space is timed against that space's reference (measure/reference.py): a new nominal of
    the 160 px reference must not move figures scaled to the 32 px one, nor imported ones."""
    from profiler_service.services import tables

    with db.session() as s:
        drift.record_quiet(s, device_id, "onnxruntime", 1, 2.0)
        drift.record_quiet(s, device_id, "onnxruntime", 1, 0.3, reference=CIFAR_REF)
        table, mobile_net = _table_with_entry(s, device_id, 10.0, 2.0)
        _, cifar_net = _table_with_entry(s, device_id, 0.6, 0.3, key=CIFAR_KEY, reference=CIFAR_REF)
        tables.upsert_measurements(s, table, {"imported": _stats(5.0, 4.0).model_copy(update={"nominal_ms": 4.0})})
        table_id, ids = table.id, (mobile_net.id, cifar_net.id)
    with db.session() as s:
        assert drift.record_quiet(s, device_id, "onnxruntime", 1, 1.6).version == 2  # 160 px: 20% quieter
    with db.session() as s:
        entries = tables.entries(s, table_id)
        assert entries[KEY].median_ms == pytest.approx(8.0) and entries[KEY].nominal_ms == 1.6
        assert entries[CIFAR_KEY].median_ms == pytest.approx(0.6) and entries[CIFAR_KEY].nominal_ms == 0.3
        assert entries["imported"].median_ms == 5.0 and entries["imported"].nominal_ms == 4.0
        mobile, cifar = (s.get(Network, i) for i in ids)
        assert (mobile.median_ms, mobile.reference) == (pytest.approx(8.0), drift.REFERENCE)
        assert (cifar.median_ms, cifar.reference) == (pytest.approx(0.6), CIFAR_REF)


OP_REF = "proxyless-mobile@160/3x3_MBConv3.layer10/warm3"
OP_KEYS = [KEY.replace("8x8x16-output:8x8x16", f"8x8x{c}-output:8x8x{c}") for c in (16, 24, 32, 40)]


def test_a_calibration_keeps_its_predictions_when_either_of_its_clocks_moves(db: Database, device_id: int):
    """Ops are timed against the op-sized reference, networks against the whole network: a new nominal of
    one scales one side of the fitted calibration only, and the fit follows so that it still predicts the
    networks as the device gives them now."""
    from profiler_service.services import calibration, networks, tables

    with db.session() as s:
        drift.record_quiet(s, device_id, "onnxruntime", 1, 2.0)
        drift.record_quiet(s, device_id, "onnxruntime", 1, 0.1, reference=OP_REF)
        table = tables.get_or_create_table(s, s.get(Device, device_id), "onnxruntime", 1, 1)
        tables.upsert_measurements(s, table, {k: drift.normalise(s, _stats(1.0 + i, 0.1), device_id=device_id,
                                                        backend="onnxruntime", threads=1, reference=OP_REF)
                                         for i, k in enumerate(OP_KEYS)}, reference=OP_REF)
        ids = []
        for i in range(4):
            keys = OP_KEYS[: i + 1]
            net = Network(table_id=table.id, arch={"keys": keys}, status="done")
            s.add(net)
            s.flush()
            # each network takes 1.5x its ops' sum plus 0.4 ms, timed at the nominal speed
            measured = _stats(0.4 + 1.5 * sum(1.0 + j for j in range(i + 1)), 2.0)
            networks.store_measured(s, net, measured, drift.REFERENCE)
            ids.append(net.id)
        cal = calibration.fit_table_calibration(s, table, ids)
        assert cal["clock"] == {"entries": [OP_REF], "networks": [drift.REFERENCE]}
        table_id = table.id

    def predictions(s) -> list[float]:
        table = tables.get_table(s, table_id)
        entries = {k: v.median_ms for k, v in tables.entries(s, table_id).items()}
        return [calibration.calibrated_ms(table, s.get(Network, i).arch["keys"], entries) for i in ids]

    def measured(s) -> list[float]:
        return [s.get(Network, i).median_ms for i in ids]

    with db.session() as s:
        before = predictions(s)
        assert before == pytest.approx(measured(s), rel=0.02)
    with db.session() as s:
        assert drift.record_quiet(s, device_id, "onnxruntime", 1, 0.08, reference=OP_REF).version == 2
    with db.session() as s:  # the table's entries are 20% smaller; the networks and the predictions are not
        assert tables.entries(s, table_id)[OP_KEYS[0]].median_ms == pytest.approx(0.8)
        assert predictions(s) == pytest.approx(before)
    with db.session() as s:
        assert drift.record_quiet(s, device_id, "onnxruntime", 1, 1.5).version == 2
    with db.session() as s:  # the networks' clock moved by 0.75: so do they and what the model predicts
        assert measured(s) == pytest.approx([0.75 * b for b in before], rel=0.02)
        assert predictions(s) == pytest.approx([0.75 * b for b in before])
