"""Evaluation: probes of the physical state, and (in later issues) planning and physics suites."""
