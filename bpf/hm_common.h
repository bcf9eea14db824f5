/* Prepended by collector/ebpf/loader.py to every program (bcc dialect).
 *
 * Parameters arrive as -D cflags (see `hmtel ebpf --dump-bpf NAME`):
 *   HM_ATTACH_<VARIANT>   the attach variant being tried (one per load attempt)
 *   HM_MAX_<MAP>          max_entries of each map, from the spec
 *   HM_OVF_<MAP>          that map's slot in hm_overflow
 *   HM_OFF_<NAME>         struct member offsets from the running kernel's BTF:
 *                         the kernel headers bcc compiles against may belong to
 *                         another kernel, so no kernel struct is dereferenced
 *                         through a header layout.
 */

/* Updates that failed because a map was full, one slot per map: never silent. */
BPF_ARRAY(hm_overflow, u64, HM_OVERFLOW_SLOTS);

#define HM_READ(dst, base, off) \
    bpf_probe_read_kernel(&(dst), sizeof(dst), (void *)(base) + (off))

static __always_inline void hm_overflowed(u32 slot)
{
    hm_overflow.increment(slot);
}

/* bcc rewrites map.method() calls only outside macros, so each program spells
 * out its updates as:
 *   u64 zero = 0, *v = map.lookup_or_try_init(&key, &zero);
 *   if (v) __sync_fetch_and_add(v, delta); else hm_overflowed(HM_OVF_MAP);
 * (lookup_or_try_init fails only when the map is full.) */

/* log2 bucket k holds [2^k, 2^(k+1)); 0 and 1 both land in bucket 0. */
static __always_inline u32 hm_log2(u64 v)
{
    u32 k = v ? bpf_log2l(v) - 1 : 0;  /* bcc's bpf_log2l(v) is floor(log2 v) + 1 */
    return k > 63 ? 63 : k;
}
