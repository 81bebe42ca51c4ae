"""Who feeds whom in a functional Keras model, by layer name."""

from __future__ import annotations

from dataclasses import dataclass

OUTPUT = "<model output>"  # the consumer name of a layer whose tensor is a model output


@dataclass
class LayerGraph:
    inputs: dict[str, list[str]]  # layer -> the layers whose outputs it reads
    consumers: dict[str, list[str]]  # layer -> the layers (or OUTPUT) reading its output

    def sole_consumer(self, name: str) -> str | None:
        users = self.consumers.get(name, [])
        return users[0] if len(users) == 1 and users[0] != OUTPUT else None


def layer_graph(model) -> LayerGraph:
    """The connections of a functional model whose layers are each called once."""
    inputs: dict[str, list[str]] = {}
    consumers: dict[str, list[str]] = {layer.name: [] for layer in model.layers}
    for layer in model.layers:
        names = [t._keras_history.operation.name for node in layer._inbound_nodes for t in node.input_tensors]
        inputs[layer.name] = names
        for name in names:
            consumers[name].append(layer.name)
    for tensor in model.outputs:
        consumers[tensor._keras_history.operation.name].append(OUTPUT)
    return LayerGraph(inputs=inputs, consumers=consumers)
