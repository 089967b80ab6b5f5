"""The fault-injecting proxy: moved to bench.fault_proxy (bench.puller_memory uses it too), re-exported."""
from bench.fault_proxy import FaultProxy, Rule  # noqa: F401
