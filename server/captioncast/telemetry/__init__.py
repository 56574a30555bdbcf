"""What the server measures: Prometheus metrics, latencies, capacity figures."""
