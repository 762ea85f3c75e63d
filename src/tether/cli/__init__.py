"""The command line: thin over :class:`tether.Project`; heavy imports happen inside commands."""
