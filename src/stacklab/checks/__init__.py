"""Checks: scripts run over SSH on a lab's nodes, turned into a weighted score."""
