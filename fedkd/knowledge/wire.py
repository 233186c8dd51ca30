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
Known = dict[object, tuple[object, Subtree]]  # _key -> (the object, kept so its ids stay unused; its subtree)


def _key(obj) -> object:
    """What decides an object's bytes within one exchange (none of its objects changed
    meanwhile): a record its identity, a record dict its records' names and identities
    (it deflates to their names and ids)."""
    if isinstance(obj, RecordDict):
        return tuple((name, id(record)) for name, record in obj.items())
    return id(obj)


def _tree(obj, known: Known) -> Subtree:
    key = _key(obj)
    if key in known:  # shared by the messages of one exchange: deflated once
        return known[key][1]
    content = obj.deflate()  # an object's id is the SHA-256 of these bytes (``object_id`` deflates again)
    sizes = {hashlib.sha256(content).digest(): len(content)}
    for child in (obj.children or {}).values():
        sizes.update(_tree(child, known))
    known[key] = (obj, sizes)
    return sizes


def message_bytes(message: Message, known: Known | None = None) -> int:
    """Serialized size of the records ``message`` carries. ``known`` (one dict for the
    messages of one exchange, none of them changed meanwhile) keeps each record's subtree,
    so a record several messages share is deflated once, and so is the record dict of
    messages that carry the same records under the same names (a record dict deflates
    to its names and its records' ids)."""
    return sum(_tree(message.content, {} if known is None else known).values())
