"""Reporting: reads finished runs (never trains) and writes figures and report.md."""
