"""Regenerate flight_secure/_generated/ from protos/flight.proto.

Usage: ``python scripts/generate_protos.py [--check]``. With ``--check`` nothing is
written; the exit status is 1 when the committed module no longer describes the
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
GENERATED = ("flight_pb2.py", "flight_pb2.pyi")


def generate(out_dir: Path) -> None:
    """Run protoc (from grpcio-tools) on protos/flight.proto into ``out_dir``."""
    _protoc([f"--python_out={out_dir}", f"--pyi_out={out_dir}", str(PROTO_DIR / "flight.proto")])


def _protoc(extra: list[str]) -> None:
    import grpc_tools
    from grpc_tools import protoc

    include = Path(grpc_tools.__file__).parent / "_proto"
    if protoc.main(["protoc", f"-I{PROTO_DIR}", f"-I{include}", *extra]) != 0:
        raise SystemExit("protoc failed on protos/flight.proto")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare, do not write")
    args = parser.parse_args(argv)
    if not args.check:
        generate(OUT_DIR)
        print(f"wrote {', '.join(GENERATED)} to {OUT_DIR.relative_to(ROOT)}")
        return 0
    if committed_descriptor() != compiled_descriptor():
        print("flight_secure/_generated is stale: run scripts/generate_protos.py")
        return 1
    print("flight_secure/_generated matches protos/flight.proto")
    return 0


def compiled_descriptor() -> bytes:
    """The serialized FileDescriptorProto that protoc builds from the .proto today."""
    from google.protobuf import descriptor_pb2

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "flight.desc"
        _protoc([f"--descriptor_set_out={out}", str(PROTO_DIR / "flight.proto")])
        files = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes()).file
    return _normalized(files[0])


def committed_descriptor() -> bytes:
    """The serialized FileDescriptorProto embedded in the committed flight_pb2.py."""
    from google.protobuf import descriptor_pb2

    sys.path.insert(0, str(ROOT))
    try:
        from flight_secure._generated import flight_pb2
    finally:
        sys.path.pop(0)
    return _normalized(
        descriptor_pb2.FileDescriptorProto.FromString(flight_pb2.DESCRIPTOR.serialized_pb)
    )


def _normalized(proto: Any) -> bytes:
    """Serialize a FileDescriptorProto without the parts protoc omits from gencode."""
    proto.ClearField("source_code_info")
    pending = list(proto.message_type)
    while pending:
        message = pending.pop()
        pending.extend(message.nested_type)
        for field in message.field:
            field.ClearField("json_name")
    return proto.SerializeToString(deterministic=True)


if __name__ == "__main__":
    sys.exit(main())
