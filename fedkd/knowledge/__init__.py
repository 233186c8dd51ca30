"""Knowledge: what crosses the wire (payloads on public ids or per class, their kinds and
losses, upload compression) and how many bytes it takes."""
