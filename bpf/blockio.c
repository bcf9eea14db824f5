/* blockio: per-disk I/O latency histogram (issue -> complete) and bytes read
 * and written, counted at completion (the bytes actually completed).
 *
 * The disk is the request's dev_t in the kernel's internal encoding
 * (major << 20 | minor), decoded via /sys/dev/block/MAJ:MIN.
 */

struct rq_key {
    u32 dev;
    u32 pad;
    u64 sector;
};

struct disk_slot {
    u32 dev;
    u32 slot;
};

BPF_HASH(issued_ns, struct rq_key, u64, HM_MAX_ISSUED_NS);
BPF_HASH(latency_us, struct disk_slot, u64, HM_MAX_LATENCY_US);
BPF_HASH(read_bytes, u32, u64, HM_MAX_READ_BYTES);
BPF_HASH(write_bytes, u32, u64, HM_MAX_WRITE_BYTES);

static __always_inline void on_issue(u32 dev, u64 sector)
{
    struct rq_key key = {.dev = dev, .sector = sector};
    u64 now = bpf_ktime_get_ns();
    if (issued_ns.update(&key, &now) != 0)
        hm_overflowed(HM_OVF_ISSUED_NS);
}

/* op: 0 read, 1 write, other: neither (flush, discard, ...) */
static __always_inline void on_complete(u32 dev, u64 sector, u64 bytes, int op)
{
    struct rq_key key = {.dev = dev, .sector = sector};
    u64 *since = issued_ns.lookup(&key);
    if (since) {
        struct disk_slot hist = {.dev = dev, .slot = hm_log2((bpf_ktime_get_ns() - *since) / 1000)};
        { u64 zero = 0, *v = latency_us.lookup_or_try_init(&hist, &zero);
          if (v) __sync_fetch_and_add(v, 1); else hm_overflowed(HM_OVF_LATENCY_US); }
        issued_ns.delete(&key);
    }
    if (op == 0)
        { u64 zero = 0, *v = read_bytes.lookup_or_try_init(&dev, &zero);
          if (v) __sync_fetch_and_add(v, bytes); else hm_overflowed(HM_OVF_READ_BYTES); }
    else if (op == 1)
        { u64 zero = 0, *v = write_bytes.lookup_or_try_init(&dev, &zero);
          if (v) __sync_fetch_and_add(v, bytes); else hm_overflowed(HM_OVF_WRITE_BYTES); }
}

#if defined(HM_ATTACH_RAW_TRACEPOINT)
/* block_rq_issue: TP_PROTO(struct request *rq)
 * block_rq_complete: TP_PROTO(struct request *rq, blk_status_t error, unsigned int nr_bytes)
 * The disk is rq->q->disk (major, first_minor); the op is cmd_flags & REQ_OP_MASK
 * (REQ_OP_READ 0, REQ_OP_WRITE 1; include/linux/blk_types.h). */
static __always_inline u32 rq_dev(void *rq)
{
    void *q = 0, *disk = 0;
    int major = 0, minor = 0;
    HM_READ(q, rq, HM_OFF_RQ_Q);
    HM_READ(disk, q, HM_OFF_QUEUE_DISK);
    if (!disk)
        return 0;
    HM_READ(major, disk, HM_OFF_DISK_MAJOR);
    HM_READ(minor, disk, HM_OFF_DISK_FIRST_MINOR);
    return ((u32)major << 20) | (u32)minor;
}

RAW_TRACEPOINT_PROBE(block_rq_issue)
{
    void *rq = (void *)ctx->args[0];
    u64 sector = 0;
    HM_READ(sector, rq, HM_OFF_RQ_SECTOR);
    on_issue(rq_dev(rq), sector);
    return 0;
}

RAW_TRACEPOINT_PROBE(block_rq_complete)
{
    void *rq = (void *)ctx->args[0];
    u64 sector = 0;
    u32 flags = 0;
    HM_READ(sector, rq, HM_OFF_RQ_SECTOR);
    HM_READ(flags, rq, HM_OFF_RQ_CMD_FLAGS);
    on_complete(rq_dev(rq), sector, (u32)ctx->args[2], flags & 0xff);
    return 0;
}

#elif defined(HM_ATTACH_TRACEPOINT)
/* rwbs: an optional leading 'F' (flush), then 'R', 'W', 'D' (discard), ... */
static __always_inline int rwbs_op(const char *rwbs)
{
    char c = rwbs[0] == 'F' ? rwbs[1] : rwbs[0];
    return c == 'R' ? 0 : c == 'W' ? 1 : -1;
}

TRACEPOINT_PROBE(block, block_rq_issue)
{
    on_issue(args->dev, args->sector);
    return 0;
}

TRACEPOINT_PROBE(block, block_rq_complete)
{
    on_complete(args->dev, args->sector, (u64)args->nr_sector << 9, rwbs_op(args->rwbs));
    return 0;
}
#endif
