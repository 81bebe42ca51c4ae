"""How training is spread over devices: the one home of `train.distribute` (none | mirrored | multi_worker).

none: TensorFlow's default strategy, one device, exactly the training of before this key existed.
mirrored: tf.distribute.MirroredStrategy over this host's GPUs, or over the devices `train.devices` lists.
multi_worker: tf.distribute.MultiWorkerMirroredStrategy over the hosts the TF_CONFIG environment variable names.

`train.batch_size` stays the global batch: each of the N replicas takes batch_size / N images of it (a batch that
does not split evenly is refused). `train.lr_scaling` linear multiplies the learning rate by N (reference: one
replica), the linear scaling rule of Goyal et al. (2017) for when batch_size was raised N times to keep each device's
batch; none (the default) keeps it.

With more than one replica the training computes what one device computes on the global batch, up to the order of
float additions:
- every loss is this replica's share of the mean over the global batch (a sum over its images divided by the count
  over all replicas); Keras sums the replicas' gradients, so the sum is the gradient of the global mean;
- BatchNormalization uses the statistics of the global batch (synchronized), not of each replica's slice;
- gradient clipping (clipnorm) applies to the summed gradient: Keras 3 clips each replica's share before the sum;
- under multi_worker a stop (early stopping, the time limit) is agreed by all workers, so none waits for the others.
Model files are written without the training-time BatchNormalization sync, as one device writes them."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import keras
import tensorflow as tf

from pipeline.config_schema import TrainSection
from pipeline.errors import PipelineError

KINDS = ("none", "mirrored", "multi_worker")  # pipeline/config.py lists the same names for its rule
LR_SCALINGS = ("none", "linear")
TF_CONFIG_EXAMPLE = ('JSON such as {"cluster": {"worker": ["host1:12345", "host2:12345"]}, '
                     '"task": {"type": "worker", "index": 0}}, the same cluster on every host, each its own index')
_STRATEGIES: dict[tuple, tf.distribute.Strategy] = {}  # one per process: MultiWorkerMirroredStrategy can start once


@dataclass(frozen=True)
class Distribution:
    """The strategy a training runs under, with what follows from it for the batch and the learning rate."""

    kind: str
    strategy: tf.distribute.Strategy
    replicas: int
    global_batch: int
    lr_factor: float
    devices: tuple[str, ...] = ()
    workers: int = 1  # processes (hosts) taking part: more than 1 only under multi_worker

    @property
    def per_replica_batch(self) -> int:
        return self.global_batch // self.replicas

    @property
    def distributed(self) -> bool:
        return self.replicas > 1

    def scope(self):
        """The strategy's scope: build the model, its optimizer and its metrics inside it."""
        return self.strategy.scope()

    def describe(self) -> str:
        """One line for the log: the replicas, the batch split and the learning-rate factor."""
        where = f" on {', '.join(self.devices)}" if self.devices else ""
        if self.workers > 1:
            where = f" on {self.workers} workers ({', '.join(self.devices)} here)"
        text = (f"train.distribute {self.kind}: {self.replicas} replica{'s' if self.distributed else ''}{where}; "
                f"global batch {self.global_batch} = {self.replicas} x {self.per_replica_batch}")
        return text + (f"; learning rate x {self.lr_factor:g} (train.lr_scaling linear)" if self.lr_factor != 1
                       else "")

    def optimizer(self, learning_rate: Any, weight_decay: float, clipnorm: float) -> keras.optimizers.Optimizer:
        """AdamW; with more than one replica, one that clips the gradient summed over the replicas."""
        kind = SummedClipAdamW if self.distributed else keras.optimizers.AdamW
        return kind(learning_rate, weight_decay=weight_decay, clipnorm=clipnorm)

    def prepare(self, model: keras.Model) -> keras.Model:
        """Synchronize the model's BatchNormalization statistics over the replicas (no change on one replica); under
        multi_worker, hand Keras its per-step logs as 1-vectors: Keras 3 (TensorFlow backend) averages them over
        the workers with strategy.reduce(MEAN, axis=0), which fails on the scalars a train step returns ("Invalid
        reduction dimension 0 for input with 0 dimensions", tensorflow/tensorflow#72388)."""
        if self.distributed:
            for layer in nested_batch_norms(model):
                layer.synchronized = True
        if self.workers > 1:
            keras_step = model.train_step

            def train_step(data):
                return tf.nest.map_structure(lambda v: tf.reshape(v, [1]) if v.shape.rank == 0 else v,
                                             keras_step(data))

            model.train_step = train_step
        return model

    def keep_epoch_order(self, model: keras.Model, probe: tf.data.Dataset) -> None:
        """Under a strategy, Keras' fit (3.x, TensorFlow backend) first draws a batch from the training dataset to
        build the model's state, and that starts the dataset's next reshuffle: its epoch 1 would see the order one
        device sees in epoch 2. Let it build from `probe`, a separate copy of the training dataset, instead, so every
        epoch sees the images, augmentations and batches one device sees. Nothing changes on one replica."""
        if not self.distributed:
            return
        keras_build = model._maybe_symbolic_build

        def build_from_probe(iterator=None, data_batch=None):
            if iterator is not None and data_batch is None:
                data_batch = next(iter(probe))
            return keras_build(data_batch=data_batch)

        model._maybe_symbolic_build = build_from_probe

    def callbacks(self) -> list[keras.callbacks.Callback]:
        """Callbacks a distributed fit needs last in its list: under multi_worker, one stop decision for all."""
        return [StopTogether(self.strategy)] if self.workers > 1 else []

    def metrics(self) -> dict[str, Any]:
        return {"distribute": self.kind, "replicas": self.replicas, "per_replica_batch": self.per_replica_batch,
                "learning_rate_factor": self.lr_factor}


