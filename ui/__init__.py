"""Shared Streamlit helpers for the pages: session-wide resources, error boxes, charts, live progress.

Only this package and the page files import streamlit; the `inspector` library never does.
"""
