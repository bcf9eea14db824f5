"""Hypothesis against the eBPF decoders (collector/ebpf/decoders.py): the numeric ones hold
their arithmetic laws for every input; the text ones take any text and either answer or
raise their documented ValueError, never anything else.

The procfs/sysfs text parsers of collector/sources and collector/inventory are fuzzed
beside their owners' tests (tests/unit/usage/test_fuzz.py, tests/unit/inventory/test_parsers.py).
"""
from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from collector.ebpf import decoders as d

u64 = st.integers(0, 2**64 - 1)
texts = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=400)


def _line_of(fields: list[str]) -> str:
    return " ".join(fields)


@given(prev=st.none() | u64, cur=u64)
def test_counter_delta_is_never_negative_and_sums_back(prev, cur):
    delta = d.counter_delta(prev, cur)
    assert 0 <= delta <= cur
    if prev is not None and cur >= prev:
        assert prev + delta == cur


@given(slots=st.dictionaries(st.integers(0, 63), st.integers(0, 2**40)))
def test_log2_buckets_keep_every_nonzero_count(slots):
    out = d.log2_buckets(slots)
    assert sum(out.values()) == sum(slots.values())
    assert all(n > 0 for n in out.values())
    for k in out:
        lo, hi = d.bucket_bounds(int(k))
        assert lo < hi and hi == 2 * max(lo, 1)


@given(buckets=st.dictionaries(st.integers(0, 63).map(str), st.integers(0, 2**32)), q=st.floats(0, 1))
def test_histogram_quantile_is_a_bucket_bound_and_monotone(buckets, q):
    got = d.histogram_quantile(buckets, q)
    if sum(buckets.values()) == 0:
        assert got is None
        return
    assert got in {d.bucket_bounds(int(k))[1] for k in buckets}
    assert d.histogram_quantile(buckets, min(1.0, q + 0.1)) >= got


@given(a=st.floats(0, 1e18), b=st.floats(0, 1e18))
def test_agreement_is_symmetric_and_in_unit_range(a, b):
    x = d.agreement(a, b)
    assert 0.0 <= x <= 1.0 and x == d.agreement(b, a)


@given(dev=st.integers(0, 2**32 - 1))
def test_dev_majmin_round_trips(dev):
    major, minor = d.dev_to_majmin(dev)
    assert (major << d.MINORBITS) | minor == dev


@given(nr=st.integers(-10, 2000), machine=st.sampled_from(["x86_64", "aarch64", "riscv64", "weird"]))
def test_syscall_name_always_names(nr, machine):
    name = d.syscall_name(nr, machine)
    assert isinstance(name, str) and name


@settings(max_examples=300)
@given(head=texts, fields=st.lists(st.integers(0, 2**40).map(str) | st.text(max_size=5), max_size=12), tail=texts)
def test_proc_stat_busy_ns_answers_or_raises_value_error(head, fields, tail):
    text = f"{head}\ncpu {_line_of(fields)}\n{tail}" if fields else head
    try:
        busy = d.proc_stat_busy_ns(text)
    except ValueError:
        return
    assert isinstance(busy, int)


@given(values=st.lists(st.integers(0, 2**40), min_size=8, max_size=10), tck=st.sampled_from([100, 250, 1000]))
def test_proc_stat_busy_ns_sums_the_busy_fields(values, tck):
    text = "cpu " + " ".join(map(str, values)) + "\ncpu0 1 2 3\n"
    f = values
    assert d.proc_stat_busy_ns(text, tck) == (f[0] + f[1] + f[2] + f[5] + f[6] + f[7]) * 1_000_000_000 // tck


@settings(max_examples=300)
@given(text=texts)
def test_netns_inode_answers_or_none(text):
    try:
        got = d.netns_inode(text)
    except ValueError:
        # int() of a non-number between the brackets: the documented error of the caller's boundary
        assert text.startswith("net:[") and text.endswith("]")
        return
    assert got is None or isinstance(got, int)


@given(ino=st.integers(0, 2**64))
def test_netns_inode_reads_real_links(ino):
    assert d.netns_inode(f"net:[{ino}]") == ino


@settings(max_examples=300)
@given(lines=st.lists(texts, max_size=6), mount=st.from_regex(r"/[a-z/]{1,20}", fullmatch=True))
def test_cgroup2_mount_finds_the_cgroup2_line_among_garbage(lines, mount):
    real = f"35 24 0:30 / {mount} rw,nosuid - cgroup2 cgroup2 rw"
    clean = [ln for ln in lines if " - " not in ln]
    assert d.cgroup2_mount("\n".join([*clean, real])) == mount


@settings(max_examples=300)
@given(text=texts, left=st.lists(st.text(alphabet="ab/0:", max_size=4), max_size=7), fstype=st.sampled_from(["cgroup2", "ext4"]))
def test_cgroup2_mount_never_raises_on_garbage(text, left, fstype):
    for candidate in (text, f"{' '.join(left)} - {fstype} x rw", f"{text}\n{' '.join(left)} - {fstype}"):
        got = d.cgroup2_mount(candidate)
        assert got is None or isinstance(got, str)
