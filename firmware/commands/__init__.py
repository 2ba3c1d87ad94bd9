"""One module per ``bwc`` command: each has ``add_parser(subparsers)`` and ``run(args) -> int``."""
