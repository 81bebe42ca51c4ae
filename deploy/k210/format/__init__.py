"""kmodel V3 file format: layer bodies, KPU register blocks, reader and writer."""
