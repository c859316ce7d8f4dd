from espfast.control.rng import DeterministicRng, SystemRng


def test_deterministic_rng_repeats_per_seed_and_varies_per_call() -> None:
    a, b = DeterministicRng("x"), DeterministicRng("x")
    assert [a.random_bytes(16) for _ in range(3)] == [b.random_bytes(16) for _ in range(3)]
    c = DeterministicRng("y")
    assert c.random_bytes(16) != DeterministicRng("x").random_bytes(16)
    assert len({a.random_bytes(8) for _ in range(50)}) == 50


def test_system_rng() -> None:
    r = SystemRng()
    assert len(r.random_bytes(32)) == 32 and r.random_bytes(32) != r.random_bytes(32)
