"""Run folders, dataset resolution and the end-of-run report."""
