"""eBPF programs for the collector: specs (bpf/*.yaml), the bcc loader, map
decoders and snapshots for hm.ebpf.v1. bcc is imported only when loading."""
