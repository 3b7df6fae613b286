"""`arcsub <command>`: the command registry (arcsub.cli.app) and one module per group of commands. No library
module imports this package."""

from arcsub.cli.app import Command, UsageError, main, register
from arcsub.core.config import add_config_arguments

__all__ = ["Command", "UsageError", "add_config_arguments", "main", "register"]
