"""The ``brainfm`` command line: one entry point, lazily imported subcommands."""
