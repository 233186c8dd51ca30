"""Bytes on the wire, measured from the serialized records of each message.

Flower ships a message as a tree of inflatable objects (message, record dict,
records, arrays, chunks), each pushed as its deflated bytes. ``message_bytes`` sums
the deflated size of the content's tree: the record dict and everything below it.
The message envelope (random node ids, message ids, timestamps; about a hundred
bytes) is left out, so the same seed gives the same byte counts.
"""

from __future__ import annotations

from flwr.app import Message
from flwr.supercore.inflatable.inflatable_object import get_all_nested_objects


def message_bytes(message: Message) -> int:
    """Serialized size of the records ``message`` carries."""
    return sum(len(obj.deflate()) for obj in get_all_nested_objects(message.content).values())
