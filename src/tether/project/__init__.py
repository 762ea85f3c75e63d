"""The project: ``tether.toml``, the working tree and the version graph, as one public API."""
