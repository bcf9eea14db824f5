"""Host totals stay monotonic when devices come and go (else: counter_regression in the processors)."""
from collector.sources.diskio import disk_section
from collector.sources.network import network_section
from collector.sources.procfs import MonotonicTotal


def test_departed_and_reset_devices_stay_counted():
    total = MonotonicTotal()
    assert total.update({"eth0": 100, "veth1": 50}) == 150
    assert total.update({"eth0": 120}) == 170  # veth1 went away: its 50 stay
    assert total.update({"eth0": 130, "veth1": 5}) == 185  # veth1 re-created from 0
    assert total.update({"eth0": 10, "veth1": 7}) == 147 + 50  # eth0 reset: its 130 stay
    assert total.update({"eth0": None, "veth1": 7}) == 190 + 7  # an unknown reading counts as gone


def _iface(rx, tx):
    keys = ("rx_packets", "tx_packets", "rx_errors", "tx_errors", "rx_dropped", "tx_dropped")
    return {"rx_bytes": rx, "tx_bytes": tx, **{k: 0 for k in keys}}


def test_network_totals_never_go_backwards_when_a_veth_disappears():
    totals = {"rx_bytes": MonotonicTotal(), "tx_bytes": MonotonicTotal()}
    first = {"lo": _iface(999, 999), "eth0": _iface(1000, 500), "veth0": _iface(300, 200)}
    second = {"lo": _iface(1999, 1999), "eth0": _iface(1100, 600)}
    a = network_section(None, first, None, totals)
    b = network_section(first, second, 1.0, totals)
    assert (a["rx_bytes"], a["tx_bytes"]) == (1300, 700)
    assert (b["rx_bytes"], b["tx_bytes"]) == (1400, 800)
    # Without the trackers the section is a plain sum, which would go backwards here.
    assert network_section(first, second, 1.0)["rx_bytes"] == 1100


def test_disk_totals_never_go_backwards_when_a_disk_is_removed():
    def row(r, w):
        return {"read_sectors": r, "write_sectors": w, "reads": 1, "writes": 1, "io_time_ms": 1}

    kinds = {"sda": "physical", "sdb": "physical"}
    totals = {"read_bytes": MonotonicTotal(), "write_bytes": MonotonicTotal()}
    first = {"sda": row(10, 20), "sdb": row(4, 4)}
    second = {"sda": row(11, 20)}
    assert disk_section(None, first, kinds, None, totals)["read_bytes"] == 14 * 512
    assert disk_section(first, second, kinds, 1.0, totals)["read_bytes"] == 15 * 512
