/* net: packets and bytes per interface and direction.
 *
 * Keyed by (network namespace inode, ifindex): an ifindex is only unique
 * inside its namespace, and veth peers in containers reuse small numbers.
 * rx is counted at netif_receive_skb (skb->len there excludes the link-layer
 * header), tx at net_dev_xmit when the driver accepted the packet
 * (rc == NETDEV_TX_OK; skb->len includes the link-layer header).
 */

struct if_key {
    u32 netns;
    u32 ifindex;
};

BPF_HASH(rx_packets, struct if_key, u64, HM_MAX_RX_PACKETS);
BPF_HASH(rx_bytes, struct if_key, u64, HM_MAX_RX_BYTES);
BPF_HASH(tx_packets, struct if_key, u64, HM_MAX_TX_PACKETS);
BPF_HASH(tx_bytes, struct if_key, u64, HM_MAX_TX_BYTES);

static __always_inline struct if_key skb_if(void *skb)
{
    struct if_key key = {};
    void *dev = 0, *net = 0;
    HM_READ(dev, skb, HM_OFF_SKB_DEV);
    if (!dev)
        return key;
    HM_READ(key.ifindex, dev, HM_OFF_DEV_IFINDEX);
    HM_READ(net, dev, HM_OFF_DEV_ND_NET);
    if (net)
        HM_READ(key.netns, net, HM_OFF_NET_NS_INUM);
    return key;
}

static __always_inline void count(void *skb, u32 len, int tx)
{
    struct if_key key = skb_if(skb);
    if (tx) {
        { u64 zero = 0, *v = tx_packets.lookup_or_try_init(&key, &zero);
          if (v) __sync_fetch_and_add(v, 1); else hm_overflowed(HM_OVF_TX_PACKETS); }
        { u64 zero = 0, *v = tx_bytes.lookup_or_try_init(&key, &zero);
          if (v) __sync_fetch_and_add(v, len); else hm_overflowed(HM_OVF_TX_BYTES); }
    } else {
        { u64 zero = 0, *v = rx_packets.lookup_or_try_init(&key, &zero);
          if (v) __sync_fetch_and_add(v, 1); else hm_overflowed(HM_OVF_RX_PACKETS); }
        { u64 zero = 0, *v = rx_bytes.lookup_or_try_init(&key, &zero);
          if (v) __sync_fetch_and_add(v, len); else hm_overflowed(HM_OVF_RX_BYTES); }
    }
}

#if defined(HM_ATTACH_RAW_TRACEPOINT)
/* netif_receive_skb: TP_PROTO(struct sk_buff *skb)
 * net_dev_xmit: TP_PROTO(struct sk_buff *skb, int rc, struct net_device *dev, unsigned int skb_len) */
RAW_TRACEPOINT_PROBE(netif_receive_skb)
{
    void *skb = (void *)ctx->args[0];
    u32 len = 0;
    HM_READ(len, skb, HM_OFF_SKB_LEN);
    count(skb, len, 0);
    return 0;
}

RAW_TRACEPOINT_PROBE(net_dev_xmit)
{
    if ((int)ctx->args[1] != 0)
        return 0;
    count((void *)ctx->args[0], (u32)ctx->args[3], 1);
    return 0;
}

#elif defined(HM_ATTACH_TRACEPOINT)
TRACEPOINT_PROBE(net, netif_receive_skb)
{
    count(args->skbaddr, args->len, 0);
    return 0;
}

TRACEPOINT_PROBE(net, net_dev_xmit)
{
    if (args->rc != 0)
        return 0;
    count(args->skbaddr, args->len, 1);
    return 0;
}
#endif