def training_distribution(train: TrainSection, config_path: Any = None) -> Distribution:
    """The Distribution `train` asks for; PipelineError for a bad TF_CONFIG, unknown devices or a global batch the
    replicas cannot share. multi_worker must be chosen before TensorFlow runs anything in the process."""
    kind, devices, scaling = train.distribute, train.devices, train.lr_scaling
    if kind not in KINDS:
        raise PipelineError(f"unknown value {kind!r}", path=config_path, field="train.distribute",
                            expected=f"one of: {', '.join(KINDS)}")
    if scaling not in LR_SCALINGS:
        raise PipelineError(f"unknown value {scaling!r}", path=config_path, field="train.lr_scaling",
                            expected=f"one of: {', '.join(LR_SCALINGS)}")
    if devices and kind != "mirrored":
        raise PipelineError(f"devices {list(devices)} with train.distribute {kind}", path=config_path,
                            field="train.devices", expected="an empty list unless train.distribute is mirrored")
    workers = 1
    if kind == "none":
        strategy = tf.distribute.get_strategy()
    elif kind == "mirrored":
        strategy = _mirrored(devices, config_path)
    else:
        cluster = tf_config_cluster(os.environ.get("TF_CONFIG"))
        strategy = _multi_worker()
        workers = cluster["workers"]
    replicas = int(strategy.num_replicas_in_sync)
    batch = train.batch_size
    if batch % replicas:
        raise PipelineError(f"a global batch of {batch} images does not split evenly over {replicas} replicas",
                            path=config_path, field="train.batch_size",
                            expected=f"a multiple of {replicas} (each replica takes batch_size / {replicas})")
    factor = float(replicas) if scaling == "linear" else 1.0
    used = tuple(getattr(strategy.extended, "worker_devices", ())) if kind != "none" else ()
    return Distribution(kind, strategy, replicas, batch, factor, used, workers)


def _mirrored(devices: tuple[str, ...], config_path: Any) -> tf.distribute.Strategy:
    if devices:
        known = {_device_key(d.name): d.name for d in tf.config.list_logical_devices()}
        missing = [d for d in devices if _device_key(d) not in known]
        if missing:
            raise PipelineError(f"no device {', '.join(missing)} on this host", path=config_path,
                                field="train.devices", expected=f"names among: {', '.join(known.values())}")
    key = ("mirrored", devices)
    if key not in _STRATEGIES:
        _STRATEGIES[key] = tf.distribute.MirroredStrategy(list(devices) or None)
    return _STRATEGIES[key]


def _device_key(name: str) -> str:
    """'/gpu:1', 'GPU:1', '/device:GPU:1' and '/job:localhost/replica:0/task:0/device:GPU:1' -> 'gpu:1'."""
    return name.lower().rsplit("device:", 1)[-1].strip("/")


