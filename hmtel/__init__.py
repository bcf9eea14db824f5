"""The `hmtel` command line: the top layer, which wires collector, processors,
consumers and the local broker together. Nothing below imports it."""
