"""TF Serving configuration files for an export folder, built with TF Serving's own protos.

export/models.config: a ``ModelServerConfig`` with one ``model_config_list`` entry per model folder
(``--model_config_file``); export/batching_parameters.txt: ``BatchingParameters``
(``--enable_batching --batching_parameters_file``). Both are protobuf text format.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, text_format, wrappers_pb2
from tensorflow_serving.config import model_server_config_pb2

from mdrec.errors import MdrecError
from mdrec.export.versions import is_complete, versions
from mdrec.fileio import atomic_write_text

MODELS_CONFIG = "models.config"
BATCHING_FILE = "batching_parameters.txt"
_LABEL = re.compile(r"^[A-Za-z][A-Za-z0-9_-]*$")


@dataclass(frozen=True)
class Batching:
    """Server-side batching: requests are merged into batches of up to ``max_batch_size`` rows,
    waiting at most ``batch_timeout_micros`` for a batch to fill."""

    max_batch_size: int = 256
    batch_timeout_micros: int = 1000
    max_enqueued_batches: int = 100
    num_batch_threads: int = 4


def parse_labels(items: list[str]) -> dict[str, dict[str, int]]:
    """``["MODEL=stable:3,canary:4", ...]`` -> {"MODEL": {"stable": 3, "canary": 4}}."""
    out: dict[str, dict[str, int]] = {}
    for item in items:
        model, sep, rest = item.partition("=")
        pairs = [p.strip() for p in rest.split(",") if p.strip()]
        if not sep or not model.strip() or not pairs:
            raise MdrecError(f"--labels '{item}' must look like MODEL=LABEL:VERSION[,LABEL:VERSION], "
                             "e.g. ctr=stable:3,canary:4")
        labels = out.setdefault(model.strip(), {})
        for pair in pairs:
            label, sep, version = pair.partition(":")
            if not sep or not _LABEL.match(label) or not version.strip().isdigit():
                raise MdrecError(f"--labels '{item}': '{pair}' must be LABEL:VERSION with a label of letters, "
                                 "digits, '_' or '-' and an integer version, e.g. stable:3")
            labels[label] = int(version)
    return out


def model_folders(export_dir: str | Path) -> dict[str, list[int]]:
    """Model name -> its complete versions, for every model folder under ``export_dir``."""
    export_dir = Path(export_dir)
    out = {}
    for folder in sorted(p for p in export_dir.iterdir() if p.is_dir() and not p.name.startswith(".")):
        complete = [v for v in versions(folder) if is_complete(folder / str(v))]
        if complete:
            out[folder.name] = complete
    return out


def models_config(export_dir: str | Path, labels: dict[str, dict[str, int]] | None = None
                  ) -> model_server_config_pb2.ModelServerConfig:
    """One entry per model folder; ``latest 1`` unless labels pin ``specific`` versions."""
    export_dir = Path(export_dir).resolve()
    models = model_folders(export_dir)
    labels = labels or {}
    unknown = sorted(set(labels) - set(models))
    if unknown:
        raise MdrecError(f"--labels names model(s) {', '.join(unknown)} with no exported version here",
                         path=str(export_dir), hint=f"models here: {', '.join(models) or 'none'}")
    config = model_server_config_pb2.ModelServerConfig()
    for name, present in models.items():
        entry = config.model_config_list.config.add()
        entry.name = name
        entry.base_path = str(export_dir / name)
        entry.model_platform = "tensorflow"
        pinned = labels.get(name)
        if not pinned:
            entry.model_version_policy.latest.num_versions = 1
            continue
        missing = sorted({v for v in pinned.values() if v not in present})
        if missing:
            raise MdrecError(f"model '{name}' has no version {', '.join(map(str, missing))}",
                             path=str(export_dir / name),
                             hint=f"its versions are {', '.join(map(str, present))}")
        # TF Serving assigns a label only to a version it serves: serve exactly the labelled ones.
        entry.model_version_policy.specific.versions.extend(sorted(set(pinned.values())))
        for label, version in pinned.items():
            entry.version_labels[label] = version
    return config


def batching_parameters_class():
    """TF Serving's ``tensorflow.serving.BatchingParameters`` message class.

    The tensorflow-serving-api wheel does not ship session_bundle_config_pb2, so unless it is
    importable the message is declared here exactly as in TF Serving's
    servables/tensorflow/session_bundle_config.proto (same package, names and field numbers),
    in a private descriptor pool so it cannot clash with the real module.
    """
    try:
        from tensorflow_serving.servables.tensorflow import session_bundle_config_pb2
        return session_bundle_config_pb2.BatchingParameters
    except ImportError:
        pass
    global _BATCHING_CLASS
    if _BATCHING_CLASS is None:
        pool = descriptor_pool.DescriptorPool()
        wrappers = descriptor_pb2.FileDescriptorProto()
        wrappers_pb2.DESCRIPTOR.CopyToProto(wrappers)
        pool.Add(wrappers)
        file = descriptor_pb2.FileDescriptorProto(
            name="tensorflow_serving/servables/tensorflow/session_bundle_config.proto",
            package="tensorflow.serving", syntax="proto3", dependency=["google/protobuf/wrappers.proto"])
        message = file.message_type.add(name="BatchingParameters")
        field = descriptor_pb2.FieldDescriptorProto
        for number, name, type_name in ((1, "max_batch_size", "Int64Value"),
                                        (2, "batch_timeout_micros", "Int64Value"),
                                        (3, "max_enqueued_batches", "Int64Value"),
                                        (4, "num_batch_threads", "Int64Value"),
                                        (5, "thread_pool_name", "StringValue")):
            message.field.add(name=name, number=number, label=field.LABEL_OPTIONAL, type=field.TYPE_MESSAGE,
                              type_name=f".google.protobuf.{type_name}")
        message.field.add(name="allowed_batch_sizes", number=6, label=field.LABEL_REPEATED,
                          type=field.TYPE_INT64)
        message.field.add(name="pad_variable_length_inputs", number=7, label=field.LABEL_OPTIONAL,
                          type=field.TYPE_BOOL)
        pool.Add(file)
        _BATCHING_CLASS = message_factory.GetMessageClass(
            pool.FindMessageTypeByName("tensorflow.serving.BatchingParameters"))
    return _BATCHING_CLASS


_BATCHING_CLASS = None


def batching_parameters(batching: Batching):
    params = batching_parameters_class()()
    params.max_batch_size.value = batching.max_batch_size
    params.batch_timeout_micros.value = batching.batch_timeout_micros
    params.max_enqueued_batches.value = batching.max_enqueued_batches
    params.num_batch_threads.value = batching.num_batch_threads
    return params


def write_serving_config(export_dir: str | Path, labels: dict[str, dict[str, int]] | None = None,
                         batching: Batching = Batching()) -> tuple[Path, Path]:
    """Write export_dir/models.config and export_dir/batching_parameters.txt (atomically)."""
    export_dir = Path(export_dir)
    if not export_dir.is_dir():
        raise MdrecError("export folder does not exist", path=str(export_dir),
                         hint="export a model first with `mdrec export --run RUN --name MODEL`")
    config = models_config(export_dir, labels)
    if not config.model_config_list.config:
        raise MdrecError("no model folder with an exported version here", path=str(export_dir),
                         hint="export a model first with `mdrec export --run RUN --name MODEL`")
    for name, value in vars(batching).items():
        if value < (0 if name == "batch_timeout_micros" else 1):
            raise MdrecError(f"batching parameter {name} must be positive, got {value}")
    models_path = atomic_write_text(export_dir / MODELS_CONFIG, text_format.MessageToString(config))
    batching_path = atomic_write_text(export_dir / BATCHING_FILE,
                                      text_format.MessageToString(batching_parameters(batching)))
    return models_path, batching_path


def read_models_config(path: str | Path) -> model_server_config_pb2.ModelServerConfig:
    """Parse a models.config back (errors name the file)."""
    try:
        return text_format.Parse(Path(path).read_text(), model_server_config_pb2.ModelServerConfig())
    except text_format.ParseError as exc:
        raise MdrecError(f"not a TF Serving model config: {exc}", path=str(path),
                         hint="fix it, or write it anew with `mdrec serving-config`") from None


def versions_in_use(export_dir: str | Path, model: str) -> set[int]:
    """Versions of ``model`` that export_dir/models.config pins (specific versions or labels)."""
    path = Path(export_dir) / MODELS_CONFIG
    if not path.is_file():
        return set()
    used: set[int] = set()
    for entry in read_models_config(path).model_config_list.config:
        if entry.name == model:
            used.update(entry.model_version_policy.specific.versions)
            used.update(entry.version_labels.values())
    return used
