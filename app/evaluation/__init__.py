"""Evaluation: running a router over labelled calls, scoring, statistics, the answer cache, reports."""
