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

Subtree = dict[bytes, int]  # object id (SHA-256 digest) -> deflated size, for an object and all below it


def _tree(obj, known: dict[int, tuple[object, Subtree]]) -> Subtree:
    if id(obj) in known:  # a record shared by the messages of one exchange: deflated once
        return known[id(obj)][1]
    content = obj.deflate()  # an object's id is the SHA-256 of these bytes (``object_id`` deflates again)
    sizes = {hashlib.sha256(content).digest(): len(content)}
    for child in (obj.children or {}).values():
        sizes.update(_tree(child, known))
    known[id(obj)] = (obj, sizes)  # the object is kept, so its id is not reused while ``known`` lives
    return sizes


def message_bytes(message: Message, known: dict[int, tuple[object, Subtree]] | None = None) -> int:
    """Serialized size of the records ``message`` carries. ``known`` (one dict for the
    messages of one exchange, none of them changed meanwhile) keeps each record's subtree,
    so a record several messages share is deflated once."""
    return sum(_tree(message.content, {} if known is None else known).values())
