"""Errors raised on bad user input: each names the file (or table) and the field at fault."""

from __future__ import annotations


class RelkdError(Exception):
    """Base class for every user-facing relkd error."""


class DataError(RelkdError):
    """A dataset, cache or input file is malformed; the message names the file and column."""


class ConfigError(RelkdError):
    """An experiment config is invalid; the message names the key and the file."""


class StaleArtifactError(DataError):
    """An artifact's manifest no longer matches its inputs; rebuild it explicitly."""
