"""The embedded synthetic catalogue generator; entry point: ``synthetic_catalogue``."""
