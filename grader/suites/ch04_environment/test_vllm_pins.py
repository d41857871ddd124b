"""Exercise 3: vLLM 0.33.0's pins on recorded machines."""
import pytest

GOOD = {"vllm": "0.33.0", "python": "3.12.9", "torch": "2.14.0+cu130", "flashinfer": "0.7.2.post1",
        "head_dim": 128, "attention_backend": "FLASH_ATTN"}
KEYS = {"python", "torch", "flashinfer", "attention"}


def _statuses(student, facts):
    got = student.check_vllm(facts)
    assert isinstance(got, dict) and set(got) == KEYS, f"return a dict with the keys {sorted(KEYS)}; got {got!r:.200}"
    for key, value in got.items():
        assert isinstance(value, (tuple, list)) and len(value) == 2 and isinstance(value[1], str) and value[1], (
            f"{key}: a (status, reason) tuple with a non-empty reason; got {value!r:.200}")
    return {key: value[0] for key, value in got.items()}


CASES = [
    ({}, dict(python="pass", torch="pass", flashinfer="pass", attention="pass")),
    ({"torch": "2.14.0"}, dict(torch="pass")),
    ({"torch": "2.14.0+cpu"}, dict(torch="pass")),
    ({"torch": "2.13.0+cu128"}, dict(torch="fail")),
    ({"torch": "2.14.1+cu130"}, dict(torch="fail")),
    ({"python": "3.11.0"}, dict(python="pass")),
    ({"python": "3.14.2"}, dict(python="pass")),
    ({"python": "3.10.14"}, dict(python="fail")),
    ({"python": "3.15.0"}, dict(python="fail")),
    ({"flashinfer": None}, dict(flashinfer="warn")),
    ({"flashinfer": "0.7.2"}, dict(flashinfer="fail")),
    ({"head_dim": 32}, dict(attention="pass")),
    ({"head_dim": 256}, dict(attention="pass")),
    ({"head_dim": 8}, dict(attention="pass")),
    ({"head_dim": 512}, dict(attention="fail")),
    ({"head_dim": 96 + 4}, dict(attention="fail")),
    ({"head_dim": 264}, dict(attention="fail")),
    ({"attention_backend": "FLASHINFER"}, dict(attention="pass")),
    ({"attention_backend": "FLASHINFER", "head_dim": 512}, dict(attention="pass")),
    ({"attention_backend": "FLASHINFER", "head_dim": 32}, dict(attention="fail")),
    ({"attention_backend": "FLASHINFER", "head_dim": 96}, dict(attention="fail")),
    ({"attention_backend": "FLASHINFER", "head_dim": 80}, dict(attention="fail")),
]


@pytest.mark.points(2)
def test_pins_on_recorded_machines(student):
    """each pin passes, warns or fails as specified on 22 machines"""
    for change, want in CASES:
        got = _statuses(student, {**GOOD, **change})
        for key, status in want.items():
            assert got[key] == status, (f"check_vllm with {change or 'every pin met'}: {key} said {got[key]!r}, "
                                        f"expected {status!r}")


@pytest.mark.points(0.5)
def test_blocked_without_vllm_and_warn_for_other_release(student):
    """no vLLM: every line blocked; another vLLM release: every line warn"""
    for change, status in (({"vllm": None}, "blocked"), ({"vllm": None, "python": "3.9.1"}, "blocked"),
                           ({"vllm": "0.32.1"}, "warn")):
        got = _statuses(student, {**GOOD, **change})
        assert set(got.values()) == {status}, f"check_vllm with {change}: expected all {status!r}, got {got}"


@pytest.mark.points(0.5)
def test_unknown_backend_raises(student):
    """an attention backend other than FLASH_ATTN or FLASHINFER raises ValueError"""
    with pytest.raises(ValueError):
        student.check_vllm({**GOOD, "attention_backend": "XFORMERS"})
        raise AssertionError("check_vllm returned for attention_backend='XFORMERS' instead of raising ValueError")
