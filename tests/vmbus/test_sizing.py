"""netvsc buffer sizing: the published figures, the simulation's exact boundary, Poisson loss
against the closed form."""

from __future__ import annotations

import pytest

from vhdkit.vmbus.sizing import NS, plan_for_rate, plan_for_size, poisson_loss, simulate

MB = 1 << 20


@pytest.mark.parametrize("megabytes, buffers, rate", [(1, 655, 65_500), (2, 1_310, 131_000), (4, 2_621, 262_100)])
def test_the_published_buffer_counts_and_rates_at_10_ms(megabytes, buffers, rate):
    plan = plan_for_size(megabytes * MB)
    assert (plan.buffers, plan.max_packets_per_second, plan.kilobytes) == (buffers, rate, megabytes * 1024)


def test_a_rate_gets_the_smallest_buffer_that_sustains_it():
    plan = plan_for_rate(200_000)
    assert plan.max_packets_per_second >= 200_000
    assert plan_for_size(plan.buffer_bytes - 1024).max_packets_per_second < 200_000
    assert plan_for_rate(65_500).buffer_bytes <= MB  # the default suffices, exactly
    assert plan_for_rate(260_000, quantum_ns=5_000_000).buffers == 1_300


@pytest.mark.parametrize("buffers", [655, 1_310, 2_621])
def test_no_loss_at_exactly_buffers_per_quantum_and_loss_just_above(buffers):
    boundary = buffers * 100  # per second, at 10 ms
    assert simulate(boundary, buffers, duration_ns=5 * NS).lost == 0
    above = simulate(boundary + 1, buffers, duration_ns=5 * NS)
    assert above.lost > 0
    # a constant stream loses exactly what does not fit each quantum: 1 - buffers / (rate * Q)
    far = simulate(boundary * 1.5, buffers, duration_ns=2 * NS)
    assert abs(far.lost - far.arrivals * (1 - 1 / 1.5)) <= 200  # one packet per quantum at most


@pytest.mark.parametrize("load", [1.0, 1.1, 1.3])
def test_poisson_loss_is_within_5_percent_of_the_closed_form(load):
    rate = 65_500 * load
    simulated = simulate(rate, 655, duration_ns=20 * NS, arrivals="poisson", seed=3).fraction
    closed = poisson_loss(rate, 655)
    assert closed > 1e-3
    assert abs(simulated - closed) <= 0.05 * closed, (simulated, closed)


def test_the_closed_form_knows_its_limits():
    assert poisson_loss(0, 655) == 0.0
    assert poisson_loss(10_000, 655) < 1e-12  # far below capacity: nothing lost
    assert abs(poisson_loss(655_000, 655) - 0.9) < 1e-3  # ten times capacity: 90% lost


def test_bad_simulation_input_is_refused():
    with pytest.raises(ValueError, match="constant' or 'poisson"):
        simulate(100, 10, arrivals="bursty")
    with pytest.raises(ValueError, match="positive"):
        simulate(100, 10, quantum_ns=0)
