"""The REST API (DRF): jobs, dead letters, workers, job types, stats, metrics, health."""
