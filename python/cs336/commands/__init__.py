"""Subcommands of the ``cs336`` command line (see ``cs336.cli``)."""
