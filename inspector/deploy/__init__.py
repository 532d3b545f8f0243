"""Deploying to the line: a self-contained export with a parity check, and a REST service."""
