"""Candidates and merges: sweep specs, candidate planning (content-hash ids), mergekit merges, search spaces,
model cards and export."""
