"""The ``edgeq`` commands, one module per group; ``registry_tools.cli`` adds them to the root group."""
