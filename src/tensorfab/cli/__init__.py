"""Command-line entry points: one thin module per command (parse, call the layer, print)."""
