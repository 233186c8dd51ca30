"""Record names inside fedkd's messages, shared by the ClientApp and the strategies.

Server → client: ``run`` (the run config), ``round`` (server-round and the round's
schedule), ``teacher`` (the teacher signal: ids + logits; absent in round 0) and
``query`` (public ids to compute knowledge on).
Client → server: ``knowledge`` (ids + logits) and ``metrics`` (scalars).
"""

RUN = "run"
ROUND = "round"
TEACHER = "teacher"
QUERY = "query"
KNOWLEDGE = "knowledge"
METRICS = "metrics"
STUDENT = "student"  # the key of the student's weights in context.state (never sent)
