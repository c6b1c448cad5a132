"""What an operator sees and steers at run time: health probes, Prometheus metrics, JSON logs, SIGHUP."""
