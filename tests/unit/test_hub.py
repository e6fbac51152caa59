import asyncio

from tests.aio import run
from vergence.hub import Channel, SubscriptionClosed
from vergence.media.frame import EncodedPacket


class FakeProducer:
    def __init__(self):
        self.started = 0
        self.stopped = 0
        self.keyframes_requested = 0

    def start(self):
        self.started += 1

    def stop(self):
        self.stopped += 1

    def request_keyframe(self):
        self.keyframes_requested += 1


def packet(seq, keyframe=False):
    return EncodedPacket(
        data=bytes([seq % 256]) * 10, keyframe=keyframe, config=keyframe, seq=seq, pts=seq, capture_ns=seq
    )


def test_latest_policy_keeps_only_the_newest_and_counts_the_rest():
    async def scenario():
        channel = Channel("cam0", "jpeg")
        sub = channel.subscribe("latest", name="slow")
        for seq in range(5):
            channel.publish(packet(seq, keyframe=True))
        assert len(sub) == 1
        assert (await sub.get()).seq == 4
        assert sub.drops == 4 and channel.stats.drops == 4

    run(scenario())


def test_gop_policy_drops_to_the_next_keyframe_on_overflow_and_asks_for_one_when_the_reader_is_back():
    async def scenario():
        producer = FakeProducer()
        channel = Channel("cam0", "h264", producer, cache_gop=True)
        channel.KEYFRAME_REQUEST_INTERVAL_S = 0  # every request counts here, not one a second
        fast = channel.subscribe("gop", max_packets=100, name="fast")
        slow = channel.subscribe("gop", max_packets=4, name="slow")
        channel.publish(packet(0, keyframe=True))
        joined = producer.keyframes_requested
        for seq in range(1, 10):
            channel.publish(packet(seq))
        assert len(slow) == 0 and slow.peak <= 4  # overflowed at seq 4, then nothing until a keyframe
        assert producer.keyframes_requested == joined  # not while the reader is away: it may never come back
        reader = asyncio.create_task(slow.get())  # back for more, with nothing it could decode
        await asyncio.sleep(0)
        assert producer.keyframes_requested == joined + 1
        channel.publish(packet(10, keyframe=True))
        assert (await reader).seq == 10
        channel.publish(packet(11))
        seqs = [10]
        while len(slow):
            seqs.append((await slow.get()).seq)
        assert seqs == [10, 11]  # resumed at the keyframe, nothing half-decodable in between
        assert slow.drops == 10 and channel.stats.drops == 10
        fast_seqs = [(await fast.get()).seq for _ in range(12)]
        assert fast_seqs == list(range(12))  # the slow one cost the fast one nothing
        assert fast.drops == 0

    run(scenario())


def test_a_late_joiner_gets_the_cached_gop_starting_at_its_keyframe():
    async def scenario():
        channel = Channel("cam0", "h264", FakeProducer(), cache_gop=True)
        keeper = channel.subscribe("gop", name="keeper")
        for seq in range(3):
            channel.publish(packet(seq))  # no keyframe yet: nothing cacheable
        channel.publish(packet(3, keyframe=True))
        channel.publish(packet(4))
        channel.publish(packet(5))
        late = channel.subscribe("gop", name="late")
        got = [(await late.get()) for _ in range(3)]
        assert [p.seq for p in got] == [3, 4, 5] and got[0].keyframe
        assert len(keeper) == 3  # it never had a keyframe before seq 3, so it waited for one too

    run(scenario())


def test_a_subscriber_without_anything_to_replay_triggers_a_keyframe_request():
    async def scenario():
        producer = FakeProducer()
        channel = Channel("cam0", "h264", producer, cache_gop=True)
        channel.subscribe("gop")
        assert producer.started == 1 and producer.keyframes_requested == 1

    run(scenario())


