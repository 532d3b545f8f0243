"""Tasks: what a run learns (classification, anomaly detection). Filled in by the task registry."""
