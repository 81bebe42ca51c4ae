"""A simulated K210 board: ROM ISP + flash-stage protocol over RFC 2217 on 127.0.0.1, a 16 MiB flash image file,
line-rate timing and fault injection (spec §8)."""