def test_producer_runs_only_while_consumed_and_lingers_briefly():
    async def scenario():
        producer = FakeProducer()
        channel = Channel("cam0", "h264", producer, linger_s=0.05)
        first = channel.subscribe("gop")
        second = channel.subscribe("gop")
        assert producer.started == 1
        first.close()
        second.close()
        assert producer.stopped == 0 and channel.producing
        third = channel.subscribe("gop")  # back within the linger: no restart
        assert producer.started == 1
        third.close()
        deadline = asyncio.get_running_loop().time() + 2
        while channel.producing and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.01)
        assert producer.stopped == 1 and not channel.producing

    run(scenario())


def test_notices_keep_their_place_and_close_wakes_a_waiting_reader():
    async def scenario():
        channel = Channel("cam0", "h264", FakeProducer(), cache_gop=True)
        sub = channel.subscribe("gop")
        channel.publish(packet(0, keyframe=True))
        channel.publish({"type": "status", "state": "restarting"})
        channel.publish(packet(1))
        assert (await sub.get()).seq == 0
        assert (await sub.get())["state"] == "restarting"
        assert (await sub.get()).seq == 1
        waiter = asyncio.ensure_future(sub.get())
        await asyncio.sleep(0)
        sub.close()
        try:
            await waiter
            raise AssertionError("get() should raise once closed")
        except SubscriptionClosed:
            pass
        assert sub not in channel.subscribers

    run(scenario())


def test_a_joiner_with_less_room_than_the_cached_gop_gets_a_fresh_keyframe_not_half_a_gop():
    async def scenario():
        producer = FakeProducer()
        channel = Channel("cam0", "h264", producer, cache_gop=True)
        channel.subscribe("gop", max_packets=100, name="keeper")
        channel.publish(packet(0, keyframe=True))
        for seq in range(1, 10):
            channel.publish(packet(seq))
        requested = producer.keyframes_requested
        small = channel.subscribe("gop", max_packets=4, name="small")
        assert len(small) == 0  # the last 4 packets of the GOP would not decode without its keyframe
        assert producer.keyframes_requested == requested + 1  # asked at once, not at the encoder's next GOP
        channel.publish(packet(10, keyframe=True))
        assert (await small.get()).seq == 10

    run(scenario())


def test_a_sink_takes_packets_while_nothing_is_queued_and_the_queue_keeps_order_when_it_cannot():
    async def scenario():
        channel = Channel("cam0", "h264", cache_gop=True)
        sub = channel.subscribe("gop", max_packets=4, name="direct")
        taken, accepting = [], [True]

        def sink(item):
            if accepting[0]:
                taken.append(item.seq)
            return accepting[0]

        sub.sink = sink
        channel.publish(packet(0))  # not a keyframe: the policy drops it before the sink sees it
        channel.publish(packet(1, keyframe=True))
        channel.publish(packet(2))
        assert taken == [1, 2] and len(sub) == 0 and sub.delivered == 2 and sub.drops == 1
        accepting[0] = False  # the socket is full: what follows queues
        channel.publish(packet(3))
        accepting[0] = True
        channel.publish(packet(4))  # behind a queued packet: queued too, never overtakes it
        assert taken == [1, 2] and [(await sub.get()).seq, (await sub.get()).seq] == [3, 4]
        channel.publish(packet(5))  # the queue is empty again: taken at once
        assert taken == [1, 2, 5]

    run(scenario())


def test_a_sink_that_cannot_take_leaves_the_overflow_policy_as_it_was():
    async def scenario():
        channel = Channel("cam0", "h264", FakeProducer())
        sub = channel.subscribe("gop", max_packets=3, name="stalled")
        sub.sink = lambda item: False  # a stalled viewer: its transport never drains
        channel.publish(packet(0, keyframe=True))
        for seq in range(1, 8):
            channel.publish(packet(seq))
        assert len(sub) <= 3 and sub.drops > 0 and sub.delivered == 0
        channel.publish(packet(8, keyframe=True))
        assert [(await sub.get()).seq] == [8]  # resumes at the keyframe

    run(scenario())
