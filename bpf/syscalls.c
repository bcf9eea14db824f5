/* syscalls: system calls entered, per syscall number.
 *
 * A per-CPU array indexed by number: no locking on the hot path (this probe
 * runs on every syscall of the host) and no entries to run out of; numbers
 * beyond HM_MAX_SYSCALLS are counted as overflow.
 */

BPF_PERCPU_ARRAY(syscalls, u64, HM_MAX_SYSCALLS);

static __always_inline void count(long nr)
{
    if (nr < 0 || nr >= HM_MAX_SYSCALLS) {
        hm_overflowed(HM_OVF_SYSCALLS);
        return;
    }
    u32 key = nr;
    u64 *n = syscalls.lookup(&key);
    if (n)
        (*n)++;
}

#if defined(HM_ATTACH_RAW_TRACEPOINT)
/* sys_enter: TP_PROTO(struct pt_regs *regs, long id) */
RAW_TRACEPOINT_PROBE(sys_enter)
{
    count((long)ctx->args[1]);
    return 0;
}

#elif defined(HM_ATTACH_TRACEPOINT)
TRACEPOINT_PROBE(raw_syscalls, sys_enter)
{
    count(args->id);
    return 0;
}
#endif
