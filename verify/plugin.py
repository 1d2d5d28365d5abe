"""pytest plugin of the verification suite (placeholder while the suite is built)."""
