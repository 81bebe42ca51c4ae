"""Facts about the target hardware, defined once for models/, deploy/ and (through generated headers) the C side."""
