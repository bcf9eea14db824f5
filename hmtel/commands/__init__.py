"""One module per `hmtel` subcommand area, registered in hmtel.cli.COMMANDS."""
