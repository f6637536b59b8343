"""Frozen-backbone evaluation."""
