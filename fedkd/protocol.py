"""Record names and round-config keys inside fedkd's messages, shared by the ClientApp
and the strategies.

Server → client: ``run`` (the run config), ``round`` (server-round, the round's
schedule and what to reply), and, depending on the strategy, ``teacher`` (the
teacher signal: ids + logits, by public id or by class), ``query`` (public ids to
compute knowledge on) and ``model`` (global weights, weight-sharing strategies only).
Client → server: ``metrics`` (scalars) and, as the round asks, ``knowledge``
(ids + logits) or ``model`` (the student's weights).

A resumed run first sends every node a query message (``round`` with
``resume-round``) and learns from the replies which node holds which partition;
clients that keep their state on disk (``fedkd.results.checkpoint``) restore it then.
"""

RUN = "run"
ROUND = "round"
TEACHER = "teacher"
QUERY = "query"
MODEL = "model"
KNOWLEDGE = "knowledge"
METRICS = "metrics"
COHORT = "cohort"  # a message to a node serving several clients: which of them it addresses
STUDENT = "student"  # the student's weights in context.state (never sent)
OWN_CLASS_LOGITS = "own-class-logits"  # a FedDistill client's last upload, in context.state
OWN_ROUND = "own-class-logits-round"  # ... and the round it was sent in
UNIT_WEIGHT = "unit-weight"  # 1 in every weights reply: DP-FedAvg averages uniformly
DP_SGD = "dp-sgd"  # a DP-SGD client's noise multiplier and accountant history, in context.state

# What a client replies with (the round record's "reply" value).
PUBLIC_LOGITS = "public-logits"  # logits on the query ids
CLASS_LOGITS = "class-logits"  # mean logits per class of the private shard (no public data)
WEIGHTS = "weights"  # the student's weights
NOTHING = "none"  # metrics only
