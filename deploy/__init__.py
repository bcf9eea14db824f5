"""Deployment: the local broker (real Apache Kafka, KRaft) and, later, images,
compose, Kubernetes manifests and the systemd unit."""
