"""The core: configuration, the run's context, findings, the check registry and catalogue, thresholds."""
