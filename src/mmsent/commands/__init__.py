"""The `mmsent` subcommands, one module per area; `mmsent.cli` assembles them."""
