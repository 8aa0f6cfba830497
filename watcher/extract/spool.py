"""Scratch space for content that must be seekable (a zip read from a stream), never in clear
on disk.

A zip found inside a stream (a nested archive, a fetched body, stdin) must be read with
seeks. Holding a big one in memory would break the memory bound; writing it to a temporary
file would put a leak's identifiers on disk in clear (a leak-watcher must never become a leak
itself). So `spool()` keeps content in memory up to `in_memory` bytes, then moves it to a
`SealedFile`: an unlinked temporary file holding AES-256-CTR ciphertext under a random key
that lives only in this object. When the process ends, what is on disk cannot be read by
anyone. CTR mode lets any offset be read without the bytes before it, so zipfile seeks freely.
"""

from __future__ import annotations

import io
import os
import tempfile
from typing import IO, cast


BLOCK = 16


class _Scratch(io.RawIOBase):
    """Written once, then read with seeks."""

    def readable(self) -> bool:
        return True

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True


class SealedFile(_Scratch):
    """A seekable, readable file whose bytes on disk are encrypted; writes append."""

    def __init__(self) -> None:
        super().__init__()
        self._file = tempfile.TemporaryFile(buffering=0)  # noqa: SIM115 (closed by close(): no name on disk)
        self._key = os.urandom(32)
        self._nonce = os.urandom(8)
        self._size = 0
        self._position = 0

    def _crypt(self, data: bytes, offset: int) -> bytes:
        """Encrypt or decrypt `data` found at `offset` (CTR: the same operation)."""
        counter = self._nonce + (offset // BLOCK).to_bytes(8, "big")
        # Imported here: only a big zip read from a stream is sealed (5-8 ms `watcher scan` skips).
        from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

        crypt = Cipher(algorithms.AES(self._key), modes.CTR(counter)).encryptor()
        skip = offset % BLOCK
        return crypt.update(bytes(skip) + data)[skip:]

    def write(self, data: bytes) -> int:  # type: ignore[override]
        """Append `data` (whatever the position: the file is written once, then read)."""
        self._file.seek(self._size)
        self._file.write(self._crypt(bytes(data), self._size))
        self._size += len(data)
        return len(data)

    def readinto(self, buffer: bytearray) -> int:  # type: ignore[override]
        count = min(len(buffer), self._size - self._position)
        if count <= 0:
            return 0
        self._file.seek(self._position)
        sealed = self._file.read(count)
        buffer[:len(sealed)] = self._crypt(sealed, self._position)
        self._position += len(sealed)
        return len(sealed)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self._size}[whence]
        if base + offset < 0:
            raise ValueError("negative seek position")
        self._position = base + offset
        return self._position

    def tell(self) -> int:
        return self._position

    def close(self) -> None:
        if not self.closed:
            self._file.close()
            self._key = b""
        super().close()


def spool(in_memory: int) -> IO[bytes]:
    """A file to write content into and then read with seeks: in memory up to `in_memory`
    bytes, sealed on disk beyond (see the module docstring)."""
    return cast(IO[bytes], _Spool(in_memory))     # a RawIOBase: what IO[bytes] users call


class _Spool(_Scratch):
    """In memory, then a SealedFile once `in_memory` is exceeded (what SpooledTemporaryFile
    does, without the clear text on disk)."""

    def __init__(self, in_memory: int) -> None:
        super().__init__()
        self._limit = in_memory
        self._target: IO[bytes] = io.BytesIO()
        self._sealed = False

    def write(self, data: bytes) -> int:  # type: ignore[override]
        if not self._sealed and self._target.tell() + len(data) > self._limit:
            sealed = cast(IO[bytes], SealedFile())
            sealed.write(self._target.getvalue())  # type: ignore[attr-defined]
            self._target, self._sealed = sealed, True
        self._target.seek(0, io.SEEK_END)
        return self._target.write(data)

    def readinto(self, buffer: bytearray) -> int:  # type: ignore[override]
        data = self._target.read(len(buffer))
        buffer[:len(data)] = data
        return len(data)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return self._target.seek(offset, whence)

    def tell(self) -> int:
        return self._target.tell()

    @property
    def sealed(self) -> bool:
        """Whether the content went to disk (encrypted)."""
        return self._sealed

    def close(self) -> None:
        if not self.closed:
            self._target.close()
        super().close()
