/* lossy_link: a TC classifier (clsact egress, cls_bpf direct-action) that drops a settable
 * percentage of IP packets. The slow-broker chaos scenario puts it on both ends of its veth
 * pair when the kernel has no sch_netem, for real kernel-level packet loss; TCP sees the
 * drops and retransmits, as it would with `netem loss`.
 *
 * loss_pct[0]: the percentage to drop, 0..100; 0 = off. The test writes it while the
 *              program stays attached, so "slow" turns on and off without detaching.
 * counts (per CPU, summed by the reader):
 *   [0] IP packets seen, [1] IP packets seen while loss_pct > 0, [2] packets dropped.
 *
 * Only IPv4/IPv6 is dropped: ARP is left alone, so a dropped neighbour probe cannot stall
 * the link for a second and the drop figure counts TCP/IP packets only.
 */
#include <uapi/linux/if_ether.h>
#include <uapi/linux/pkt_cls.h>

BPF_ARRAY(loss_pct, u32, 1);
BPF_PERCPU_ARRAY(counts, u64, 3);

static __always_inline void bump(u32 slot)
{
    u64 *v = counts.lookup(&slot);
    if (v)
        *v += 1;
}

int lossy_link(struct __sk_buff *skb)
{
    if (skb->protocol != bpf_htons(ETH_P_IP) && skb->protocol != bpf_htons(ETH_P_IPV6))
        return TC_ACT_OK;
    bump(0);
    u32 zero = 0;
    u32 *pct = loss_pct.lookup(&zero);
    u32 p = pct ? *pct : 0;
    if (p == 0)
        return TC_ACT_OK;
    bump(1);
    if (bpf_get_prandom_u32() % 100 < p) {
        bump(2);
        return TC_ACT_SHOT;
    }
    return TC_ACT_OK;
}
