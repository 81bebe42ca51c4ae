"""TFLite -> kmodel V3 compiler: graph reader, rewrite passes, per-op lowering, memory plan, emitter."""
