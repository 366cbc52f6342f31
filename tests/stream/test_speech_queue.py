import numpy as np
import pytest

from facecast.stream.speech_queue import SpeechQueue


def test_take_splits_utterances_and_marks_last_samples() -> None:
    q = SpeechQueue()
    a = q.say("test", np.full(700, 0.5, np.float32))
    b = q.begin("ws")
    q.append(b, np.full(1400, -0.25, np.float32))  # a streamed utterance with its 80 ms lead queued
    audio, segments, gen = q.take(533)
    assert gen == 0 and np.all(audio == 0.5)
    assert [(s.utterance.id, s.count, s.last) for s in segments] == [(a.id, 533, False)]
    audio, segments, _ = q.take(533)
    assert [(s.utterance.id, s.count, s.last) for s in segments] == [(a.id, 167, True), (b.id, 366, False)]
    audio, segments, _ = q.take(533)
    assert [(s.utterance.id, s.count, s.last) for s in segments] == [(b.id, 533, False)]
    audio, segments, _ = q.take(533)
    assert [(s.utterance.id, s.count, s.last) for s in segments] == [(b.id, 501, False)]
    assert np.all(audio[501:] == 0)  # b is open but dry: silence, not an end
    q.end(b)
    _, segments, _ = q.take(533)
    assert [(s.utterance.id, s.count, s.last) for s in segments] == [(b.id, 0, True)]


@pytest.mark.parametrize("sender_offset_ms", [1, 13, 19])
def test_a_streamed_utterance_builds_a_lead_before_playing_and_after_running_dry(
    sender_offset_ms: int,
) -> None:
    """PCM arriving in real time, 20 ms chunks against 33 ms frames: no gaps inside the speech."""
    q = SpeechQueue()
    utt = q.begin("ws")
    # One timeline in ms: the session takes a frame every 33.3 ms; a sender starting a little later
    # delivers 20 ms chunks in real time.
    ticks = [(k * 100 / 3, "take") for k in range(90)]
    chunks = [(sender_offset_ms + 20 * i, "chunk") for i in range(140)]
    taken = []
    for _, kind in sorted(ticks + chunks):
        if kind == "chunk":
            q.append(utt, np.full(320, 0.5, np.float32))
        else:
            taken.append(q.take(533)[0])
    audio = np.concatenate(taken)
    start, end = int(np.argmax(audio > 0)), audio.size - int(np.argmax(audio[::-1] > 0))
    assert start <= 3 * 533  # the first tick with 80 ms queued
    assert end - start == 140 * 320  # every sample sent, and
    assert np.all(audio[start:end] == 0.5)  # continuous: no frame found the stream a chunk short
    # A sender that stalls: the stream runs dry, then waits for its lead again instead of stuttering.
    for _ in range(6):
        q.take(533)
    q.append(utt, np.full(800, 0.5, np.float32))
    assert not q.take(533)[0].any()  # 50 ms queued: below the lead, still silent
    q.append(utt, np.full(800, 0.5, np.float32))
    assert np.all(q.take(533)[0] == 0.5)
    q.end(utt)


def test_interrupt_drops_queue_and_bumps_generation() -> None:
    q = SpeechQueue()
    utt = q.say("test", np.ones(16000, np.float32))
    q.take(533)
    assert q.interrupt() == 1
    audio, segments, gen = q.take(533)
    assert gen == 1 and not segments and not audio.any()
    assert q.take_dropped() == [utt] and utt.dropped
    q.append(utt, np.ones(10, np.float32))  # late chunks of a dropped utterance are ignored
    assert q.queued_seconds() == 0


def test_live_audio_is_mixed_and_backlog_bounded() -> None:
    q = SpeechQueue()
    for _ in range(100):
        q.push_live(np.full(320, 0.1, np.float32))
    assert q._live_samples <= 0.25 * 16000
    audio, segments, _ = q.take(533)
    assert not segments and np.allclose(audio, 0.1)
