"""Bytes on the wire, measured from the serialized records of each message.

Flower ships a message as a tree of inflatable objects (message, record dict,
records, arrays, chunks), each pushed once as its deflated bytes, identified by its
object id. ``message_bytes`` sums the deflated size of every distinct object in the
content's tree: the record dict and everything below it. The message envelope
(random node ids, message ids, timestamps; about a hundred bytes) is left out, so
the same seed gives the same byte counts.
"""

from __future__ import annotations

import hashlib

from flwr.app import Message


def _tree(obj, seen: dict[bytes, int]) -> None:
    content = obj.deflate()  # an object's id is the SHA-256 of these bytes (``object_id`` deflates again)
    seen.setdefault(hashlib.sha256(content).digest(), len(content))
    for child in (obj.children or {}).values():
        _tree(child, seen)


def message_bytes(message: Message) -> int:
    """Serialized size of the records ``message`` carries."""
    sizes: dict[bytes, int] = {}
    _tree(message.content, sizes)
    return sum(sizes.values())
