"""A client that fails sends an error reply: the round goes on and counts it."""

from flwr.app import Error

from fedkd.pool_grid import PoolGrid
from fedkd.results import read_server_metrics
from fedkd.server.app import run_server
from tests.conftest import tiny_config


class OneClientFails(PoolGrid):
    """Partition 0's node answers every round-1 message with an error, as Flower does
    for a ClientApp that raised."""

    def send_and_receive(self, messages, *, timeout=None):
        messages = list(messages)
        failing = [m for m in messages if m.metadata.dst_node_id == min(self.contexts)
                   and m.content["round"]["server-round"] == 1]
        replies = super().send_and_receive([m for m in messages if m not in failing], timeout=timeout)
        return replies + [type(m)(Error(code=0, reason="ClientApp raised ValueError"), reply_to=m) for m in failing]


def test_an_error_reply_is_counted_and_the_run_goes_on(tmp_path):
    config = tiny_config().replace(fraction=1.0)
    run_server(OneClientFails(config.clients, workers=0), config, tmp_path)
    server = read_server_metrics(tmp_path)
    assert list(server.index) == [0, 1, 2]
    assert server.loc[1, "failed"] == 1 and server.loc[1, "replied"] == 4
    assert server.loc[2, "failed"] == 0 and server.loc[2, "replied"] == 5
    assert server.loc[1, "bytes_up"] > 0 and server["acc_mean"].iloc[-1] > 0.3
