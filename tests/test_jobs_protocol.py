"""The worker's side of the pipe: how lines are held and written (admin.jobs.protocol)."""

from __future__ import annotations

import io
import time

from admin.jobs.protocol import Emitter, Message, decode


class Recorder(io.StringIO):
    """A stream that remembers each write, as the supervisor's pipe would receive them."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[str] = []

    def write(self, text: str) -> int:
        self.writes.append(text)
        return super().write(text)


def _texts(stream: Recorder) -> list[str]:
    return [decode(line).text for line in stream.getvalue().splitlines()]


def test_a_burst_goes_out_in_few_writes_and_nothing_waits_longer_than_linger() -> None:
    stream = Recorder()
    out = Emitter(stream, linger=0.05)
    sent = time.monotonic()
    for n in range(200):
        out.send(Message("sql", f"statement {n}", "sql"))
    deadline = sent + 2
    while len(_texts(stream)) < 200 and time.monotonic() < deadline:
        time.sleep(0.005)
    waited = time.monotonic() - sent
    assert _texts(stream) == [f"statement {n}" for n in range(200)]
    assert len(stream.writes) < 20  # 1 unless the machine stalls mid-burst; not 200
    assert waited < 1.0  # the held lines went out after about linger, not at the end


def test_a_result_goes_out_at_once_with_everything_held_before_it() -> None:
    stream = Recorder()
    out = Emitter(stream, linger=30)  # the background write would come far too late
    out.log("first")
    out.log("held")
    assert _texts(stream) == []
    out.result("succeeded")
    assert _texts(stream) == ["first", "held", "succeeded"]
    assert len(stream.writes) == 1
    assert decode(stream.getvalue().splitlines()[-1]).data["status"] == "succeeded"


def test_prints_keep_their_place_among_the_lines() -> None:
    stream = Recorder()
    out = Emitter(stream, linger=30)
    printed = out.text_stream()
    out.log("step started")
    out.log("held line")
    print("a migration's own output", file=printed)
    printed.flush()
    assert _texts(stream) == ["step started", "held line", "a migration's own output"]


def test_without_linger_every_line_is_written_at_once() -> None:
    stream = Recorder()
    out = Emitter(stream)
    for n in range(3):
        out.log(f"line {n}")
    assert len(stream.writes) == 3
