"""Meta tests: the verification suite's own tools (verify/) tested like any other code."""
