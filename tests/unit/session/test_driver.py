"""The session driver (session/driver.py): decodes routed, cancels honoured, close final."""

from __future__ import annotations

import numpy as np

from captioncast.core.decoding import DecodeRequest
from captioncast.core.policy import Cancel, CaptionSession, PolicyOptions, SessionConfig
from captioncast.protocol.events import End, Event, Final
from captioncast.session.driver import Done, Outcome, SessionDriver
from tests.conftest import read_wav
from tests.support.fake_decoder import ScriptedDecoder


class HeldDecodes:
    """Decodes answered only when the test says."""

    def __init__(self) -> None:
        self.asked: list[tuple[DecodeRequest, Done]] = []
        self.cancelled: list[int] = []
        self.dropped = False

    def submit(self, request: DecodeRequest, done: Done) -> None:
        self.asked.append((request, done))

    def cancel(self, request_id: int) -> None:
        self.cancelled.append(request_id)

    def drop(self) -> None:
        self.dropped = True

    def answer(self, outcome: Outcome | None = None, decoder: ScriptedDecoder | None = None
               ) -> DecodeRequest:
        request, done = self.asked.pop(0)
        done(request, outcome if decoder is None else decoder.decode(request))
        return request


def _driver(decodes: HeldDecodes, finished: list[bool] | None = None
            ) -> tuple[SessionDriver, list[Event]]:
    session = CaptionSession(SessionConfig(session_id="s", model="scripted", language="en",
                                           interim=False), PolicyOptions(context_s=0.0))
    events: list[Event] = []
    driver = SessionDriver(session, decodes, on_event=events.append,
                           on_finished=None if finished is None else lambda: finished.append(True))
    driver.dispatch(session.start())
    return driver, events


def _speak(driver: SessionDriver) -> None:
    audio = np.concatenate([read_wav("whisper_jfk"), np.zeros(16000 * 2, np.float32)])
    for i in range(0, len(audio), 1600):
        driver.dispatch(driver.session.feed(audio[i : i + 1600]))


def test_results_reach_the_session_and_end_is_reported_once() -> None:
    decodes, finished = HeldDecodes(), []
    driver, events = _driver(decodes, finished)
    _speak(driver)
    driver.dispatch(driver.session.eos())
    decoder = ScriptedDecoder()
    while decodes.asked:
        decodes.answer(decoder=decoder)
    assert any(isinstance(e, Final) for e in events) and isinstance(events[-1], End)
    assert finished == [True] and driver.inflight == 0


def test_a_failed_decode_still_gives_its_final() -> None:
    decodes = HeldDecodes()
    driver, events = _driver(decodes)
    _speak(driver)
    driver.dispatch(driver.session.eos())
    while decodes.asked:
        decodes.answer(RuntimeError("the model fell over"))
    assert isinstance(events[-1], End)


def test_a_cancelled_decode_is_dropped_when_it_comes_back() -> None:
    decodes = HeldDecodes()
    driver, events = _driver(decodes)
    _speak(driver)
    before = driver.inflight
    request, _ = decodes.asked[0]
    driver.dispatch([Cancel(request.request_id)])
    assert decodes.cancelled == [request.request_id] and driver.inflight == before - 1
    seen = len(events)
    decodes.answer(decoder=ScriptedDecoder())
    assert len(events) == seen


def test_nothing_is_dispatched_after_close() -> None:
    decodes = HeldDecodes()
    driver, events = _driver(decodes)
    _speak(driver)
    driver.close()
    assert decodes.dropped and driver.inflight == 0
    seen = len(events)
    while decodes.asked:
        decodes.answer(decoder=ScriptedDecoder())
    driver.dispatch(driver.session.eos())
    assert len(events) == seen