def _multi_worker() -> tf.distribute.Strategy:
    key = ("multi_worker",)
    if key not in _STRATEGIES:
        try:
            _STRATEGIES[key] = tf.distribute.MultiWorkerMirroredStrategy()
        except (RuntimeError, ValueError) as exc:
            raise PipelineError(f"train.distribute multi_worker could not start: {exc}",
                                expected="`invoke train` run on its own in a fresh process on every worker, "
                                         "before TensorFlow has run anything") from None
    return _STRATEGIES[key]


def tf_config_cluster(text: str | None) -> dict[str, Any]:
    """The TF_CONFIG environment variable checked: {"workers": n, "task": (type, index), "chief": bool}; a
    PipelineError naming TF_CONFIG when it is missing or malformed."""
    def bad(message: str) -> PipelineError:
        return PipelineError(f"TF_CONFIG (environment variable) {message}, and train.distribute is multi_worker",
                             expected=TF_CONFIG_EXAMPLE)

    if text is None or not text.strip():
        raise bad("is not set")
    try:
        spec = json.loads(text)
    except json.JSONDecodeError as exc:
        raise bad(f"is not JSON ({exc.msg} at character {exc.pos})") from None
    if not isinstance(spec, dict):
        raise bad(f"is a JSON {type(spec).__name__}, not an object")
    cluster, task = spec.get("cluster"), spec.get("task")
    if not isinstance(cluster, dict) or not cluster:
        raise bad('has no "cluster" object')
    unknown = sorted(set(cluster) - {"chief", "worker"})
    if unknown:
        raise bad(f'names the job {unknown[0]!r} in "cluster" (MultiWorkerMirroredStrategy has chief and worker)')
    if not cluster.get("worker") and not cluster.get("chief"):
        raise bad('lists no "worker" addresses in "cluster"')
    for job, addresses in cluster.items():
        if not isinstance(addresses, list) or not addresses:
            raise bad(f'has cluster "{job}" that is not a non-empty list of "host:port" addresses')
        if job == "chief" and len(addresses) != 1:
            raise bad(f'has {len(addresses)} "chief" addresses (at most one)')
        for address in addresses:
            host, _, port = str(address).rpartition(":") if isinstance(address, str) else ("", "", "")
            if not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise bad(f'has cluster "{job}" address {address!r}, not "host:port" with a port 1-65535')
    if not isinstance(task, dict):
        raise bad('has no "task" object (this worker\'s type and index)')
    kind, index = task.get("type"), task.get("index")
    if kind not in cluster:
        raise bad(f'has task type {kind!r}, not a job of its cluster ({", ".join(sorted(cluster))})')
    if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < len(cluster[kind]):
        raise bad(f'has task index {index!r}, not 0 to {len(cluster[kind]) - 1} for its {len(cluster[kind])} '
                  f'"{kind}" address(es)')
    chief = kind == "chief" or ("chief" not in cluster and index == 0)
    return {"workers": sum(len(v) for v in cluster.values()), "task": (kind, index), "chief": chief}


def nested_batch_norms(model: keras.layers.Layer) -> list[keras.layers.BatchNormalization]:
    """Every BatchNormalization layer in the model, those of nested models included (prune_gamma.batch_norms: the
    top level only, in graph order)."""
    return [layer for layer in model._flatten_layers(include_self=True, recursive=True)
            if isinstance(layer, keras.layers.BatchNormalization)]


@contextlib.contextmanager
def unsynchronized(model: keras.layers.Layer) -> Iterator[None]:
    """BatchNormalization's `synchronized` off while a model file is written (a training-time detail), then back."""
    synced = [layer for layer in nested_batch_norms(model) if layer.synchronized]
    for layer in synced:
        layer.synchronized = False
    try:
        yield
    finally:
        for layer in synced:
            layer.synchronized = True


# --- losses: each replica's share of the mean over the global batch ---

def _replica_context() -> tf.distribute.ReplicaContext | None:
    context = tf.distribute.get_replica_context()
    return context if context is not None and context.num_replicas_in_sync > 1 else None


