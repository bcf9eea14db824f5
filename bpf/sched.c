/* sched: on-CPU nanoseconds per cgroup and the run-queue latency histogram.
 *
 * On-CPU time is the gap between consecutive context switches on a CPU,
 * charged to the task switched out (the current task at sched_switch, so its
 * cgroup comes from bpf_get_current_cgroup_id). The idle task (pid 0) is not
 * charged: that is idle time. No per-task start map is needed, so this part
 * cannot overflow.
 *
 * Run-queue latency: a task is stamped when it becomes runnable (wakeup,
 * wakeup_new, or preempted while still runnable) and measured when it is
 * switched in, as bcc's runqlat does. The stamps live in an array indexed by
 * pid modulo its size (a power of two), not a hash: these probes run on every
 * wakeup and switch, and a hash update + delete cost ~500 ns per event on this
 * CI's VM against ~60 ns for an array slot. Two runnable tasks whose pids share
 * a slot lose one wait; that is counted as enqueued_ns overflow.
 */

struct enqueued {
    u32 pid;
    u32 pad;
    u64 ns;
};

BPF_PERCPU_ARRAY(last_switch_ns, u64, 1);
BPF_HASH(oncpu_ns, u64, u64, HM_MAX_ONCPU_NS);
BPF_ARRAY(enqueued_ns, struct enqueued, HM_MAX_ENQUEUED_NS);
BPF_ARRAY(runq_latency_us, u64, 64);

static __always_inline void stamp_runnable(u32 pid, u64 now)
{
    if (pid == 0)
        return;
    u32 slot = pid & (HM_MAX_ENQUEUED_NS - 1);
    struct enqueued *e = enqueued_ns.lookup(&slot);
    if (!e)
        return;
    if (e->ns && e->pid != pid)
        hm_overflowed(HM_OVF_ENQUEUED_NS);
    e->pid = pid;
    e->ns = now;
}

static __always_inline void on_switch(u32 prev_pid, bool prev_runnable, u32 next_pid)
{
    u64 now = bpf_ktime_get_ns();
    u32 zero = 0;
    u64 *last = last_switch_ns.lookup(&zero);
    if (last) {
        if (*last && prev_pid != 0) {
            u64 cgroup = bpf_get_current_cgroup_id();
            { u64 zero = 0, *v = oncpu_ns.lookup_or_try_init(&cgroup, &zero);
              if (v) __sync_fetch_and_add(v, now - *last); else hm_overflowed(HM_OVF_ONCPU_NS); }
        }
        *last = now;
    }
    if (prev_runnable)  /* preempted or yielded: back on the run queue */
        stamp_runnable(prev_pid, now);
    u32 slot = next_pid & (HM_MAX_ENQUEUED_NS - 1);
    struct enqueued *e = enqueued_ns.lookup(&slot);
    if (e && e->ns && e->pid == next_pid) {
        runq_latency_us.increment(hm_log2((now - e->ns) / 1000));
        e->ns = 0;
    }
}

#if defined(HM_ATTACH_RAW_TRACEPOINT)
/* TP_PROTO(bool preempt, struct task_struct *prev, struct task_struct *next, ...) */
RAW_TRACEPOINT_PROBE(sched_switch)
{
    bool preempt = ctx->args[0];
    void *prev = (void *)ctx->args[1], *next = (void *)ctx->args[2];
    u32 prev_pid = bpf_get_current_pid_tgid();  /* prev is current here: no struct read needed */
    u32 next_pid = 0;
    unsigned int prev_state = 0;
    HM_READ(next_pid, next, HM_OFF_TASK_PID);
    HM_READ(prev_state, prev, HM_OFF_TASK_STATE);
    on_switch(prev_pid, preempt || prev_state == 0 /* TASK_RUNNING */, next_pid);
    return 0;
}

RAW_TRACEPOINT_PROBE(sched_wakeup)
{
    u32 pid = 0;
    HM_READ(pid, (void *)ctx->args[0], HM_OFF_TASK_PID);
    stamp_runnable(pid, bpf_ktime_get_ns());
    return 0;
}

RAW_TRACEPOINT_PROBE(sched_wakeup_new)
{
    u32 pid = 0;
    HM_READ(pid, (void *)ctx->args[0], HM_OFF_TASK_PID);
    stamp_runnable(pid, bpf_ktime_get_ns());
    return 0;
}

#elif defined(HM_ATTACH_TRACEPOINT)
TRACEPOINT_PROBE(sched, sched_switch)
{
    /* The tracepoint reports a preempted task as TASK_REPORT_MAX (0x100 since
     * 4.14, kernel/sched/core.c __trace_sched_switch_state), a runnable one as 0. */
    long state = args->prev_state;
    on_switch(args->prev_pid, state == 0 || state >= 0x100, args->next_pid);
    return 0;
}

TRACEPOINT_PROBE(sched, sched_wakeup)
{
    stamp_runnable(args->pid, bpf_ktime_get_ns());
    return 0;
}

TRACEPOINT_PROBE(sched, sched_wakeup_new)
{
    stamp_runnable(args->pid, bpf_ktime_get_ns());
    return 0;
}
#endif
