"""The `interfere` command line: one module per sub-command (see `main.COMMANDS`), Hydra composition in `config`."""
