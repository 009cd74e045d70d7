"""ollama-airgap benchmarks: each figure a ratio against a baseline (curl, tar, sha256sum, rsync) measured in the
same invocation on the test bed, medians over several runs. Run `benchmarks/run.sh` or `python -m benchmarks`."""
