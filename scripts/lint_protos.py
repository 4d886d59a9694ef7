"""``buf lint`` of the protos against ``protos/buf.yaml`` (STANDARD and the exceptions written there).

buf (the ``buf-bin`` package) lints a descriptor set built by protoc with the include paths of
``gen_protos.py`` (googleapis' and protobuf's own protos from the installed packages), so nothing is fetched
from the Buf registry and the check runs offline. Exits non-zero with buf's findings when a rule fails.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from gen_protos import PROTO_ROOT, _protoc  # noqa: E402


def main() -> int:
    sources = sorted(str(p.relative_to(PROTO_ROOT)) for p in (PROTO_ROOT / "octavia_mesh").rglob("*.proto"))
    buf = Path(sys.executable).with_name("buf")
    with tempfile.TemporaryDirectory() as tmp:
        image = Path(tmp) / "protos.binpb"
        _protoc(["--include_imports", "--include_source_info", f"--descriptor_set_out={image}", *sources])
        done = subprocess.run(
            [str(buf), "lint", f"{image}#format=binpb", "--path", "octavia_mesh", "--config", "buf.yaml"],
            cwd=PROTO_ROOT,
        )
    if done.returncode == 0:
        print(f"buf lint: {len(sources)} files clean")
    return done.returncode


if __name__ == "__main__":
    sys.exit(main())
