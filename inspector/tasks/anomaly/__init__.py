"""Anomaly detection from good parts only."""
