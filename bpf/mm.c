/* mm: user page faults per cgroup, and OOM kills per victim cgroup.
 *
 * fentry: handle_mm_fault with FAULT_FLAG_USER (1 << 6, include/linux/mm_types.h,
 * stable since 3.13) counts faults the mm layer handled for user space on any
 * architecture; a retried fault (FAULT_FLAG_TRIED) is counted again.
 * Tracepoints: exceptions:page_fault_user (x86 only) counts every user-mode
 * fault exception.
 * OOM kills: with fentry on mark_oom_victim, the victim's cgroup is read from
 * task->cgroups->dfl_cgrp->kn->id (offsets from BTF). The oom:mark_victim
 * tracepoint only has the victim's pid (its raw form changed arguments in 6.x),
 * so the other variants charge the cgroup of the task that ran the OOM killer
 * (the victim's own cgroup for a memcg OOM).
 */

BPF_HASH(page_faults, u64, u64, HM_MAX_PAGE_FAULTS);
BPF_HASH(oom_kills, u64, u64, HM_MAX_OOM_KILLS);

static __always_inline void count_fault(void)
{
    u64 cgroup = bpf_get_current_cgroup_id();
    { u64 zero = 0, *v = page_faults.lookup_or_try_init(&cgroup, &zero);
          if (v) __sync_fetch_and_add(v, 1); else hm_overflowed(HM_OVF_PAGE_FAULTS); }
}

static __always_inline void count_oom(u64 cgroup)
{
    { u64 zero = 0, *v = oom_kills.lookup_or_try_init(&cgroup, &zero);
          if (v) __sync_fetch_and_add(v, 1); else hm_overflowed(HM_OVF_OOM_KILLS); }
}

#if defined(HM_ATTACH_FENTRY)
static __always_inline u64 task_cgroup_id(void *task)
{
    void *css_set = 0, *cgroup = 0, *kn = 0;
    u64 id = 0;
    HM_READ(css_set, task, HM_OFF_TASK_CGROUPS);
    if (!css_set)
        return 0;
    HM_READ(cgroup, css_set, HM_OFF_CSS_SET_DFL_CGRP);
    if (!cgroup)
        return 0;
    HM_READ(kn, cgroup, HM_OFF_CGROUP_KN);
    if (!kn)
        return 0;
    HM_READ(id, kn, HM_OFF_KERNFS_NODE_ID);
    return id;
}
#endif

#if defined(HM_ATTACH_FENTRY)
struct vm_area_struct;
struct pt_regs;
struct task_struct;

KFUNC_PROBE(handle_mm_fault, struct vm_area_struct *vma, unsigned long address,
            unsigned int flags, struct pt_regs *regs)
{
    if (flags & (1 << 6))  /* FAULT_FLAG_USER */
        count_fault();
    return 0;
}

KFUNC_PROBE(mark_oom_victim, struct task_struct *tsk)
{
    count_oom(task_cgroup_id((void *)tsk));
    return 0;
}

#elif defined(HM_ATTACH_RAW_TRACEPOINT)
/* page_fault_user: TP_PROTO(unsigned long address, struct pt_regs *regs, unsigned long error_code) */
RAW_TRACEPOINT_PROBE(page_fault_user)
{
    count_fault();
    return 0;
}
#elif defined(HM_ATTACH_TRACEPOINT)
TRACEPOINT_PROBE(exceptions, page_fault_user)
{
    count_fault();
    return 0;
}
#endif

#if !defined(HM_ATTACH_FENTRY)

TRACEPOINT_PROBE(oom, mark_victim)
{
    count_oom(bpf_get_current_cgroup_id());
    return 0;
}
#endif
