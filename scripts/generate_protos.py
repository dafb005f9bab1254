"""Regenerate flight_secure/_generated/ from protos/ (flight.proto and FlightSql.proto).

Usage: ``python scripts/generate_protos.py [--check]``. With ``--check`` nothing is
written; the exit status is 1 when a committed module no longer describes its
current .proto (the descriptors differ). The check compares descriptors, not text,
so a newer protoc that only reformats the output does not count as drift.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PROTO_DIR = ROOT / "protos"
OUT_DIR = ROOT / "flight_secure" / "_generated"
#: Each .proto in protos/ and the module protoc generates from it.
PROTOS = {"flight.proto": "flight_pb2", "FlightSql.proto": "FlightSql_pb2"}
GENERATED = tuple(f"{module}{suffix}" for module in PROTOS.values() for suffix in (".py", ".pyi"))


def generate(out_dir: Path) -> None:
    """Run protoc (from grpcio-tools) on every .proto of :data:`PROTOS` into ``out_dir``."""
    for proto in PROTOS:
        _protoc([f"--python_out={out_dir}", f"--pyi_out={out_dir}", str(PROTO_DIR / proto)])


def _protoc(extra: list[str]) -> None:
    import grpc_tools
    from grpc_tools import protoc

    include = Path(grpc_tools.__file__).parent / "_proto"
    if protoc.main(["protoc", f"-I{PROTO_DIR}", f"-I{include}", *extra]) != 0:
        raise SystemExit(f"protoc failed on {extra[-1]}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare, do not write")
    args = parser.parse_args(argv)
    if not args.check:
        generate(OUT_DIR)
        print(f"wrote {', '.join(GENERATED)} to {OUT_DIR.relative_to(ROOT)}")
        return 0
    stale = [proto for proto, module in PROTOS.items()
             if committed_descriptor(module) != compiled_descriptor(proto)]
    if stale:
        print(f"flight_secure/_generated is stale for {', '.join(stale)}: "
              "run scripts/generate_protos.py")
        return 1
    print(f"flight_secure/_generated matches protos/ ({', '.join(PROTOS)})")
    return 0


def compiled_descriptor(proto: str) -> bytes:
    """The serialized FileDescriptorProto that protoc builds from protos/``proto`` today."""
    from google.protobuf import descriptor_pb2

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "proto.desc"
        _protoc([f"--descriptor_set_out={out}", str(PROTO_DIR / proto)])
        files = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes()).file
    return _normalized(files[0])


def committed_descriptor(module: str) -> bytes:
    """The serialized FileDescriptorProto embedded in the committed ``module``."""
    import importlib

    from google.protobuf import descriptor_pb2

    sys.path.insert(0, str(ROOT))
    try:
        generated = importlib.import_module(f"flight_secure._generated.{module}")
    finally:
        sys.path.pop(0)
    return _normalized(
        descriptor_pb2.FileDescriptorProto.FromString(generated.DESCRIPTOR.serialized_pb)
    )


def _normalized(proto: Any) -> bytes:
    """Serialize a FileDescriptorProto without the parts protoc omits from gencode."""
    proto.ClearField("source_code_info")
    for extension in proto.extension:
        extension.ClearField("json_name")
    pending = list(proto.message_type)
    while pending:
        message = pending.pop()
        pending.extend(message.nested_type)
        for field in message.field:
            field.ClearField("json_name")
    return proto.SerializeToString(deterministic=True)


if __name__ == "__main__":
    sys.exit(main())
