"""Bytes on the wire, measured from the serialized records of each message.

Flower ships a message as a tree of inflatable objects (message, record dict,
records, arrays, chunks), each pushed once as its deflated bytes, identified by its
object id. ``message_bytes`` sums the deflated size of every distinct object in the
content's tree: the record dict and everything below it. The message envelope
(random node ids, message ids, timestamps; about a hundred bytes) is left out, so
the same seed gives the same byte counts.
"""

from __future__ import annotations

from flwr.app import Message


def _tree(obj, seen: dict[str, bytes]) -> None:
    seen.setdefault(obj.object_id, obj.deflate())
    for child in (obj.children or {}).values():
        _tree(child, seen)


def message_bytes(message: Message) -> int:
    """Serialized size of the records ``message`` carries."""
    objects: dict[str, bytes] = {}
    _tree(message.content, objects)
    return sum(len(b) for b in objects.values())
