"""The `bundle` command line: one module per subcommand."""
