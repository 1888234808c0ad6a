"""Running runbooks: papermill, kernels, triage, bundles, signatures."""
