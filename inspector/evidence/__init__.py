"""Decisions with evidence: data sufficiency, paired model comparison, backbone ranking."""
