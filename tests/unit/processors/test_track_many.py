"""BatchConsumer.track_many (a fetch's records of one partition tracked at once) leaves faust's
books as Consumer.track_message one record at a time does: the set of records taken and not
acked, the Monitor's counters, and every other sensor told of each record."""
from __future__ import annotations

from faust.sensors import Sensor
from faust.types import TP, ConsumerMessage

from processors.faust_transport import App, BatchMonitor

TP0 = TP("hm.usage.v1", 0)


class Recorder(Sensor):
    """A sensor without a batch hook: it hears of each record on its own."""

    def __init__(self) -> None:
        super().__init__()
        self.heard: list[tuple[TP, int]] = []

    def on_message_in(self, tp, offset, message) -> None:
        self.heard.append((tp, offset))


def consumer_with_sensors(name: str):
    app = App(name, broker="kafka://127.0.0.1:1", store="memory://", web_enabled=False)
    app.sensors.add(app.monitor)  # as a started app has it
    recorder = Recorder()
    app.sensors.add(recorder)
    return app.consumer, app.monitor, recorder


def messages(offsets):
    return [ConsumerMessage(TP0.topic, TP0.partition, o, 1.8e9, 0, [], b"h-1", b"v", None, tp=TP0) for o in offsets]


def books(consumer, monitor, recorder):
    return (sorted((m.tp, m.offset) for m in consumer._unacked_messages), monitor.messages_received_total,
            monitor.messages_active, dict(monitor.messages_received_by_topic), dict(monitor.tp_read_offsets),
            sorted(recorder.heard))


def test_track_many_keeps_the_books_as_one_by_one():
    one = consumer_with_sensors("hm-unit-track-one")
    many = consumer_with_sensors("hm-unit-track-many")
    assert isinstance(one[1], BatchMonitor) and isinstance(many[1], BatchMonitor)
    kept = []  # faust's set holds weak references: the records live while they are unacked
    for offsets in ([5, 6, 7], [8], []):
        singles, batch = messages(offsets), messages(offsets)
        kept += singles + batch
        for message in singles:
            one[0].track_message(message)
        many[0].track_many(TP0, batch)
        assert all(m.time_in is not None for m in batch), "the Monitor stamps each record's arrival"
    assert books(*many) == books(*one)
    assert books(*many)[0] == [(TP0, o) for o in (5, 6, 7, 8)] and books(*many)[4] == {TP0: 8}
