"""Contract-suite registrations of the Redis backends (standalone, cluster)."""
