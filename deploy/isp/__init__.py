"""K210 serial ISP flashing: SLIP/packet codec, ROM and flash-stage protocol, images, kfpkg, and a simulated board."""
