"""The EC2 instance around a worker: the metadata service, spot and rebalance notices, why a run
stops early, the run log's upload, and bootstrap.sh, which systemd runs on every boot."""
