"""Scripts run by `make demo`: ``python -m test_script.test_demo``."""
