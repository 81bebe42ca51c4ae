"""Bit-exact NumPy simulator of kmodel V3 files (KPU arithmetic, KPU RAM layout, CPU layers)."""
