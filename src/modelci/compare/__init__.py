"""The paired comparison of the candidate against the baseline, and the gate."""
