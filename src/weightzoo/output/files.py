"""Writing files so that readers never see half of one, and hashing them.

Every file weightzoo writes goes to a temporary name in the same folder first and is then renamed
over the target (atomic on POSIX); a failure removes the temporary file and is reported as a
`UserError` naming the path (a full disk, a read-only folder).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from weightzoo.errors import UserError


def write_atomic(path: Path, write: Callable[[Path], None]) -> None:
    """Call `write(tmp)` to fill a temporary file beside `path`, then rename it to `path`."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.close(fd)
    except OSError as e:
        raise UserError(f"cannot write {path}: {e.strerror or e}") from None
    tmp = Path(name)
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; the file should be as readable as any other
        write(tmp)
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise UserError(f"cannot write {path}: {e.strerror or e}") from None


def write_text_atomic(path: Path, text: str) -> None:
    write_atomic(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def write_json_atomic(path: Path, document: dict) -> None:
    write_text_atomic(path, json.dumps(document, indent=1) + "\n")


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
