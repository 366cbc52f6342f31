import numpy as np

from facecast.stream.speech_queue import SpeechQueue


def test_take_splits_utterances_and_marks_last_samples() -> None:
    q = SpeechQueue()
    a = q.say("test", np.full(700, 0.5, np.float32))
    b = q.begin("ws")
    q.append(b, np.full(300, -0.25, np.float32))
    audio, segments, gen = q.take(533)
    assert gen == 0 and np.all(audio == 0.5)
    assert [(s.utterance.id, s.count, s.last) for s in segments] == [(a.id, 533, False)]
    audio, segments, _ = q.take(533)
    assert [(s.utterance.id, s.count, s.last) for s in segments] == [(a.id, 167, True), (b.id, 300, False)]
    assert np.all(audio[467:] == 0)  # b is open but dry: silence, not an end
    q.end(b)
    _, segments, _ = q.take(533)
    assert [(s.utterance.id, s.count, s.last) for s in segments] == [(b.id, 0, True)]


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
