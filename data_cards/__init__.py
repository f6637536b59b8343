"""Data cards of the built-in recipes (installed as package data)."""
