"""The face recognizer: an embedding network the KPU runs whole, its losses, training and evaluation."""
