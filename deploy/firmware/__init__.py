"""Firmware stage: render the RT-Thread glue from a compiled model, build it for a board, run it and read results."""