def replica_share_of_mean(total: tf.Tensor, count: tf.Tensor) -> tf.Tensor:
    """total / count, where on more than one replica count is summed over the replicas: this replica's share of the
    mean over the global batch (the shares add up to it). One replica: exactly total / max(count, 1)."""
    context = _replica_context()
    if context is not None:
        count = context.all_reduce(tf.distribute.ReduceOp.SUM, count)
    return total / tf.maximum(count, 1.0)


def replica_share(value: tf.Tensor) -> tf.Tensor:
    """A term every replica computes in full (a weight penalty): 1/N of it each, so the replicas' sum is it once."""
    context = _replica_context()
    return value / context.num_replicas_in_sync if context is not None else value


def sum_over_replicas(value: tf.Tensor) -> tf.Tensor:
    """The shares of the replicas added up (the global value, for the logs); one replica: the value itself."""
    context = _replica_context()
    return context.all_reduce(tf.distribute.ReduceOp.SUM, value) if context is not None else value


@keras.saving.register_keras_serializable(package="facetrain")
class GlobalBatchMean(keras.losses.Loss):
    """A per-sample Keras loss averaged over the global batch: each replica returns its images' sum divided by the
    image count of all replicas, so the replicas' gradients add up to the gradient of the global mean even when the
    last batch of an epoch splits unevenly (Keras' own reduction averages per replica, then divides by N)."""

    def __init__(self, inner: keras.losses.Loss, name: str | None = None, **kwargs: Any) -> None:
        super().__init__(name=name or f"{inner.name}_global_mean", reduction="sum", **kwargs)
        self.inner = inner

    def call(self, y_true, y_pred):
        per_sample = self.inner.call(y_true, y_pred)
        local = tf.cast(tf.shape(per_sample)[0], per_sample.dtype)
        context = _replica_context()
        # Keras logs N x this share weighted by the replica's image count: the global mean when the slices are equal
        # (the last, uneven batch of an epoch is logged slightly off; its gradient is exact)
        count = context.all_reduce(tf.distribute.ReduceOp.SUM, local) if context is not None else local
        return per_sample / tf.maximum(count, 1.0)

    def get_config(self) -> dict[str, Any]:
        return {"inner": keras.saving.serialize_keras_object(self.inner), "name": self.name}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> GlobalBatchMean:
        return cls(keras.saving.deserialize_keras_object(config["inner"]), name=config.get("name"))


@keras.saving.register_keras_serializable(package="facetrain")
class SummedClipAdamW(keras.optimizers.AdamW):
    """AdamW whose clipnorm applies to the gradient summed over the replicas. Keras 3 (TensorFlow backend) clips
    before its all-reduce, so each replica's share would be clipped on its own: up to N times the norm in the sum,
    and not the step one device takes. Here the all-reduce comes first, then the clip, then the update."""

    def _clip_gradients(self, grads):
        return grads  # postponed to _backend_update_step, after the gradients are summed

    def _backend_update_step(self, grads, trainable_variables, learning_rate):
        variables = [v.value if isinstance(v, keras.Variable) else v for v in trainable_variables]
        summed = self._all_reduce_sum_gradients(list(zip(grads, variables, strict=True)))
        clipped = super()._clip_gradients([grad for grad, _ in summed])
        tf.__internal__.distribute.interim.maybe_merge_call(
            self._distributed_tf_update_step, self._distribution_strategy,
            list(zip(clipped, [var for _, var in summed], strict=True)), learning_rate)


class StopTogether(keras.callbacks.Callback):
    """Last in the callback list under multi_worker: a worker stops when any worker's callbacks stopped it (early
    stopping, the time limit), so no worker waits for the others in a collective that never comes."""

    def __init__(self, strategy: tf.distribute.Strategy) -> None:
        super().__init__()
        self.strategy = strategy

        @tf.function
        def votes_to_stop(flag: tf.Tensor) -> tf.Tensor:
            votes = strategy.run(lambda f: tf.identity(f), args=(flag,))
            return strategy.reduce(tf.distribute.ReduceOp.SUM, votes, axis=None)

        self.votes_to_stop = votes_to_stop

    def on_epoch_end(self, epoch: int, logs=None) -> None:
        flag = tf.constant(1.0 if self.model.stop_training else 0.0)
        self.model.stop_training = bool(self.votes_to_stop(flag) > 0)
