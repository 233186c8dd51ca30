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

from flwr.app import Message, RecordDict

Subtree = dict[bytes, int]  # object id (SHA-256 digest) -> deflated size, for an object and all below it


def _tree(obj, known: dict) -> Subtree:
    if id(obj) in known:  # a record shared by the messages of one exchange: deflated once
        return known[id(obj)][1]
    same = ("records", tuple((name, id(record)) for name, record in obj.items())) \
        if isinstance(obj, RecordDict) else None
    if same in known:  # another message's record dict of the same records: the same bytes
        return known[same][1]
    content = obj.deflate()  # an object's id is the SHA-256 of these bytes (``object_id`` deflates again)
    sizes = {hashlib.sha256(content).digest(): len(content)}
    for child in (obj.children or {}).values():
        sizes.update(_tree(child, known))
    known[id(obj)] = (obj, sizes)  # the object is kept, so its id is not reused while ``known`` lives
    if same is not None:
        known[same] = (obj, sizes)  # (and with it the records its key names)
    return sizes


def message_bytes(message: Message, known: dict[int, tuple[object, Subtree]] | None = None) -> int:
    """Serialized size of the records ``message`` carries. ``known`` (one dict for the
    messages of one exchange, none of them changed meanwhile) keeps each record's subtree,
    so a record several messages share is deflated once, and so is the record dict of
    messages that carry the same records under the same names (a record dict deflates
    to its names and its records' ids)."""
    return sum(_tree(message.content, {} if known is None else known).values())
