"""Whole-audience work: resyncs and the backfill of a subscription or a segment."""
