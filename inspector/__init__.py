"""Defect Inspector."""
